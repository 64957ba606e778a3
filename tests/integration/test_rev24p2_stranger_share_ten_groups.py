"""rev24p2: ten address groups, each at its part, keep every other source out of the
strangers' share.

The attack (p2p24 1, as fix24p counts it): at an epoch's first height (next set unknown) an
attacker with inbound links from ten address groups (ten of a node's 40 inbound places,
`max_inbound`; a /16 each, as a few cloud accounts give) sends 100 throw-away stranger
votes of the next height from each: 10 x PEER_STRANGER_VOTES fills the 1,000 places, and
no source is over its part. An honest peer (one of the node's own outbound peers, which
the part was sized for: docs/security.md, the p2p24 1 row) then relays a vote of one of
the next epoch's new validators.

What happens now: `Driver._take_place` looks for the source most over its part, finds
none, and the relayed vote is refused until `NewHeight`: the newcomers' votes are kept
out as before p2p24. What should happen (docs/security.md: "a source holding less than
PEER_STRANGER_VOTES takes them back"): a source under its part gets a place, e.g. the
part shrinks with the number of sources holding places, or the share favours the node's
own outbound peers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.engine import MAX_BUFFERED_STRANGER_VOTES
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.driver import PEER_STRANGER_VOTES
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import EPOCH_START, devnet_at_epoch_start
from tests.integration.test_p2p24_stranger_share import _stranger_votes
from tests.support.wait import wait_until_async

GROUPS = MAX_BUFFERED_STRANGER_VOTES // PEER_STRANGER_VOTES
HONEST = "02" + "5a" * 32


def test_ten_groups_at_their_part_leave_an_honest_relay_a_place(tmp_path: Path) -> None:
    devnet = devnet_at_epoch_start(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    chain_id = devnet.genesis.chain_id
    junk = _stranger_votes(MAX_BUFFERED_STRANGER_VOTES, chain_id, b"rev24p2 ten groups")
    # Each its own source: a peer id stands for a peer of its own address group.
    attackers = ["02" + sha256(b"rev24p2 group %d" % i).hex() for i in range(GROUPS)]
    newcomer = SigningKey(sha256(b"rev24p2 new validator"))
    relayed = Vote.create(
        newcomer, chain_id, VoteType.PREVOTE, EPOCH_START + 1, 0, sha256(b"block 2")
    )

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(
                lambda: node.driver.engine.height == EPOCH_START, what="an epoch's start"
            )
            engine = node.driver.engine
            assert engine.next_validators is None
            for i, peer_id in enumerate(attackers):
                part = junk[i * PEER_STRANGER_VOTES : (i + 1) * PEER_STRANGER_VOTES]
                for vote in part:
                    await node.on_gossip(peer_id, Kind.VOTE, pack(vote.to_fields()))
                await wait_until_async(node.driver._inbox.empty, what="the driver's queue")
            await node.on_gossip(HONEST, Kind.VOTE, pack(relayed.to_fields()))
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            buffered = engine.buffered()[1]
            from_junk = sum(v in junk for v in buffered)
            print(f"groups={GROUPS} buffered={len(buffered)} junk held={from_junk}")
            assert relayed in buffered, (
                f"the relayed vote of a new validator was refused: {GROUPS} address groups "
                f"at {PEER_STRANGER_VOTES} votes each hold {from_junk} of the "
                f"{MAX_BUFFERED_STRANGER_VOTES} stranger places, none over its part"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
