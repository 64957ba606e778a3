"""Where every unit of FLUX is: the accounting that must always balance.

balances + node collateral (locked or unbonding) + app escrows
    == genesis supply + minted - burned

`burned` counts slashed collateral, base fees, account-creation deposits and re-placement
charges (Meta.burned; docs/economics.md).
"""

from __future__ import annotations

from fluxchain.core.apps import APP
from fluxchain.core.records import ACCOUNT, NODE
from fluxchain.core.state import State


def total_supply(state: State) -> int:
    """Every unit held anywhere in the state (O(state): for audits and tests)."""
    balances: int = sum(account.balance for _, account in state.items(ACCOUNT))
    collateral: int = sum(node.collateral for _, node in state.items(NODE))
    # An app holds what it has not paid out yet: escrow, plus accrued refunds (docs/apps.md).
    apps_held: int = sum(app.escrow + app.refundable for _, app in state.items(APP))
    return balances + collateral + apps_held
