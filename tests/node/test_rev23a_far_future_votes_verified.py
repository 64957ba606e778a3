"""Review rev23a: a vote of a height beyond the engine's next still costs a signature check.

`Node._on_vote` now drops a vote of a committed height before `vote.verify` (red23a 4),
and sends one of the engine's next height through `Driver.admit`; a vote of any later
height (chain's height + 3 and on) is verified, then `driver.submit`ted, and the engine
answers `Refused` ("we are behind; needed later"): the network forgets it so that it can
come again, and then it is verified again. Its check bought nothing: no set of that
height is known, so the signature proves nothing the node uses, and the sender is never
punished (an honest peer far ahead may send one).

So anyone with throw-away keys signs votes of heights h + 3, h + 4, ... (distinct votes,
never running out, no seen-cache hit) at the VOTE rate: each costs ~50 us of the event
loop's CPU plus a driver inbox slot, unpunished, unbounded in time: the cost red23a 4
removed for old votes, still open on the other side. The height test is a comparison and
could come first (forgotten, to come again, as the engine's `Refused` does).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from p2p.messages import Kind
from tests.support.calls import count_vote_signatures
from tests.support.chain import Builder, NoGossip, node_hot_key

FAR = 30


def test_a_vote_of_a_height_past_the_engines_next_is_not_verified_only_to_be_refused(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        Builder(chain).commit()
        driver = Driver(chain, NodeService(chain), node_hot_key(0), None, NoGossip())
        driver._new_height()
        assert driver.engine.height == chain.height + 1
        chain_id = chain.params.chain_id
        far = [
            Vote.create(
                SigningKey(sha256(b"rev23a far %d" % n)),
                chain_id,
                VoteType.PREVOTE,
                chain.height + 3 + n,
                0,
                NIL,
            )
            for n in range(FAR)
        ]
        punished: list[str] = []
        forgotten: list[bytes] = []
        gossip = SimpleNamespace(on_received=lambda *args: None)
        host = SimpleNamespace(
            driver=driver,
            chain=chain,
            genesis=SimpleNamespace(chain_id=chain_id),
            consensus_gossip=gossip,
            network=SimpleNamespace(
                punish=lambda peer_id, points, reason: punished.append(reason),
                forget=lambda kind, payload: forgotten.append(payload),
            ),
        )
        host._on_vote = lambda *args: Node._on_vote(host, *args)  # type: ignore[arg-type]
        checked = count_vote_signatures(monkeypatch)
        relayed = [
            await Node.on_gossip(host, "02" + "11" * 32, Kind.VOTE, pack(vote.to_fields()))  # type: ignore[arg-type]
            for vote in far
        ]
        print(f"far votes={len(far)} signatures checked={len(checked)} punished={punished}")
        assert not any(relayed) and punished == []
        assert checked == [], (
            f"{len(checked)} of {len(far)} votes of heights past the engine's next (refused "
            "by the engine, to come again, unpunished) had their signatures checked first"
        )
        await driver.stop()

    asyncio.run(scenario())
