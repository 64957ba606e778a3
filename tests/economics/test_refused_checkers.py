"""red23d at the scale of a tier: the attacker's nodes, as targets, drop the probes of
chosen honest checkers and keep their up quorum (`bench.economics --attack refuse`).

Under the old rule one contradicted down report cost its honest sender a payout, and
with 20 % of 100 Cumulus nodes the attacker took 83 % of the payouts in 400 blocks (98.5 %
at 33 %): nearly every honest turn was passed over. A tolerance (a forfeit only above 2/3
of the checker's reports) still let it take 38.5 % at 33 % under owner structure
(tests/economics/test_rev24e_*.py). Now a contradicted down report costs nothing, at any
count: the refused checkers keep their payouts and the attacker gets its fair share.
"""

from __future__ import annotations

import pytest

from bench.economics import run
from tests.support.state import make_params


@pytest.mark.parametrize("attacker_pct", [20, 33])
def test_targets_refusing_chosen_checkers_take_no_more_than_their_share(
    attacker_pct: int,
) -> None:
    r = run(make_params(), 100, attacker_pct, 400, "refuse")
    assert r["pay_share"] <= r["node_share"] + 1, (
        f"{r['node_share']:.0f} % of the nodes took {r['pay_share']:.1f} % of the payouts; "
        f"{r['honest_forfeit_share']:.1f} % of the honest turns were passed over"
    )
