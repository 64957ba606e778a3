"""Red team red23a: one peer fills the engine's next-height vote buffer from outside.

A gossiped vote of a height above the one the node is deciding is "not current" in
`Node._on_vote`: its signature is checked, then it goes straight to `driver.submit`, past
`driver.admit`, and the engine buffers it (`Engine._buffer_vote`) with no limit but the
buffer's own size (MAX_BUFFERED_VOTES). `Engine.admits` documents the buffer as "one per
(round, type) of a validator in a few rounds", but that quota (`_admits_next`) is only
applied on the `admit` path, which a vote of the next height takes only once the node
has committed (the commit wait).

So during height H a peer sends MAX_BUFFERED_VOTES votes of H+1 (a byzantine validator's
votes over many rounds, or one vote each from throw-away keys: no membership check is
made either), all in one burst (the VOTE rate's burst is 4,000 a peer). The buffer is
full; in H's commit wait every honest validator's vote of H+1 is refused by `admit`
(`_admits_next`: buffer full), neither kept nor relayed, and H+1 waits for consensus
gossip to repair them after it starts: the commit wait gathers nothing, every height the
attacker repeats this.

The fix belongs in `Node._on_vote` (a vote of a height beyond the next goes through the
engine's quota: `driver.admit`, and is refused when its validator is not in the next set
when that set is known, `Engine.next_validators`) or in `Engine._buffer_vote` (the same
quota and membership check as `_admits_next`).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import pack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.p2p.harness import node_raw_peer
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

FLOOD = 4_000  # consensus.engine.MAX_BUFFERED_VOTES, and the VOTE rate's burst a peer
BOUND = 10  # generous: `_admits_next` keeps a validator's votes in at most 4 rounds


def _throwaway(index: int) -> SigningKey:
    return SigningKey(hashlib.sha256(b"red23a-throwaway-%d" % index).digest())


def _flood_then_honest_vote(tmp_path: Path, flood_keys: list[SigningKey], rounds: bool) -> None:
    devnet = Devnet(tmp_path)
    node = Node(Home(devnet.homes[0]))
    honest = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(2))  # validator 2's key

    async def scenario() -> None:
        await node.start()
        try:
            chain_id = node.genesis.chain_id
            deciding = node.chain.height + 1  # one node of four: it stays at this height
            ahead = deciding + 1
            await wait_until_async(
                lambda: node.driver.engine.height == deciding, what="the height started"
            )
            async with node_raw_peer(node) as attacker:
                for i in range(FLOOD):
                    key = flood_keys[i % len(flood_keys)]
                    vote = Vote.create(
                        key, chain_id, VoteType.PREVOTE, ahead, i if rounds else 0, NIL
                    )
                    await node.on_gossip(attacker.id, Kind.VOTE, pack(vote.to_fields()))
                await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
                flooders = {key.public_key for key in flood_keys}
                kept = [v for v in node.driver.engine.buffered()[1] if v.validator in flooders]
                # Validator 2's prevote of the next height, as it comes in the commit wait
                # (`Driver.admit`, the same `_admits_next` verdict).
                vote = Vote.create(honest, chain_id, VoteType.PREVOTE, ahead, 0, b"\x07" * 32)
                admitted = node.driver.engine.admits(vote)
                print(f"flood={FLOOD} buffered from the flooder(s)={len(kept)} honest={admitted}")
                assert admitted, (
                    f"an honest validator's vote of height {ahead} is refused: the buffer "
                    f"holds {len(kept)} of the flooder's votes of that height"
                )
                assert len(kept) <= BOUND, f"{len(kept)} of {FLOOD} flooded votes buffered"
        finally:
            await node.stop()

    asyncio.run(scenario())


def test_a_byzantine_validators_votes_of_the_next_height_do_not_fill_the_buffer(
    tmp_path: Path,
) -> None:
    byzantine = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))  # validator 1's key
    _flood_then_honest_vote(tmp_path, [byzantine], rounds=True)


def test_throwaway_keys_votes_of_the_next_height_do_not_fill_the_buffer(tmp_path: Path) -> None:
    # Outside an epoch's first block the next height's set is known (`next_validators`):
    # a key outside it can never be counted there.
    _flood_then_honest_vote(tmp_path, [_throwaway(i) for i in range(FLOOD)], rounds=False)
