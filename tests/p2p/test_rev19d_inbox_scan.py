"""Review rev19d: what a byzantine proposer's equivocation can make a node's compact-proposal
rebuilds read from the TXS frames waiting in its peers' inboxes (`Node._may_scan_inboxes`,
`fluxchain/node/inbox_scan.py`)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import pack
from fluxchain.node.compact import encode_compact_proposal
from fluxchain.node.home import Home
from fluxchain.node.inbox_scan import SCANS_PER_ROUND
from fluxchain.node.node import Node
from p2p.messages import Gossip, Kind
from p2p.peer import gossip_id
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import ROUND, _proposed_block, _raw_peer
from tests.p2p.test_rev19b_inbox_scan import _hold_first_frame_of, _other_tx, _peer
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

KiB = 1024
ROUNDS = 10  # rounds of the next height that the byzantine validator proposes
BLOCKS_A_ROUND = 2  # the SCANS_PER_ROUND it may scan in each


def _byzantine_key(node: Node) -> tuple[SigningKey, list[int]]:
    """A devnet validator key other than `node`'s, and the first ROUNDS rounds from ROUND
    on in which it proposes height 1."""
    validators = node.chain.validators()
    keys = [derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)) for i in range(4)]
    key = next(k for k in keys if k.public_key != node.key.public_key)
    rounds = [r for r in range(ROUND, ROUND + 40) if proposer(validators, 1, r) == key.public_key]
    return key, rounds[:ROUNDS]


def _equivocation(block: Block, key: SigningKey, chain_id: str, round_: int, n: int) -> bytes:
    """The `n`th block `key` signs for (height 1, `round_`): `block`'s txs under its own
    header (another time each), as a compact proposal."""
    header = dataclasses.replace(
        block.header, round=round_, proposer=key.public_key, time_ms=block.header.time_ms + n
    )
    forged = Block(header, block.txs, None)
    proposal = Proposal.create(key, chain_id, 1, round_, -1, forged.hash())
    return encode_compact_proposal(proposal, forged)


def test_rev19d_a_byzantine_proposer_cannot_make_a_node_scan_the_inboxes_in_every_round(
    tmp_path: Path,
) -> None:
    """Attack: a validator signs compact proposals for the next height in every round it
    proposes (one round in four of a 4-validator set, up to MAX_ROUND = 2^31), two blocks
    a round, each naming txs the node lacks. `InboxScans` caps scans per (height, round),
    but nothing bounds the rounds: each proposal is of the next height and signed by its
    round's proposer, so each makes the node read and hash up to INBOX_SCAN_BYTES (16 MiB,
    ~16 ms plus decoding) of waiting TXS frames on its event loop, at the COMPACT_PROPOSAL
    rate (20 a second a link, and through any peer that forwards its signed frames), and
    `InboxScans` keeps a record of every round until the height ends. The 2-a-round cap
    bounds nothing: 20 proposals buy 20 scans, as before rev19b 1.
    User sees: under a tx flood (when inboxes hold megabytes), a node whose votes and
    admission lag while one validator sends proposals for rounds far ahead.
    Fix direction: scan only for rounds the engine could use now (its round and the next,
    as consensus bounds its future-round inputs), or cap the scans of a height per
    proposer, and bound `InboxScans`' records."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    block, _ = _proposed_block(tmp_path, devnet)
    chain_id = devnet.genesis.chain_id
    forged: list[bytes] = []
    release = asyncio.Event()
    scans: list[int] = []  # bytes read by each scan of the pusher's inbox

    async def scenario() -> None:
        await node.start()
        try:
            key, rounds = _byzantine_key(node)
            assert len(rounds) == ROUNDS
            forged.extend(
                _equivocation(block, key, chain_id, r, n)
                for r in rounds
                for n in range(BLOCKS_A_ROUND)
            )
            real_scan = node.network.waiting_tx_payloads

            def counted_scan(peer_id: str) -> Iterator[bytes]:
                if peer_id == pusher.id:
                    scans.append(0)
                for payload in real_scan(peer_id):
                    if peer_id == pusher.id:
                        scans[-1] += len(payload)
                    yield payload

            node.network.waiting_tx_payloads = counted_scan  # type: ignore[method-assign]
            async with _raw_peer(node) as pusher, _raw_peer(node) as byzantine:
                # A flood's frames waiting behind a busy host: 256 KiB here, 16 MiB read
                # a scan under a real one.
                _hold_first_frame_of(node, {pusher.id: release})
                await pusher.send(Gossip(Kind.TXS, pack([_other_tx(node, 0).raw])))
                await pusher.send(Gossip(Kind.TXS, pack([bytes([i]) * KiB for i in range(256)])))
                inbox_of_pusher = _peer(node, pusher.id).inbox
                await wait_until_async(
                    lambda: inbox_of_pusher.qsize() == 1, what="the flood's frame waiting"
                )
                for payload in forged:
                    await byzantine.send(Gossip(Kind.COMPACT_PROPOSAL, payload))
                peer = _peer(node, byzantine.id)
                await wait_until_async(
                    lambda: (
                        all(gossip_id(Kind.COMPACT_PROPOSAL, p) in peer.known for p in forged)
                        and peer.inbox.qsize() == 0
                    ),
                    what="the equivocating compact proposals handled",
                )
                read = sum(scans)
                assert len(scans) <= 2 * SCANS_PER_ROUND, (
                    f"{len(forged)} compact proposals of one validator for {ROUNDS} of its "
                    f"rounds at one height made the node scan the inboxes {len(scans)} "
                    f"times ({read / KiB:.0f} KiB of waiting frames read and hashed; "
                    f"16 MiB a scan under a flood)"
                )
        finally:
            release.set()
            await node.stop()

    asyncio.run(scenario())
