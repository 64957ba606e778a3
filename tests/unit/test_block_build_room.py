"""A proposer's block that runs out of room (issue 22, wan15b): a sender's tx left out
for its size holds back that sender's later txs, which stay in the mempool for the next
block, while other senders' txs that fit still fill this one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fluxchain.core.block import BLOCK_FRAMING_BYTES
from fluxchain.core.crypto import SigningKey
from fluxchain.core.execute import TX_FRAMING_BYTES
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from tests.support.chain import VALIDATORS, funded_key, open_chain, proposer_reveal

TO = b"\x77" * 20
FILLERS = 4


def test_a_sender_whose_tx_does_not_fit_is_held_back_not_dropped(tmp_path: Path) -> None:
    base = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000)
    chain_id = base.params.chain_id
    filler, late, other = (
        funded_key(VALIDATORS),
        funded_key(VALIDATORS + 1),
        funded_key(VALIDATORS + 2),
    )

    def transfer(key: SigningKey, nonce: int, memo: bytes) -> Tx:
        return Tx.create(key, chain_id, nonce, 10_000, Transfer(TO, COIN, memo))

    fillers = [transfer(filler, n, b"f" * 900) for n in range(FILLERS)]
    too_big, next_of_late = transfer(late, 0, b"b" * 900), transfer(late, 1, b"")
    small = transfer(other, 0, b"")
    # Room for the fillers and two small txs: `too_big` cannot fit after the fillers.
    room = sum(len(t.raw) + TX_FRAMING_BYTES for t in [*fillers, next_of_late, small])
    # No last commit at height 1: the block's framing is all there is beside the txs.
    # A validator set of its size: a larger one's commit would leave no room (genesis)
    params = replace(
        devnet_params(chain_id),
        max_block_bytes=BLOCK_FRAMING_BYTES + 1 + room,
        max_validators=VALIDATORS,
    )
    genesis = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000, params=params)
    chain = open_chain(tmp_path / "chain", genesis)
    try:
        block, execution, rejected = chain.build_block(
            now_ms=genesis.genesis_time_ms + 1_000,
            round_=0,
            last_commit=None,
            candidates=[*fillers, too_big, next_of_late, small],
            reveal=proposer_reveal(chain, 0),
        )
        chain.abort(execution)
    finally:
        chain.close()
    assert list(block.txs) == [t.raw for t in [*fillers, small]]
    # Before: `next_of_late` was rejected (nonce mismatch) and so dropped from the pool.
    assert rejected == []
