"""rev26h: a genesis whose params let no uptime attestation into any block still passes.

hard26 1 refuses a genesis where `nodes.max_active` is 0 ("no node could ever confirm")
or below its node count. But the cap is a sum over an epoch's blocks: it says nothing of
whether one attestation fits in one block or one tx. A genesis with `max_tx_bytes` below
the size of a three-report attestation (checkers_per_node 3, the devnet's) has a cap of
20,000 and loads: every UPTIME_ATTEST is over the tx cap, no node's uptime is ever
attested, and every node would go unattested forever: the very chain hard26 meant to keep
from starting. What should happen: `bad_genesis`, from the file as from `genesis new`.
"""

from __future__ import annotations

import dataclasses

import pytest

from fluxchain.core import nodes
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import GenesisError, Reason, TxError
from fluxchain.core.genesis import Genesis
from fluxchain.core.tx import Tx, UptimeAttest, UptimeReport, decode_tx
from fluxchain.genesis_builder import new_devnet_genesis


def test_a_genesis_whose_tx_cap_is_below_any_attestation_is_refused() -> None:
    base = new_devnet_genesis(1)
    params = dataclasses.replace(base.params, max_tx_bytes=200)
    doc = base.to_json()
    doc["params"]["max_tx_bytes"] = params.max_tx_bytes
    # The premise: the smallest honest attestation of this chain (one checker's three
    # targets, small nonce and epoch) is refused by any node of it as too big.
    key = SigningKey(bytes(31) + b"\x07")
    reports = tuple(UptimeReport(bytes([i]) * 20, True, 10) for i in range(3))
    attest = Tx.create(key, params.chain_id, 0, 0, UptimeAttest(bytes(20), 1, reports))
    assert len(attest.raw) > params.max_tx_bytes
    with pytest.raises(TxError):
        decode_tx(attest.raw, params)
    assert nodes.max_active(params) > 0  # the cap hard26 checks does not see it
    with pytest.raises(GenesisError) as err:
        Genesis.from_json(doc)
    assert err.value.reason is Reason.BAD_GENESIS
