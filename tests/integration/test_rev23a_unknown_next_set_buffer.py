"""Review rev23a: where the next validator set is unknown, throw-away keys fill the
next-height vote buffer and the honest votes of that height are refused.

`Node._on_vote` sends a vote of the height after the one the engine decides through
`Driver.admit` (red23a 1); `Engine._admits_next` refuses keys outside the next set only
when the host knew that set at `NewHeight`, which it does not while it decides an epoch's
last block (`height % epoch_length == 0`, `Driver._new_height`). There any key is a
validator for the quota: each fresh key gets its few rounds (16 votes), 250 keys fill
MAX_BUFFERED_VOTES, nobody is punished (the signatures are valid, the set unknown), and
from then on every vote of the next height, a validator's included, is `Refused` until
`NewHeight` (the commit wait too: the buffer only empties at the replay). The per-key
quota keys nothing the attacker cannot mint; the current set (whose members make most of
the next one) is known and given no room of its own.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.engine import MAX_BUFFERED_PROPOSALS, MAX_BUFFERED_VOTES
from consensus.messages import Proposal
from consensus.proposer import proposer
from consensus.voteset import MAX_FUTURE_ROUNDS_PER_VALIDATOR
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import EPOCH_START, devnet_at_epoch_start
from tests.support.chain import first_block
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

PEER_JUNK, PEER_AHEAD = ("02" + "6a" * 32, "02" + "6b" * 32)


def _junk_votes(count: int, chain_id: str, height: int) -> list[Vote]:
    """`count` votes of `height` by fresh keys, each key as many as the quota takes."""
    votes: list[Vote] = []
    n = 0
    while len(votes) < count:
        key = SigningKey(sha256(b"rev23a junk key %d" % n))
        n += 1
        votes.extend(
            Vote.create(key, chain_id, type_, height, round_, value)
            for round_ in range(MAX_FUTURE_ROUNDS_PER_VALIDATOR + 1)
            for type_ in (VoteType.PREVOTE, VoteType.PRECOMMIT)
            for value in (NIL, sha256(b"twin %d" % round_))
        )
    return votes[:count]


def test_throwaway_keys_cannot_crowd_a_validator_out_of_the_next_height_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devnet = devnet_at_epoch_start(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    chain_id = devnet.genesis.chain_id
    validator = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))
    junk = _junk_votes(MAX_BUFFERED_VOTES, chain_id, EPOCH_START + 1)

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(
                lambda: node.driver.engine.height == EPOCH_START, what="an epoch's start"
            )
            engine = node.driver.engine
            assert engine.next_validators is None
            assert node.chain.validators().power_of(validator.public_key) > 0
            punished: list[tuple[str, float]] = []
            monkeypatch.setattr(
                node.network, "punish", lambda peer, points, why: punished.append((peer, points))
            )
            for vote in junk:
                await node.on_gossip(PEER_JUNK, Kind.VOTE, pack(vote.to_fields()))
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            # A validator's vote of the next height, relayed by an honest peer a height ahead.
            honest = Vote.create(
                validator, chain_id, VoteType.PREVOTE, EPOCH_START + 1, 0, sha256(b"block 2")
            )
            await node.on_gossip(PEER_AHEAD, Kind.VOTE, pack(honest.to_fields()))
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            buffered = engine.buffered()[1]
            strangers = sum(node.chain.validators().power_of(v.validator) == 0 for v in buffered)
            print(
                f"junk={len(junk)} buffered={len(buffered)} strangers={strangers} "
                f"punished={punished}"
            )
            assert honest in buffered, (
                f"a validator's vote of the next height was refused: the buffer holds "
                f"{strangers} votes of keys outside the current set, nobody punished"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())


def test_throwaway_keys_cannot_crowd_the_next_proposer_out_of_the_proposal_buffer(
    tmp_path: Path,
) -> None:
    """The same hole for proposals: with the next set unknown, `Engine._buffer_proposal`
    keeps one per (round, signer), 4 in all, and a full buffer makes room only for a lower
    round. Four throw-away keys wrap any round-0 block (the header's height and proposer
    are not compared with the proposal's) as round-0 proposals of the next height, and the
    next proposer's own round-0 proposal is `Refused`, again in the commit wait (the
    buffer empties only at `NewHeight`): the next height's round 0 waits on a re-send."""
    devnet = devnet_at_epoch_start(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block = first_block(tmp_path / "builder", devnet.genesis)
    chain_id = devnet.genesis.chain_id
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(
                lambda: node.driver.engine.height == EPOCH_START, what="an epoch's start"
            )
            engine = node.driver.engine
            assert engine.next_validators is None
            for n in range(MAX_BUFFERED_PROPOSALS):
                thief = SigningKey(sha256(b"rev23a proposal thief %d" % n))
                junk = Proposal.create(thief, chain_id, EPOCH_START + 1, 0, -1, block.hash())
                await node.on_gossip(
                    PEER_JUNK, Kind.PROPOSAL, encode_proposal(junk, block.encode())
                )
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            # The next height's round-0 proposer (the set stays: the same validators are
            # chosen), relayed by an honest peer a height ahead.
            chosen = proposer(node.chain.validators(), EPOCH_START + 1, 0)
            signer = next(k for k in keys if k.public_key == chosen)
            real = Proposal.create(signer, chain_id, EPOCH_START + 1, 0, -1, block.hash())
            await node.on_gossip(PEER_AHEAD, Kind.PROPOSAL, encode_proposal(real, block.encode()))
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            buffered = engine.buffered()[0]
            print(f"buffered={[p.proposer.hex()[:8] for p in buffered]} real={chosen.hex()[:8]}")
            assert real in buffered, (
                f"the next proposer's round-0 proposal was refused: the buffer holds "
                f"{sum(p.proposer != chosen for p in buffered)} throw-away keys' round-0 copies"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
