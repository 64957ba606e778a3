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
from pathlib import Path

import pytest

from fluxchain.core import nodes
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import GenesisError, Reason, TxError
from fluxchain.core.genesis import Genesis
from fluxchain.core.tx import Tx, UptimeAttest, UptimeReport, decode_tx
from fluxchain.genesis_builder import new_devnet_genesis
from tests.support.chain import Builder, open_chain


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


def test_a_genesis_whose_blocks_cannot_hold_their_own_header_and_an_attestation_is_refused(
    tmp_path: Path,
) -> None:
    """The same sum, by bytes: `max_active` spreads `max_block_bytes` over an epoch's
    blocks as if all of it held attestations. With 300-byte blocks and 20-block epochs the
    cap is 11 (19 blocks x 150 bytes / 251) and a two-node genesis loads; yet the header
    and commit of a block with no tx at all are more than 300 bytes (measured below on
    the devnet's own genesis), so no block holding an attestation, or any block, fits:
    the chain never gets past its first height. Should: `bad_genesis`."""
    base = new_devnet_genesis(2)
    chain = open_chain(tmp_path / "h", base)
    try:
        empty = Builder(chain).commit([])
    finally:
        chain.close()
    doc = base.to_json()
    doc["params"].update(max_block_bytes=300, epoch_length=20, down_cooldown=20)
    params = dataclasses.replace(base.params, max_block_bytes=300, epoch_length=20)
    assert len(empty.encode()) > params.max_block_bytes  # not even an empty block fits
    # The cap counts no block byte the header and parent commit take (it was 11 here).
    assert nodes.max_active(params) == 0
    with pytest.raises(GenesisError) as err:
        Genesis.from_json(doc)
    assert err.value.reason is Reason.BAD_GENESIS
    assert "params.max_block_bytes 300 is below" in err.value.message
