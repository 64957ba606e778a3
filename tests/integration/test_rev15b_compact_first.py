"""Review rev15b: compact-first consensus gossip (wan15) against a node that saw the
compact copy but does not hold the proposal, and against relayers that do not serve.

Each test here FAILS on wt/integ15; its docstring says the attack, what a user sees and
the fix direction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import MAX_PROPOSAL_TXS_SOURCES, PROPOSAL_TXS_TIMEOUT_S, Node
from p2p.messages import GetProposalTxs, Gossip, Kind, ProposalTxs, RoundState
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import (
    ROUND,
    SENT_BEFORE,
    _asked,
    _proposed_block,
    _proposer_key,
    _raw_peer,
    _received,
    watch_handed,
)
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path


def run_started(node: Node, scenario: Callable[[], Awaitable[None]]) -> None:
    """Run `scenario` on `node` started, and stop the node after it, whatever happens."""

    async def main() -> None:
        await node.start()
        try:
            await scenario()
        finally:
            await node.stop()

    asyncio.run(main())


def watch_asked(node: Node, known: Callable[[], bool]) -> list[tuple[str, bool]]:
    """The peers `node` asks for a proposal's txs from now on, in order, each with whether
    `known()` held when it was asked."""
    asked: list[tuple[str, bool]] = []
    request = node.network.request_proposal_txs

    async def watched(
        peer_id: str, block_hash: bytes, tx_ids: list[bytes], timeout: float
    ) -> list[bytes]:
        asked.append((peer_id, known()))
        return await request(peer_id, block_hash, tx_ids, timeout)

    node.network.request_proposal_txs = watched  # type: ignore[method-assign]
    return asked


def _names(asked: list[tuple[str, bool]], names: dict[str, str]) -> str:
    return ", ".join(names.get(peer, peer[:16]) for peer, _ in asked) or "nobody"


def test_rev15b_a_compact_proposal_refused_for_now_can_come_again(tmp_path: Path) -> None:
    """Attack/fault: a node's engine refuses a proposal for now (a round far ahead with no
    vote yet, a height it has not reached, a full buffer, a full consensus inbox under
    load) that came COMPACT, as flooding sends every proposal. `_forget_refused` lets only
    the full PROPOSAL encoding through again; the COMPACT_PROPOSAL payload stays in the
    relay's seen-cache (COMPACT_PROPOSAL is not a CONSENSUS_KINDS kind, so it is never
    redelivered either). Since wan15 the first send consensus gossip makes to a peer that
    lacks the proposal is exactly that compact payload: every peer's first send to the
    node is dropped as a duplicate before the node sees it.

    What a user sees: a validator that enters the round (or height) later waits a full
    resend time (1.5 s) more for its proposal, and then gets the full block from every
    peer (the very storm wan15 removes); before wan15 the first gossip send got through.

    Fix direction: forget the compact payload too when consensus refuses a proposal (keep
    the payload by the proposal's signature, as `_compact_payloads` does), or let
    COMPACT_PROPOSAL be redelivered as the CONSENSUS_KINDS are."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, txs = _proposed_block(tmp_path, devnet)

    async def scenario() -> None:
        handed = watch_handed(node)
        for tx in txs:  # every tx held: rebuilt at once, no fetch
            node.service.submit(tx.raw)
        proposal = Proposal.create(
            _proposer_key(node), devnet.genesis.chain_id, 1, ROUND, -1, block.hash()
        )
        compact = encode_compact_proposal(proposal, block)
        async with _raw_peer(node) as flooder, _raw_peer(node) as gossiper:
            await flooder.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            await wait_until_async(
                lambda: len(handed) == 1 and bool(_received(node, block.hash())),
                what="the rebuilt proposal handed to consensus (which refuses it for now)",
            )
            assert handed[0].block_bytes == block.encode()
            assert not node.driver.holds(proposal), "round 50 is far ahead: refused"
            # Later (the node reached round 50), a peer's consensus gossip sends the
            # proposal it lacks: compact, its first send since wan15.
            await gossiper.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            await wait_until_async(
                lambda: gossiper.id in node.network.gossip_senders(Kind.COMPACT_PROPOSAL, compact),
                what="the gossiped copy read by the node",
            )
            await wait_until_async(
                lambda: len(handed) >= 2,
                what=(
                    "the compact copy handed to consensus again (dropped as a duplicate of "
                    "the one its engine refused?)"
                ),
            )
            assert len(handed) == 2

    run_started(node, scenario)


def test_rev15b_silent_relayers_keep_a_node_from_a_holder_sending_it_the_compact_copy(
    tmp_path: Path,
) -> None:
    """Attack: three Sybil peers (no stake) relay a fresh compact proposal to a node at
    once, without rebuilding it (honest relays rebuild first, so the Sybils' copies come
    first), and never answer GET_PROPOSAL_TXS. The node's rebuild asks the senders in the
    order they connected, up to MAX_PROPOSAL_TXS_SOURCES (3): all three Sybils, one
    request timeout (1 s) each. Meanwhile a peer that holds the proposal (its ROUND_STATE
    shows it) sends it the compact copy, as consensus gossip now does first: a duplicate
    of the one being rebuilt, so it is dropped and its sender never asked.

    What a user sees: before wan15 that holder's first send was the full block, taken at
    once; now the node has no block for 3 s (the propose timeout of round 0) and then gets
    the full block from every holder a resend time after its compact send: the full-block
    storm wan15 set out to end, at the will of anyone who can open three connections.

    Fix direction: on a failed source, ask peers whose ROUND_STATE shows the proposal held
    (they hold the txs) before mere relayers, or ask the next source in parallel once a
    compact copy comes from a holder; count only holders against the source cap."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, txs = _proposed_block(tmp_path, devnet)

    async def scenario() -> None:
        watch_handed(node)
        for tx in txs[:SENT_BEFORE]:
            node.service.submit(tx.raw)
        proposal = Proposal.create(
            _proposer_key(node), devnet.genesis.chain_id, 1, ROUND, -1, block.hash()
        )
        compact = encode_compact_proposal(proposal, block)
        async with (
            _raw_peer(node) as sybil_a,
            _raw_peer(node) as sybil_b,
            _raw_peer(node) as sybil_c,
            _raw_peer(node) as holder,
        ):
            names = {sybil_a.id: "sybil a", sybil_b.id: "sybil b", sybil_c.id: "sybil c"}
            names[holder.id] = "the holder"

            def holders() -> list[str]:
                return list(node.consensus_gossip.holders(1, ROUND, block.hash()))

            asked = watch_asked(node, lambda: holder.id in holders())
            await sybil_a.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            await _asked(sybil_a)  # never answered
            for peer in (sybil_b, sybil_c):
                await peer.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            # The holder says so, then sends what consensus gossip sends first.
            await holder.send(RoundState(1, ROUND, 1, block.hash(), ()))
            await wait_until_async(
                lambda: holder.id in holders(), what="the holder's ROUND_STATE read by the node"
            )
            await holder.send(Gossip(Kind.COMPACT_PROPOSAL, compact))
            await wait_until_async(
                lambda: holder.id in node.network.gossip_senders(Kind.COMPACT_PROPOSAL, compact),
                what="the holder's compact copy read by the node",
            )
            # At worst the holder comes after a group's silent sources, each given
            # PROPOSAL_TXS_TIMEOUT_S; 5 s more for a loaded machine.
            try:
                request: GetProposalTxs = await holder.receive_kind(
                    GetProposalTxs, timeout=MAX_PROPOSAL_TXS_SOURCES * PROPOSAL_TXS_TIMEOUT_S + 5.0
                )
            except TimeoutError:
                raise AssertionError(
                    "the peer holding the proposal was never asked for its txs: the rebuild "
                    f"asked only the silent relayers ({_names(asked, names)})"
                ) from None
            # What made the block late: a relayer asked while the node knew of a holder.
            # The holder's ROUND_STATE may come after the first Sybil failed on a slow
            # machine (then the next Sybil is asked, rightly); never after it is read.
            known = [peer for peer, holder_known in asked if holder_known]
            assert known[:1] == [holder.id], (
                "a silent relayer was asked while the node knew the holder held the proposal "
                f"(asked in turn: {_names(asked, names)})"
            )
            await holder.send(
                ProposalTxs(request.request_id, tuple(tx.raw for tx in txs[SENT_BEFORE:]))
            )
            await wait_until_async(
                lambda: bool(_received(node, block.hash())), what="the rebuilt block"
            )

    run_started(node, scenario)


def _key_of_round(node: Node, round_: int) -> SigningKey:
    """The devnet validator key that proposes (height 1, `round_`)."""
    chosen = proposer(node.chain.validators(), 1, round_)
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    return next(k for k in keys if k.public_key == chosen)


def test_rev15b_a_re_proposal_met_while_its_block_is_rebuilt_is_not_lost(tmp_path: Path) -> None:
    """Attack/fault: a node is still fetching the txs of round r's compact proposal of
    block B (a slow or silent source: the Sybils of the test above hold it 3 s) when round
    r+1's proposer re-proposes B on its proof of lock (same block hash, another proposal).
    `_on_compact_proposal` drops any compact proposal of a block hash being rebuilt, and
    the dropped copy stays in the relay's seen-cache: when the rebuild ends, only round r's
    proposal reaches consensus, and the compact copy of the re-proposal that consensus
    gossip now sends first is a duplicate, dropped before the node sees it.

    What a user sees: a validator that holds B cannot prevote B's re-proposal (the POL
    round that should end a stalled height) until a peer sends it the full block a resend
    time (1.5 s) later; before wan15 that first gossip send was the full block.

    Fix direction: key the rebuild by the proposal's signature, or when a rebuild of B
    ends hand consensus every proposal of B dropped meanwhile (they carry the same block
    bytes), and forget their payloads."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, txs = _proposed_block(tmp_path, devnet)

    async def scenario() -> None:
        handed = watch_handed(node)
        for tx in txs[:SENT_BEFORE]:
            node.service.submit(tx.raw)
        chain_id = devnet.genesis.chain_id
        first = Proposal.create(_key_of_round(node, ROUND), chain_id, 1, ROUND, -1, block.hash())
        again = Proposal.create(
            _key_of_round(node, ROUND + 1), chain_id, 1, ROUND + 1, ROUND, block.hash()
        )
        compact_first = encode_compact_proposal(first, block)
        compact_again = encode_compact_proposal(again, block)
        async with _raw_peer(node) as slow, _raw_peer(node) as other:
            await slow.send(Gossip(Kind.COMPACT_PROPOSAL, compact_first))
            request = await _asked(slow)
            await other.send(Gossip(Kind.COMPACT_PROPOSAL, compact_again))  # flooded
            await wait_until_async(
                lambda: (
                    other.id in node.network.gossip_senders(Kind.COMPACT_PROPOSAL, compact_again)
                ),
                what="the re-proposal read by the node",
            )
            await slow.send(
                ProposalTxs(request.request_id, tuple(tx.raw for tx in txs[SENT_BEFORE:]))
            )
            await wait_until_async(
                lambda: any(item.proposal == first for item in handed),
                what="round r's rebuilt proposal in consensus",
            )
            # The node's ROUND_STATE lacks the re-proposal: a peer's consensus gossip
            # sends it compact first.
            await other.send(Gossip(Kind.COMPACT_PROPOSAL, compact_again))
            await wait_until_async(
                lambda: any(item.proposal == again for item in handed),
                what=(
                    "the re-proposal of the block being rebuilt in consensus (dropped during "
                    "the rebuild, and its compact copy a duplicate after?)"
                ),
            )
            assert [i.block_bytes for i in handed if i.proposal == again] == [block.encode()]

    run_started(node, scenario)
