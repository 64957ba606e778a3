"""Review rev23a: junk under a held proposal's fields, sent as a COMPACT_PROPOSAL, is
dropped unpunished again (rev17a 1 reopened by the parse/check split).

Until d01a88b `Node._on_compact_proposal` ran `decode_compact_proposal` first: a payload
whose ids, parent commit or header did not match its proposal's block hash raised
`bad_proposal` (100 points) before anything else. The split moved
`check_compact_proposal` after `driver.holds(proposal)` and after the stale test, so a
payload that carries a proposal the engine holds (or any committed height's, served by
GET_BLOCKS and the gossip itself) with any ids (up to max_block_txs * 32 bytes), header
and commit is parsed (`unpack`, `CompactProposal.from_fields`: the header and a commit of
up to the largest set decoded) and then dropped as "a copy" or "old news", unpunished;
each frame different, so the seen-cache never stops it. For full PROPOSALs this very
stream was closed by rev17a 1 ("other bytes under a held proposal are junk, punished").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import pack
from fluxchain.node.compact import CompactProposal
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Kind
from tests.integration.harness import Devnet
from tests.support.chain import first_block
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

HONEST, JUNK = ("02" + "7c" * 32, "02" + "7d" * 32)
FRAMES = 5


def test_a_compact_payload_of_junk_under_a_held_proposal_costs_its_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block = first_block(tmp_path / "builder", devnet.genesis)
    chain_id = devnet.genesis.chain_id
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]

    async def scenario() -> None:
        await node.start()
        try:
            await wait_until_async(lambda: node.driver.engine.height == 1, what="height 1")
            chosen = proposer(node.chain.validators(), 1, 0)
            signer = next(k for k in keys if k.public_key == chosen)
            real = Proposal.create(signer, chain_id, 1, 0, -1, block.hash())
            await node.on_gossip(HONEST, Kind.PROPOSAL, encode_proposal(real, block.encode()))
            await wait_until_async(lambda: node.driver.holds(real), what="the proposal held")
            punished: list[tuple[str, float]] = []
            monkeypatch.setattr(
                node.network, "punish", lambda peer, points, why: punished.append((peer, points))
            )
            for n in range(FRAMES):
                # The held proposal and header over ids that are not the header's tx_root.
                ids = b"".join(sha256(b"rev23a junk id %d %d" % (n, i)) for i in range(64))
                junk = pack(CompactProposal(real, block.header, ids, None).to_fields())
                assert await node.on_gossip(JUNK, Kind.COMPACT_PROPOSAL, junk) is False
            costs = [points for peer, points in punished if peer == JUNK]
            print(f"frames={FRAMES} junk_sender_points={costs}")
            assert sum(costs) >= 100, (
                f"{FRAMES} compact frames of junk ids under a held proposal cost their "
                f"sender {sum(costs)} points"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
