"""Review rev19b: compact proposals read ahead of a peer's txs, and rebuilt from the TXS
frames still waiting in the peers' inboxes (diag19, `Node._fill_from_inboxes`)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from consensus.messages import Proposal
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import pack
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.home import Home
from fluxchain.node.node import PROPOSAL_TXS_TIMEOUT_S, Node
from p2p.messages import Gossip, Kind
from p2p.peer import Peer, gossip_id
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import (
    ROUND,
    SCAN_ROUND,
    SENT_BEFORE,
    _compact_of,
    _proposed_block,
    _raw_peer,
    _received,
)
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

MiB = 1024 * 1024


def _other_tx(node: Node, nonce: int) -> Tx:
    """A transfer of another sender than the proposed block's (`nonce`: one per frame,
    as the seen-set drops a second copy of a frame)."""
    key = derive_key(INSECURE_TEST_MNEMONIC, account_path(5))
    return Tx.create(
        key, node.chain.params.chain_id, nonce, 5_000, Transfer(b"\x07" * 20, COIN, b"")
    )


def _peer(node: Node, peer_id: str) -> Peer:
    return next(p for p in node.network._peers.values() if p.peer_id == peer_id)


def _hold_first_frame_of(node: Node, held: dict[str, asyncio.Event]) -> set[str]:
    """Keep the host busy with the first TXS frame of each peer in `held` until its event
    is set, so that the peer's later frames wait in its inbox (a host busy with a flood);
    return the peers whose first frame the host is busy with."""
    on_txs = node._on_txs
    busy: set[str] = set()

    async def slow_on_txs(
        peer_id: str, raws: list[bytes], admitted: list[bytes] | None = None
    ) -> bool:
        if peer_id in held and peer_id not in busy:
            busy.add(peer_id)
            await held[peer_id].wait()
        return await on_txs(peer_id, raws, admitted)

    node._on_txs = slow_on_txs  # type: ignore[method-assign]
    return busy


def _stranger_compact(
    block: Block, key: SigningKey, chain_id: str, height: int, round_: int
) -> bytes:
    """A compact proposal of `block`'s txs under a header naming `key` as proposer of
    (`height`, `round_`), signed by `key`: anyone can make one (no validator key)."""
    header = dataclasses.replace(block.header, height=height, round=round_, proposer=key.public_key)
    forged = Block(header, block.txs, None)  # no parent commit: NO_COMMIT_HASH as at 1
    proposal = Proposal.create(key, chain_id, height, round_, -1, forged.hash())
    return encode_compact_proposal(proposal, forged)


def test_rev19b_compact_proposals_of_a_stranger_do_not_make_the_node_scan_the_inboxes(
    tmp_path: Path,
) -> None:
    """Attack: a connected peer (no validator key) signs compact proposals with a key of
    its own, each of another header (other rounds of the next height, later heights),
    naming txs the node lacks; at 20 a second (the COMPACT_PROPOSAL rate) each one makes
    the node read and hash up to INBOX_SCAN_BYTES (16 MiB) of the TXS frames waiting in
    its peers' inboxes, synchronously on the event loop, before anything checks that the
    signer proposes that round. Under the flood the scan exists for, the inboxes hold that
    much: one peer's frame (~100 bytes and a signature check to us) buys tens of ms of
    hashing, a CPU amplifier that delays votes and admission for every peer.
    User sees: a node under a tx flood falling behind while a peer sends junk proposals.
    Fix direction: scan only for a proposal of the next height whose signer proposes its
    round (`proposer(...)`, as `_take_proposal` checks after the fact), and at most once or
    twice per (height, round)."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, _ = _proposed_block(tmp_path, devnet)
    chain_id = devnet.genesis.chain_id
    stranger = SigningKey.generate()
    forged = [_stranger_compact(block, stranger, chain_id, 1, ROUND + r) for r in range(4)]
    forged += [_stranger_compact(block, stranger, chain_id, h, 0) for h in range(3, 7)]
    release = asyncio.Event()
    scanned: list[int] = []

    async def scenario() -> None:
        await node.start()
        try:
            real_scan = node.network.waiting_tx_payloads

            def counted_scan(peer_id: str) -> Iterator[bytes]:
                for payload in real_scan(peer_id):
                    scanned.append(len(payload))
                    yield payload

            node.network.waiting_tx_payloads = counted_scan  # type: ignore[method-assign]
            async with _raw_peer(node) as pusher, _raw_peer(node) as attacker:
                _hold_first_frame_of(node, {pusher.id: release})
                await pusher.send(Gossip(Kind.TXS, pack([_other_tx(node, 0).raw])))
                for frame in range(2):  # ~2 MB each, distinct (the seen-set drops copies)
                    junk = pack([bytes([frame, i % 251]) * 500 for i in range(2000)])
                    await pusher.send(Gossip(Kind.TXS, junk))
                inbox_of_pusher = _peer(node, pusher.id).inbox
                await wait_until_async(
                    lambda: inbox_of_pusher.qsize() == 2, what="the flood's frames waiting"
                )
                for payload in forged:
                    await attacker.send(Gossip(Kind.COMPACT_PROPOSAL, payload))
                peer = _peer(node, attacker.id)
                await wait_until_async(
                    lambda: (
                        all(gossip_id(Kind.COMPACT_PROPOSAL, p) in peer.known for p in forged)
                        and peer.inbox.qsize() == 0
                    ),
                    what="the forged compact proposals handled",
                )
                assert sum(scanned) == 0, (
                    f"{len(forged)} compact proposals signed by a stranger made the node "
                    f"read {sum(scanned) / MiB:.1f} MiB of waiting TXS frames"
                )
        finally:
            release.set()
            await node.stop()

    asyncio.run(scenario())


