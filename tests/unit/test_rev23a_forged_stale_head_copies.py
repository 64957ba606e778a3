"""Review rev23a: forged copies of the head block's proposal are read and compared,
unpunished, without end.

Since red23a 5 a stale full PROPOSAL is dropped before its signature is checked: one
under the head block's hash has the stored head block read (`Chain.get_block_bytes`, up
to max_block_bytes) and compared with its bytes (`_committed_copy`), and a true copy is
dropped unpunished. Until then its signature was checked after the compare, so a copy
with a forged signature cost its sender 100 points (`bad_signature`).

No field of such a copy is checked now: round, pol_round, signer and signature are free,
so each frame differs (the seen-cache never stops it), and each costs a database read and
a compare of the whole head block, unpunished, at the PROPOSAL byte budget, for as long
as the peer likes. Only an honest peer a height behind re-sends the head's proposal, and
it re-sends the real one, signed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.messages import Proposal
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _raw_peer
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain
from tests.support.wait import wait_until_async

FORGED = 20


def test_forged_copies_of_the_head_blocks_proposal_cost_their_sender(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path / "net")
    home = Home(devnet.homes[0])
    chain = open_chain(home.data, devnet.genesis)
    try:
        builder = Builder(chain, time_ms=devnet.genesis.genesis_time_ms)
        block = builder.commit([builder.transfer(funded_key(), bytes([9]) * 20)])
    finally:
        chain.close()
    signer = next(
        key
        for key in (node_hot_key(i) for i in range(4))
        if key.public_key == block.header.proposer
    )
    real = Proposal.create(signer, devnet.genesis.chain_id, 1, 0, -1, block.hash())
    node = Node(home)

    async def scenario() -> None:
        await node.start()
        try:
            assert node.chain.height == 1 and node.chain.head_hash == block.hash()
            reads: list[int] = []
            get_block_bytes = node.chain.get_block_bytes

            def counted(height: int) -> bytes | None:
                reads.append(height)
                return get_block_bytes(height)

            node.chain.get_block_bytes = counted  # type: ignore[method-assign]
            async with _raw_peer(node) as attacker:
                for n in range(FORGED):
                    # The real proposal's fields but round n + 1 and a forged signature.
                    forged = Proposal(1, n + 1, 0, block.hash(), signer.public_key, bytes(64))
                    payload = encode_proposal(forged, block.encode())
                    await node.on_gossip(attacker.id, Kind.PROPOSAL, payload)
                connected = attacker.id in {p.peer_id for p in node.network.peers()}
                score = next(
                    (p.score for p in node.network.peers() if p.peer_id == attacker.id), None
                )
                print(
                    f"forged={FORGED} head_reads={len(reads)} still_connected={connected} "
                    f"score={score} real_signature_ok={real.verify(devnet.genesis.chain_id)}"
                )
                await wait_until_async(
                    lambda: attacker.id not in {p.peer_id for p in node.network.peers()},
                    what=(
                        f"the peer that sent {FORGED} forged copies of the head block's "
                        f"proposal ({len(reads)} head block reads) punished and dropped"
                    ),
                    timeout=3.0,
                )
        finally:
            await node.stop()

    asyncio.run(scenario())
