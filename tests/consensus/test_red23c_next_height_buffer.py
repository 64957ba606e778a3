"""Red team red23c: a peer with no stake fills the engine's next-height vote buffer.

While the engine runs height h, a vote of h + 1 is buffered for replay
(`Engine._buffer_vote`, at most MAX_BUFFERED_VOTES). The node checks membership only for
the height right after its chain (`Node._on_vote`: `current`); a vote of h + 1 while the
chain is at h - 1 goes to the driver unchecked against any set, and the engine buffers
it without looking at `next_validators` either, although it knows that set whenever h is
not an epoch's first block (`Driver._new_height`) and uses it to filter next-height
proposals (`_buffer_proposal`). So 4,000 votes signed by throwaway keys, sent by one
connection at no stake and without any ban, fill the buffer every height; then, in the
commit wait of h, every honest validator's vote of h + 1 is refused (`_admits_next`) and
the commit-wait buffering of rev13b does nothing: the next height starts cold every time.

The test fails today: the honest validator's next-height vote is refused. Where the fix
belongs: `Engine._buffer_vote` / `_admits_next` should refuse a vote whose signer has no
power in `_next_validators` when that set is known (as `_buffer_proposal` does).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from consensus.engine import MAX_BUFFERED_VOTES, Engine
from consensus.events import NewHeight, Refused, VoteReceived
from consensus.messages import Proposal
from consensus.signer import MemorySignerStore, SignerGuard
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from tests.consensus.helpers import CHAIN_ID, keys, validator_set
from tests.support.chain import NoGossip, node_hot_key, open_chain

SIGNERS = keys(4, b"red23c-buffer")
VALIDATORS = validator_set(SIGNERS)


def test_throwaway_keys_cannot_crowd_honest_validators_out_of_the_next_height_buffer() -> None:
    height = 7  # not an epoch's first block: the host knows the next set
    engine = Engine(CHAIN_ID, SIGNERS[0].public_key)
    engine.step(NewHeight(height, VALIDATORS, None, VALIDATORS))
    assert engine.next_validators == VALIDATORS

    # One connection's worth of votes of the next height, each signed by a fresh key that
    # holds no stake in any set (a signature is all the node checks for such a height).
    junk = [
        Vote.create(
            SigningKey(sha256(b"red23c-junk" + i.to_bytes(4, "big"))),
            CHAIN_ID,
            VoteType.PREVOTE,
            height + 1,
            0,
            NIL,
        )
        for i in range(MAX_BUFFERED_VOTES)
    ]
    for vote in junk:
        engine.step(VoteReceived(vote))

    honest = Vote.create(SIGNERS[1], CHAIN_ID, VoteType.PREVOTE, height + 1, 0, NIL)
    assert engine.admits(honest), (
        f"after {MAX_BUFFERED_VOTES} next-height votes from keys outside the known next "
        "validator set, the engine refuses an honest validator's next-height vote"
    )
    out = engine.step(VoteReceived(honest))
    assert not any(isinstance(o, Refused) for o in out), (
        "the honest validator's next-height vote came out Refused: the buffer is full of "
        "votes by non-validators"
    )


def test_the_nodes_vote_handler_keeps_the_next_height_buffer_for_validators(
    tmp_path: Path,
) -> None:
    """The same attack through the node's own vote handler (`Node._on_vote`) and driver:
    a peer sends votes two heights above the chain (the engine's next height) signed by
    throwaway keys; the node verifies each signature, punishes nothing and hands them to
    the engine, which buffers them; then a validator's vote of that height is refused."""
    chain = open_chain(tmp_path / "node")
    own = node_hot_key(1)
    honest_key = node_hot_key(2)
    refused: list[Proposal | Vote] = []
    punished: list[str] = []

    async def scenario() -> None:
        guard = SignerGuard(own, chain.params.chain_id, MemorySignerStore())
        driver = Driver(
            chain,
            NodeService(chain),
            own,
            guard,
            NoGossip(),
            on_refused=lambda message, block_bytes: refused.append(message),
        )
        host = SimpleNamespace(
            driver=driver,
            chain=chain,
            genesis=SimpleNamespace(chain_id=chain.params.chain_id),
            network=SimpleNamespace(punish=lambda peer, points, why: punished.append(why)),
            consensus_gossip=SimpleNamespace(on_received=lambda peer, vote, index: None),
            _forget_refused=lambda message, block_bytes: refused.append(message),
            _flooded=lambda signature, source: None,
            _source=lambda peer_id: peer_id,  # no network: a peer counts alone
        )
        driver._new_height()
        try:
            next_height = driver.engine.height + 1
            assert chain.height + 2 == next_height
            assert driver.engine.next_validators is not None  # the host knows that set
            for i in range(MAX_BUFFERED_VOTES):
                key = SigningKey(sha256(b"red23c-node-junk" + i.to_bytes(4, "big")))
                vote = Vote.create(
                    key, chain.params.chain_id, VoteType.PREVOTE, next_height, 0, NIL
                )
                Node._on_vote(host, "sybil", vote)  # type: ignore[arg-type]
            while not driver._inbox.empty():
                driver._handle(driver._inbox.get_nowait())
            junk_refused = len(refused)

            honest = Vote.create(
                honest_key, chain.params.chain_id, VoteType.PREVOTE, next_height, 0, NIL
            )
            Node._on_vote(host, "validator", honest)  # type: ignore[arg-type]
            while not driver._inbox.empty():
                driver._handle(driver._inbox.get_nowait())
            _, buffered = driver.engine.buffered()
            assert honest in buffered and honest not in refused, (
                f"a peer with no stake sent {MAX_BUFFERED_VOTES} votes of height "
                f"{next_height} from throwaway keys (punished: {punished or 'never'}, "
                f"{junk_refused} refused); an honest validator's vote of that height is "
                "then refused by the engine's full buffer"
            )
        finally:
            for timer in driver._timers:
                timer.cancel()

    try:
        asyncio.run(scenario())
    finally:
        chain.close()