def test_rev19b_a_peers_waiting_frames_do_not_starve_the_rebuild_of_the_senders_txs(
    tmp_path: Path,
) -> None:
    """Attack: a peer that connected first keeps more than INBOX_SCAN_BYTES (16 MiB) of
    TXS frames waiting in its inbox (a few big frames; an honest flooding peer does it
    too). The proposer pushes a block's txs and then its compact proposal on its own
    link; the compact proposal now goes ahead of them, and its rebuild reads the peers'
    inboxes in connection order: the budget is spent on the first peer's frames and the
    sender's own txs, right behind the proposal in its inbox, are never read. Before
    diag19 the proposal waited behind those txs and was rebuilt from the pool; now the
    node asks the (busy) proposer for them, and if it does not answer in time the round
    goes by without the block.
    User sees: a rebuild needing a fetch, or failing, that needed neither before.
    Fix direction: read the sender's inbox first (the txs it pushed ahead of the
    proposal are the ones named), then the others', with a per-peer share of the budget
    counted over decoded txs rather than raw frame bytes."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, txs = _proposed_block(tmp_path, devnet, SCAN_ROUND)
    flooder_busy, sender_busy = asyncio.Event(), asyncio.Event()

    async def scenario() -> None:
        await node.start()
        try:
            async with _raw_peer(node) as flooder, _raw_peer(node) as sender:
                busy = _hold_first_frame_of(
                    node, {flooder.id: flooder_busy, sender.id: sender_busy}
                )
                await flooder.send(Gossip(Kind.TXS, pack([_other_tx(node, 0).raw])))
                for i in range(3):  # 18 MiB waiting, past the 16 MiB a rebuild reads
                    await flooder.send(Gossip(Kind.TXS, pack([bytes([i]) * (6 * MiB)])))
                flooder_inbox = _peer(node, flooder.id).inbox
                await wait_until_async(
                    lambda: flooder_inbox.qsize() == 3, what="the flooder's frames waiting"
                )
                # The proposer's link: the host busy with an earlier frame of it, then the
                # block's txs pushed ahead of its compact proposal.
                for tx in txs[:SENT_BEFORE]:
                    node.service.submit(tx.raw)
                await sender.send(Gossip(Kind.TXS, pack([_other_tx(node, 1).raw])))
                await wait_until_async(lambda: sender.id in busy, what="the host busy")
                await sender.send(Gossip(Kind.TXS, pack([tx.raw for tx in txs[SENT_BEFORE:]])))
                await sender.send(
                    Gossip(Kind.COMPACT_PROPOSAL, _compact_of(node, devnet, block, SCAN_ROUND))
                )
                sender_inbox = _peer(node, sender.id).inbox
                await wait_until_async(
                    lambda: sender_inbox.qsize() == 2, what="the txs and the proposal waiting"
                )
                sender_busy.set()  # the host reaches the proposer's frames; it never answers
                await wait_until_async(
                    lambda: bool(_received(node, block.hash())),
                    timeout=2 * PROPOSAL_TXS_TIMEOUT_S,
                    what="the block rebuilt from the txs its proposer pushed ahead of it",
                )
                assert _received(node, block.hash()) == [block.encode()]
        finally:
            flooder_busy.set()
            sender_busy.set()
            await node.stop()

    asyncio.run(scenario())
