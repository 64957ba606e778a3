"""rev24p: the per-peer share of the stranger-vote places (p2p24 1) is a share per node
key, and node keys are free.

The attack p2p24 1 meant to close: at an epoch's first block (next set unknown) one
attacker fills the 1,000 places of keys outside the current set with throw-away votes, so
that the next epoch's new validators' votes, relayed by honest peers, are refused.

What happens now: `Driver.admit` counts PEER_STRANGER_VOTES (100) per peer id, that is per
node key, for the whole height, and the count outlives the link. One host connects with a
fresh node key (its handshake is all it costs; a host may hold 3 links at once,
`max_inbound_per_ip`, and 16 from one /16, `max_inbound_per_group`), sends its 100 votes,
leaves, and comes back with the next key: ten keys in a row, never more than one link at a
time, and the honest relay is refused as before p2p24.

What should happen (docs/security.md, the p2p24 1 row): one attacker's throw-away keys
leave room for the strangers others relay; the share must follow what an attacker cannot
mint for free (its address, as the inbound caps do), or give way to others' votes.
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

PEER_AHEAD = "02" + "7d" * 32


def test_one_host_cycling_node_keys_does_not_take_every_stranger_place(tmp_path: Path) -> None:
    devnet = devnet_at_epoch_start(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    chain_id = devnet.genesis.chain_id
    junk = _stranger_votes(MAX_BUFFERED_STRANGER_VOTES, chain_id, b"rev24p churned junk")
    keys = MAX_BUFFERED_STRANGER_VOTES // PEER_STRANGER_VOTES
    # One host's node keys, one after another.
    churned = ["02" + sha256(b"rev24p node key %d" % i).hex() for i in range(keys)]
    newcomer = SigningKey(sha256(b"rev24p new validator"))
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
            for i, peer_id in enumerate(churned):
                node.on_peer_connected(peer_id)
                part = junk[i * PEER_STRANGER_VOTES : (i + 1) * PEER_STRANGER_VOTES]
                for vote in part:
                    await node.on_gossip(peer_id, Kind.VOTE, pack(vote.to_fields()))
                await wait_until_async(node.driver._inbox.empty, what="the driver's queue")
                node.on_peer_disconnected(peer_id, "closed")
            await node.on_gossip(PEER_AHEAD, Kind.VOTE, pack(relayed.to_fields()))
            await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
            buffered = engine.buffered()[1]
            from_junk = sum(v in junk for v in buffered)
            print(f"keys={keys} junk sent={len(junk)} buffered={len(buffered)} of it={from_junk}")
            assert relayed in buffered, (
                f"the relayed vote of a new validator was refused: one host's {keys} node "
                f"keys in a row hold {from_junk} of the {MAX_BUFFERED_STRANGER_VOTES} "
                "stranger places"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
