"""fix15c: a compact re-proposal of a block the engine already holds is rebuilt from
that block, with no fetch from the network."""

from __future__ import annotations

from pathlib import Path

from consensus.messages import Proposal
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.driver import encode_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import GetProposalTxs, Gossip, Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _proposed_block, _raw_peer, watch_handed
from tests.integration.test_rev15b_compact_first import _key_of_round, run_started, watch_asked
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path


def test_fix15c_a_compact_re_proposal_of_a_held_block_needs_no_fetch(tmp_path: Path) -> None:
    """Round 1's proposer re-proposes round 0's block on its proof of lock, compact. The
    node holds round 0's proposal (its txs came inside the block, never admitted): the
    re-proposal reaches consensus with the same bytes at once, and its sender (which
    never answers) is not asked for txs."""
    devnet = Devnet(tmp_path / "net")
    block, _txs = _proposed_block(tmp_path, devnet, round_=0)
    # A node that does not propose round 0, so that round 0's proposal is another's.
    index = next(
        i
        for i in range(4)
        if derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)).public_key != block.header.proposer
    )
    node = Node(Home(devnet.homes[index]))
    chain_id = devnet.genesis.chain_id

    async def scenario() -> None:
        handed = watch_handed(node)
        first = Proposal.create(_key_of_round(node, 0), chain_id, 1, 0, -1, block.hash())
        again = Proposal.create(_key_of_round(node, 1), chain_id, 1, 1, 0, block.hash())
        async with _raw_peer(node) as full_sender, _raw_peer(node) as silent:
            await full_sender.send(Gossip(Kind.PROPOSAL, encode_proposal(first, block.encode())))
            await wait_until_async(
                lambda: node.driver.holds(first), what="round 0's proposal held by the engine"
            )
            asked = watch_asked(node, lambda: True)
            await silent.send(Gossip(Kind.COMPACT_PROPOSAL, encode_compact_proposal(again, block)))
            await wait_until_async(
                lambda: any(item.proposal == again for item in handed),
                what="the re-proposal handed to consensus",
            )
            assert not asked, f"txs fetched from {[peer[:16] for peer, _ in asked]}"
            assert [i.block_bytes for i in handed if i.proposal == again] == [block.encode()]
            try:
                request = await silent.receive_kind(GetProposalTxs, timeout=0.3)
            except TimeoutError:
                return
            raise AssertionError(f"the re-proposal's sender was asked for txs: {request}")

    run_started(node, scenario)
