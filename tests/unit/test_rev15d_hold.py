"""Review rev15d: wan15b's defences that held under attack (these pass)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from consensus.messages import Proposal
from fluxchain.core.block import BLOCK_FRAMING_BYTES
from fluxchain.core.crypto import SigningKey
from fluxchain.core.execute import TX_FRAMING_BYTES
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from p2p.consensus_gossip import MAX_PROPOSAL_SENDS, ConsensusGossip, SendProposal
from p2p.messages import RoundState
from tests.p2p.test_consensus_gossip import BLOCK, CHAIN, KEYS, PEER, RESEND_MS, W, local_with
from tests.support.chain import VALIDATORS, funded_key, open_chain, proposer_reveal

TO = b"\x77" * 20
HOLDERS = [f"holder{i:02d}" for i in range(18)]


def test_rev15d_a_peer_lying_that_it_lacks_draws_one_full_block_a_holder_at_most() -> None:
    """A peer that keeps announcing it lacks the proposal (while a Sybil also claims to
    hold it, which only adds a name to the draw) gets compact copies from everyone, full
    blocks from one holder at most before the last send, and one full block from each
    holder at the last: MAX_PROPOSAL_SENDS - 2 + holders, against 2 x holders before
    wan15b; re-announcing does not reset the count."""
    proposal = Proposal.create(KEYS[1], CHAIN, 1, 0, -1, W)
    local = local_with([], proposals=[(proposal, BLOCK)])
    full = 0
    for name in HOLDERS:
        gossip = ConsensusGossip(RESEND_MS, self_id=name)
        for other in [*HOLDERS, "sybil"]:
            if other != name:
                assert gossip.on_round_state(other, RoundState(1, 0, 2, W, ())) is None
        assert gossip.on_round_state(PEER, RoundState(1, 0, 2, b"", ())) is None
        for tick in range(3 * MAX_PROPOSAL_SENDS):
            # It re-announces "lacking" before every resend (a step further each time).
            assert gossip.on_round_state(PEER, RoundState(1, 0, 2, b"", ())) is None
            for send in gossip.plan(PEER, local, tick * RESEND_MS):
                if isinstance(send, SendProposal) and not send.compact:
                    full += 1
    assert full <= MAX_PROPOSAL_SENDS - 2 + len(HOLDERS)


def test_rev15d_a_sender_with_many_txs_held_back_for_room_loses_none(tmp_path: Path) -> None:
    """A sender whose first tx does not fit, with 300 later nonces queued: none of them
    is rejected (dropped from the mempool), other senders' txs still fill the block, and
    the block is what a peer would build (each included tx applied in order)."""
    base = new_devnet_genesis(VALIDATORS, genesis_time_ms=1_000_000)
    chain_id = base.params.chain_id
    filler, late, other = (funded_key(VALIDATORS + i) for i in range(3))

    def transfer(key: SigningKey, nonce: int, memo: bytes) -> Tx:
        return Tx.create(key, chain_id, nonce, 10_000, Transfer(TO, COIN, memo))

    fillers = [transfer(filler, n, b"f" * 900) for n in range(3)]
    too_big = transfer(late, 0, b"b" * 900)
    later = [transfer(late, n, b"") for n in range(1, 301)]
    small = [transfer(other, n, b"") for n in range(2)]
    room = sum(len(t.raw) + TX_FRAMING_BYTES for t in [*fillers, *small]) + 10
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
            candidates=[*fillers, too_big, *later, *small],
            reveal=proposer_reveal(chain, 0),
        )
        chain.abort(execution)
    finally:
        chain.close()
    assert list(block.txs) == [t.raw for t in [*fillers, *small]]
    assert rejected == []
