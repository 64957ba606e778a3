"""State sync against lying peers (fluxchain/node/statesync.py, docs/storage.md).

A real chain is built, snapshotted in small chunks, and served by fake peers through the
network interface state sync uses; some of them lie. Each lie must be detected when it
arrives, its peer banned with a stable reason, the data fetched from an honest peer, and
the state written only once all of it matched the trusted header.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import pytest

from fluxchain.core.accounts import get_account
from fluxchain.core.block import Block
from fluxchain.core.crypto import address_of, sha256
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.statetree import MAX_CUT_DEPTH, StateTree, cut_entry, path_prefix
from fluxchain.core.votes import Commit
from fluxchain.node.statesync import (
    SnapshotFault,
    StateSync,
    SyncedState,
    TrustedHeader,
    write_synced_state,
)
from fluxchain.store.chain import Chain
from fluxchain.store.snapshots import (
    MAX_CHUNKS,
    Manifest,
    build_snapshot,
    decode_chunk,
    encode_chunk,
)
from p2p.errors import P2PError, PeerReason
from p2p.limits import TokenBucket, default_rates
from p2p.messages import MAX_SNAPSHOT_PARTS, Kind, SnapshotOffer
from p2p.network import PeerInfo
from p2p.peer import Direction
from tests.support.chain import Builder, funded_key, open_chain
from tests.unit.test_statetree_cut import split_cut

CHUNK_TARGET = 8 * 1024  # small chunks: a few dozen of them for a few thousand keys
SEED = 23


@dataclass
class Served:
    """What one fake peer serves: its offers, snapshot parts and blocks."""

    offers: list[SnapshotOffer]
    parts: dict[tuple[int, int], bytes]
    blocks: dict[int, tuple[bytes, bytes]]
    hang_on: set[int] = field(default_factory=set)  # part indexes it never answers


class FakeNetwork:
    """The network as state sync sees it, with peers that answer from `Served`."""

    def __init__(self, peers: dict[str, Served]) -> None:
        self.served = peers
        self.punished: list[tuple[str, float, str]] = []
        self.asked: list[tuple[str, int]] = []  # (peer, part index)

    def peers(self) -> list[PeerInfo]:
        return [
            PeerInfo(p, b"", "", Direction.OUTBOUND, 0, b"", 0.0, 0.0)
            for p in self.served
            if p not in {q for q, points, _ in self.punished if points >= 100}
        ]

    async def request_blocks(
        self, peer_id: str, start_height: int, count: int, timeout: float = 1.0
    ) -> list[tuple[bytes, bytes]]:
        pair = self.served[peer_id].blocks.get(start_height)
        return [] if pair is None else [pair]

    async def request_snapshots(self, peer_id: str, timeout: float = 1.0) -> list[SnapshotOffer]:
        return list(self.served[peer_id].offers)

    async def request_snapshot_part(
        self, peer_id: str, height: int, index: int, timeout: float = 1.0
    ) -> bytes:
        self.asked.append((peer_id, index))
        await asyncio.sleep(0)  # let the other workers interleave, as a network would
        if index in self.served[peer_id].hang_on:
            await asyncio.sleep(timeout)
            raise P2PError(PeerReason.TIMEOUT, "no answer")
        return self.served[peer_id].parts.get((height, index), b"")

    def punish(self, peer_id: str, points: float, reason: str) -> None:
        self.punished.append((peer_id, points, reason))


@dataclass
class Source:
    """A built chain: its snapshot at `height` and the blocks around it."""

    chain: Chain
    height: int
    manifest: Manifest
    chunks: list[bytes]
    blocks: dict[int, tuple[bytes, bytes]]
    earlier: Manifest  # a snapshot of an earlier height
    earlier_chunks: list[bytes]

    def served(self, manifest: Manifest | None = None, chunks: list[bytes] | None = None,
               offered_hash: bytes | None = None) -> Served:  # fmt: skip
        manifest = manifest or self.manifest
        chunks = chunks if chunks is not None else self.chunks
        data = manifest.encode()
        parts = {(self.height, 0): data}
        parts.update({(self.height, i + 1): c for i, c in enumerate(chunks)})
        offer = SnapshotOffer(self.height, offered_hash or manifest.hash(), len(chunks) + 1)
        return Served([offer], parts, dict(self.blocks))

    @property
    def trust(self) -> TrustedHeader:
        return TrustedHeader(self.height, self.chain.get_block(self.height).hash())


def _snapshot(chain: Chain) -> tuple[Manifest, list[bytes]]:
    assert chain.head is not None
    view = chain.db.state_view()
    try:
        return build_snapshot(view, chain.height, chain.head.state_root, target=CHUNK_TARGET)
    finally:
        view.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    rng = random.Random(SEED)
    chain = open_chain(tmp_path_factory.mktemp("source") / "data")
    builder = Builder(chain)
    sender = funded_key()
    blocks: dict[int, tuple[bytes, bytes]] = {}
    earlier: tuple[Manifest, list[bytes]] | None = None
    for height in range(1, 6):
        txs = [builder.transfer(sender, rng.randbytes(20), 100_000) for _ in range(400)]
        block = builder.commit(txs)
        commit = chain.get_commit(height)
        assert commit is not None
        blocks[height] = (block.encode(), pack(commit.to_fields()))
        if height == 3:
            earlier = _snapshot(chain)
    assert earlier is not None
    manifest, chunks = _snapshot(chain)
    # One block beyond the snapshot, for the synced node to import next.
    txs = [builder.transfer(sender, rng.randbytes(20), 100_000) for _ in range(10)]
    block = builder.commit(txs)
    commit = chain.get_commit(6)
    assert commit is not None
    blocks[6] = (block.encode(), pack(commit.to_fields()))
    assert manifest.chunks >= 8, manifest.chunks
    return Source(chain, 5, manifest, chunks, blocks, *earlier)


def _run(network: FakeNetwork, trust: TrustedHeader, chain: Chain) -> StateSync:
    return StateSync(network, chain.params, trust, timeout=0.2, rng=random.Random(SEED))


def _sync(network: FakeNetwork, source: Source) -> tuple[StateSync, SyncedState]:
    sync = _run(network, source.trust, source.chain)
    synced = asyncio.run(asyncio.wait_for(sync.run(), 30))
    return sync, synced


def _install(tmp_path: Path, synced: SyncedState) -> Chain:
    """Write a synced state into a new home the way the node does, and reopen it."""
    chain = open_chain(tmp_path / "fresh")
    write_synced_state(chain.db, synced)
    chain.close()
    return open_chain(tmp_path / "fresh")


def _root(synced: SyncedState) -> bytes:
    """The root of the state a sync returned, computed afresh from its pairs."""
    return StateTree.from_items(synced.items()).root


def _banned(network: FakeNetwork) -> dict[str, str]:
    return {peer: reason for peer, points, reason in network.punished if points >= 100}


def test_state_sync_rebuilds_the_trusted_state_and_the_node_continues(
    source: Source, tmp_path: Path
) -> None:
    """From honest peers: the state at the trusted height, written as the node's state,
    from which the next block imports as on the node that built the chain."""
    network = FakeNetwork({"a": source.served(), "b": source.served()})
    sync, synced = _sync(network, source)
    assert not network.punished and not sync.faults
    chain = _install(tmp_path, synced)
    try:
        assert chain.height == source.height
        assert chain.base_height == source.height
        assert chain.tree.root == source.chain.get_block(source.height).header.state_root
        owner = address_of(funded_key().public_key)
        assert get_account(chain.state, owner).nonce == 5 * 400
        # It follows: block H + 1 imports on top of the synced state (validators, last
        # commit, history all as consensus needs them).
        raw, _ = source.blocks[6]
        block = Block.decode(raw, 1 << 30, 1 << 20)
        commit = source.chain.get_commit(6)
        assert commit is not None
        chain.import_block(block, commit)
        assert chain.head_hash == source.chain.head_hash
        assert chain.tree.root == source.chain.tree.root
    finally:
        chain.close()


def _corrupt(chunks: list[bytes]) -> list[bytes]:
    """Every chunk with one value altered by one byte."""
    out = []
    for data in chunks:
        pairs = decode_chunk(data)
        key, value = pairs[0]
        pairs[0] = (key, bytes([value[0] ^ 1]) + value[1:])
        out.append(encode_chunk(pairs))
    return out


def test_a_corrupt_chunk_is_refused_its_peer_banned_and_the_chunk_refetched(
    source: Source,
) -> None:
    liar = source.served(chunks=_corrupt(source.chunks))  # the honest manifest, bad chunks
    network = FakeNetwork({"liar": liar, "honest": source.served()})
    _, synced = _sync(network, source)
    assert _banned(network) == {"liar": SnapshotFault.BAD_CHUNK.value}
    assert any(peer == "liar" and index > 0 for peer, index in network.asked)
    assert _root(synced) == source.manifest.state_root


def test_a_manifest_that_is_not_the_one_offered_is_refused(source: Source) -> None:
    """The liar offers the honest manifest's hash and serves another manifest."""
    entries = list(source.manifest.entries)
    entries[0], entries[1] = entries[1], entries[0]
    other = replace(source.manifest, entries=tuple(entries))
    liar = source.served(manifest=other, offered_hash=source.manifest.hash())
    network = FakeNetwork({"liar": liar, "honest": source.served()})
    _, synced = _sync(network, source)
    assert _banned(network) == {"liar": SnapshotFault.BAD_MANIFEST.value}
    assert _root(synced) == source.manifest.state_root


def test_a_manifest_whose_cut_does_not_fold_to_the_trusted_root_is_refused(
    source: Source,
) -> None:
    """The liar's manifest names the trusted root but its cut is of another state: found
    before a single chunk is asked of it."""
    entries = list(source.manifest.entries)
    entries[3] = cut_entry([(b"forged", b"state")], source.manifest.depth)
    forged = replace(source.manifest, entries=tuple(entries))
    liar = source.served(manifest=forged)
    network = FakeNetwork({"liar": liar, "honest": source.served()})
    _, synced = _sync(network, source)
    assert _banned(network) == {"liar": SnapshotFault.BAD_MANIFEST.value}
    assert not any(peer == "liar" and index > 0 for peer, index in network.asked)
    assert _root(synced) == source.manifest.state_root


def test_a_snapshot_of_another_state_root_is_refused(source: Source) -> None:
    """The liar serves a consistent, honest-looking snapshot of an earlier state, labelled
    with the trusted height: its root is not the trusted header's."""
    relabelled = replace(source.earlier, height=source.height)
    liar = source.served(manifest=relabelled, chunks=source.earlier_chunks)
    network = FakeNetwork({"liar": liar, "honest": source.served()})
    _, synced = _sync(network, source)
    assert _banned(network) == {"liar": SnapshotFault.WRONG_ROOT.value}
    assert _root(synced) == source.manifest.state_root


def test_a_block_that_is_not_the_trusted_one_is_refused(source: Source) -> None:
    liar = source.served()
    liar.blocks[source.height] = source.blocks[source.height - 1]
    network = FakeNetwork({"liar": liar, "honest": source.served()})
    _, synced = _sync(network, source)
    assert _banned(network) == {"liar": SnapshotFault.WRONG_BLOCK.value}
    assert synced.block.hash() == source.trust.block_hash


def test_an_interrupted_state_sync_writes_nothing_and_starts_again_cleanly(
    source: Source, tmp_path: Path
) -> None:
    """A node stopped in the middle of a state sync (its only peer stalls on a chunk)
    holds its genesis state, nothing of the snapshot; started again, it syncs fully."""
    home = tmp_path / "fresh"
    chain = open_chain(home)
    stalling = source.served()
    stalling.hang_on = {source.manifest.chunks}  # the last chunk never comes
    network = FakeNetwork({"stalling": stalling})
    sync = _run(network, source.trust, chain)

    async def interrupted() -> None:
        task = asyncio.ensure_future(sync.run())
        await _until(lambda: len(network.asked) > source.manifest.chunks // 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    chain.close()
    chain = open_chain(home)
    try:
        assert chain.height == 0 and chain.base_height == 1
        assert chain.tree.root == open_chain(tmp_path / "genesis").tree.root
    finally:
        chain.close()
    network = FakeNetwork({"honest": source.served()})
    _, synced = _sync(network, source)
    chain = _install(tmp_path, synced)
    try:
        assert chain.height == source.height
    finally:
        chain.close()


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.001)


def test_a_trusted_hash_that_no_peer_has_bans_nobody(source: Source) -> None:
    """An operator's typo in --trust-hash: every peer serves another block at that height,
    so the fault may be ours; nothing is synced and no honest peer is banned for it."""
    network = FakeNetwork({"a": source.served(), "b": source.served()})
    sync = StateSync(network, source.chain.params, TrustedHeader(source.height, bytes(32)),
                     timeout=0.2)  # fmt: skip
    assert asyncio.run(sync.attempt()) is None
    assert network.punished == []


def test_chunks_checked_on_other_processes_catch_the_same_lies(source: Source) -> None:
    """As the node runs it: chunks checked on spawned processes; a corrupt chunk's refusal
    crosses back and bans its peer, and the state is the same."""
    liar = source.served(chunks=_corrupt(source.chunks))
    network = FakeNetwork({"liar": liar, "honest": source.served()})
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as checker:
        sync = StateSync(network, source.chain.params, source.trust, timeout=5.0,
                         rng=random.Random(SEED), checker=checker)  # fmt: skip
        synced = asyncio.run(asyncio.wait_for(sync.run(), 60))
    assert _banned(network) == {"liar": SnapshotFault.BAD_CHUNK.value}
    assert _root(synced) == source.manifest.state_root


def test_a_forged_commit_of_the_trusted_block_is_refused(source: Source) -> None:
    """The trusted block with a commit signed by too little power: the commit is checked
    against the set the verified state says signed the block; its peer is banned and the
    honest peer's commit is the one kept."""
    block_bytes, commit_bytes = source.blocks[source.height]
    commit = Commit.from_fields(unpack(commit_bytes))
    forged = replace(commit, signatures=commit.signatures[:1])
    liar = source.served()
    liar.blocks[source.height] = (block_bytes, pack(forged.to_fields()))
    network = FakeNetwork({"liar": liar, "honest": source.served()})
    _, synced = _sync(network, source)
    assert _banned(network) == {"liar": SnapshotFault.BAD_COMMIT.value}
    assert synced.commit == commit


# -- review23s: attacks found by the issue 23 state-sync review ---------------------------


def test_a_trusted_header_with_a_swapped_body_is_refused(source: Source, tmp_path: Path) -> None:
    """Attack: the liar serves block H with the trusted header (so the trusted hash) but
    other txs. The header alone is hashed, so the body must be checked against tx_root;
    else the synced node stores, and serves to block-syncing peers, a forged block H."""
    block_bytes, commit_bytes = source.blocks[source.height]
    honest = Block.decode(block_bytes, 1 << 30, 1 << 20)
    swapped = replace(honest, txs=honest.txs[:-1], raw=b"")
    assert swapped.hash() == source.trust.block_hash and swapped.body_mismatch() is not None
    liar = source.served()
    liar.blocks[source.height] = (swapped.encode(), commit_bytes)
    network = FakeNetwork({"liar": liar, "honest": source.served()})
    _, synced = _sync(network, source)
    assert synced.block.body_mismatch() is None
    chain = _install(tmp_path, synced)
    try:
        stored = chain.get_block(source.height)
        assert stored is not None and stored.txs == honest.txs
    finally:
        chain.close()
    assert _banned(network) == {"liar": SnapshotFault.WRONG_BLOCK.value}


def test_a_loaded_honest_peer_that_is_late_with_one_chunk_is_not_banned(source: Source) -> None:
    """Attack (on an honest server): keep the only snapshot server loaded so that one
    chunk misses the request timeout. Each attempt costs it 25 points, throws away every
    chunk it already served, and starts over: four late answers in a row (a few
    seconds, while points decay by one a minute) ban the honest server, which then takes
    its snapshot out of reach of this node."""
    loaded = source.served()
    loaded.hang_on = {source.manifest.chunks}  # the last chunk comes too late
    network = FakeNetwork({"loaded": loaded})
    sync = _run(network, source.trust, source.chain)
    for _ in range(4):
        assert asyncio.run(sync.attempt()) is None
    asked = sum(1 for _, index in network.asked if index > 0)
    points = sum(points for _, points, _ in network.punished)
    assert points < 100, f"{points} points for 4 late chunks; {asked} chunks asked"


def test_a_chunk_check_that_crashes_ends_the_sync_instead_of_hanging(source: Source) -> None:
    """Robustness (no peer needed): the chunk checker's process pool breaks (a checker
    process killed, e.g. by the OOM killer while checking big chunks). The chunk being
    checked is neither counted nor put back, every worker task dies with the error, and
    `_chunks` waits forever on an event nothing will set: the node hangs in state sync,
    silently. It must fail (or retry) instead."""
    broken = ThreadPoolExecutor(1)
    broken.shutdown()  # every check now raises RuntimeError, as a BrokenProcessPool would
    network = FakeNetwork({"honest": source.served()})
    sync = StateSync(network, source.chain.params, source.trust, timeout=0.2,
                     rng=random.Random(SEED), checker=broken)  # fmt: skip

    async def bounded() -> str:
        try:
            await asyncio.wait_for(sync.run(), 5)
        except TimeoutError:
            return "hung"
        except Exception as exc:  # a loud failure is what is wanted
            return type(exc).__name__
        return "synced"

    assert asyncio.run(bounded()) != "hung"


class _ListingClock(FakeNetwork):
    """A FakeNetwork that runs each GET_SNAPSHOTS through an honest peer's rate bucket."""

    def __init__(self, peers: dict[str, Served]) -> None:
        super().__init__(peers)
        self.buckets: dict[str, TokenBucket] = {}
        self.over_rate = 0  # frames an honest peer would drop, at 2 points each

    async def request_snapshots(self, peer_id: str, timeout: float = 1.0) -> list[SnapshotOffer]:
        now = asyncio.get_running_loop().time()
        bucket = self.buckets.setdefault(
            peer_id, TokenBucket(default_rates()[Kind.GET_SNAPSHOTS], now)
        )
        if not bucket.take(now):
            self.over_rate += 1
        return await super().request_snapshots(peer_id, timeout)


def test_a_joining_node_waiting_for_a_snapshot_stays_under_its_peers_rate_limits(
    source: Source,
) -> None:
    """Attack (or just timing): no peer offers a snapshot at the trusted height yet (the
    operator trusted a recent block; snapshots come every interval), or Sybils make each
    attempt fail fast. `run` then retries every 0.5 s, each time asking every peer for
    its snapshot list: twice the 1/s that peers allow. Each frame over it costs the
    joining node 2 points with every honest peer; within about a minute they all ban it."""
    waiting = source.served()
    waiting.offers = [SnapshotOffer(source.height - 2, source.earlier.hash(), 2)]
    network = _ListingClock({"honest": waiting})
    sync = _run(network, source.trust, source.chain)

    async def wait_a_while() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sync.run(), 8)

    asyncio.run(wait_a_while())
    assert network.over_rate == 0, f"{network.over_rate} GET_SNAPSHOTS over the peer's rate"


def _one_prefix_per_chunk(source: Source) -> tuple[Manifest, list[bytes]]:
    """The honest state re-chunked one cut prefix per chunk: a valid manifest (its cut is
    the honest one) that any node holding the state can build, with the most chunks."""
    depth = source.manifest.depth
    by_prefix: list[list[tuple[bytes, bytes]]] = [[] for _ in range(16**depth)]
    for data in source.chunks:
        for key, value in decode_chunk(data):
            by_prefix[path_prefix(key, depth)].append((key, value))
    fine = replace(source.manifest, chunk_starts=tuple(range(16**depth)))
    return fine, [encode_chunk(pairs) for pairs in by_prefix]


def test_sybils_that_offer_a_snapshot_and_withhold_its_last_chunk_are_punished(
    source: Source,
) -> None:
    """Attack: Sybil peers (more of them than honest ones, so their manifest is tried
    first) offer the real state cut one prefix per chunk, serve every chunk but the last
    and answer that one empty ("pruned"). No fault is ever recorded, so every attempt
    fetches all but one chunk from them again before the honest manifest is tried; slowed
    to just under the request timeout this stalls a sync for hours, unpunished."""
    fine, fine_chunks = _one_prefix_per_chunk(source)
    withheld = [*fine_chunks[:-1], b""]
    network = FakeNetwork(
        {
            "sybil-1": source.served(manifest=fine, chunks=withheld),
            "sybil-2": source.served(manifest=fine, chunks=withheld),
            "honest": source.served(),
        }
    )
    sync, synced = _sync(network, source)
    assert _root(synced) == source.manifest.state_root
    wasted = sum(1 for peer, index in network.asked if peer.startswith("sybil") and index > 0)
    assert wasted >= fine.chunks // 2  # most of the manifest, from the Sybils
    punished = {peer for peer, _, _ in network.punished}
    assert {"sybil-1", "sybil-2"} <= punished, (wasted, network.punished)
    # A second pass must not hand them the same work again.
    network.asked.clear()
    asyncio.run(sync.attempt())
    assert not any(peer.startswith("sybil") and index > 0 for peer, index in network.asked)


def _regrouped(source: Source, starts: tuple[int, ...]) -> tuple[Manifest, list[bytes]]:
    """The honest cut with other chunk boundaries (`starts`): another valid manifest."""
    depth = source.manifest.depth
    other = replace(source.manifest, chunk_starts=starts)
    by_chunk: list[list[tuple[bytes, bytes]]] = [[] for _ in starts]
    for data in source.chunks:
        for key, value in decode_chunk(data):
            prefix = path_prefix(key, depth)
            by_chunk[max(i for i, s in enumerate(starts) if s <= prefix)].append((key, value))
    return other, [encode_chunk(sorted(pairs, key=lambda p: sha256(p[0]))) for pairs in by_chunk]


def test_prefixes_verified_from_one_manifest_are_kept_when_another_of_the_same_cut_ends_it(
    source: Source, tmp_path: Path
) -> None:
    """Attack (wasted work): a peer serves a manifest of the honest cut, 4 prefixes per
    chunk, but withholds one chunk. The sync goes on with an honest manifest of other
    boundaries (one prefix a chunk; tried second, as it has more chunks): it asks it
    only for the chunks of the 4 missing prefixes, so no key is counted twice and the
    node continues from the synced state."""
    depth = source.manifest.depth
    coarse, coarse_chunks = _regrouped(source, tuple(range(0, 16**depth, 4)))
    withheld = (16**depth - 3) // 4
    coarse_chunks[withheld] = b""
    fine, fine_chunks = _one_prefix_per_chunk(source)
    network = FakeNetwork(
        {
            "withholder": source.served(manifest=coarse, chunks=coarse_chunks),
            "fine": source.served(manifest=fine, chunks=fine_chunks),
        }
    )
    sync, synced = _sync(network, source)
    first_chunk = next((peer, index) for peer, index in network.asked if index)
    assert first_chunk[0] == "withholder", "the manifest with fewer chunks came second"
    fine_asked = sorted(index for peer, index in network.asked if peer == "fine" and index)
    assert fine_asked == [4 * withheld + k + 1 for k in range(4)], fine_asked
    assert [f for _, f, _ in sync.faults] == [SnapshotFault.WITHHELD]
    assert _root(synced) == source.manifest.state_root
    chain = _install(tmp_path, synced)
    try:
        assert chain.tree.root == source.chain.get_block(source.height).header.state_root
        raw, _ = source.blocks[6]
        commit = source.chain.get_commit(6)
        assert commit is not None
        chain.import_block(Block.decode(raw, 1 << 30, 1 << 20), commit)
        assert chain.tree.root == source.chain.tree.root
        assert len(chain.tree) == len(source.chain.tree)
    finally:
        chain.close()


def test_a_snapshot_with_split_nodes_syncs_and_a_lie_in_a_split_slot_is_caught(
    source: Source, tmp_path: Path
) -> None:
    """A manifest whose cut has split nodes (what keys ground into one prefix make, here
    two levels deep): each slot of a split node is a chunk checked on its own; a liar's
    altered chunk of such a slot bans it, the honest peer's completes the state, and the
    node continues from it with the very tree (size included) of the source."""
    state = {key: value for data in source.chunks for key, value in decode_chunk(data)}
    depth = source.manifest.depth
    entries, splits, by_slot = split_cut(state, depth, [(depth, 0), (depth, 5), (depth + 1, 82)])
    assert len(splits) == 3, splits
    manifest = Manifest(source.height, source.manifest.state_root, depth, tuple(entries),
                        tuple(range(len(by_slot))), tuple(splits))  # fmt: skip
    assert Manifest.decode(manifest.encode()) == manifest
    chunks = [encode_chunk(sorted(pairs, key=lambda p: sha256(p[0]))) for pairs in by_slot]
    lies = [_corrupt([data])[0] if decode_chunk(data) else data for data in chunks]
    network = FakeNetwork(
        {
            "liar": source.served(manifest=manifest, chunks=lies),
            "honest": source.served(manifest=manifest, chunks=chunks),
        }
    )
    _, synced = _sync(network, source)
    assert _banned(network) == {"liar": SnapshotFault.BAD_CHUNK.value}
    assert _root(synced) == source.manifest.state_root
    chain = _install(tmp_path, synced)
    try:
        assert len(chain.tree) == len(state)
        raw, _ = source.blocks[6]
        commit = source.chain.get_commit(6)
        assert commit is not None
        chain.import_block(Block.decode(raw, 1 << 30, 1 << 20), commit)
        assert chain.tree.root == source.chain.tree.root
        assert len(chain.tree) == len(source.chain.tree)
    finally:
        chain.close()


def test_the_p2p_part_bound_admits_every_chunk_a_manifest_may_have() -> None:
    """A snapshot may have as many chunks as a manifest allows (split nodes included):
    p2p must let a peer offer, and us ask for, each of them."""
    assert MAX_SNAPSHOT_PARTS == MAX_CHUNKS + 1


def test_an_interrupted_state_sync_resumes_with_the_chunks_it_verified(
    source: Source, tmp_path: Path
) -> None:
    """A node stopped in the middle of a state sync (its peer stalls on the last chunk)
    keeps on disk the chunks it verified, apart from its chain data (still genesis).
    Started again, it checks them again from disk and asks its peers only for the chunks
    still missing; writing the synced state removes what it kept."""
    home = tmp_path / "fresh"
    chain = open_chain(home)
    stalling = source.served()
    last = source.manifest.chunks  # the part index of the last chunk
    stalling.hang_on = {last}
    network = FakeNetwork({"stalling": stalling})
    sync = StateSync(network, chain.params, source.trust, timeout=0.2,
                     rng=random.Random(SEED), saved=chain.db)  # fmt: skip

    async def interrupted() -> None:
        task = asyncio.ensure_future(sync.run())
        await _until(lambda: ("stalling", last) in network.asked)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    verified = {i for peer, i in network.asked if i and i != last}
    assert len(verified) == source.manifest.chunks - 1
    chain.close()
    chain = open_chain(home)
    try:
        assert chain.height == 0 and chain.base_height == 1  # nothing of the state yet
        honest = FakeNetwork({"honest": source.served()})
        resumed = StateSync(honest, chain.params, source.trust, timeout=0.2,
                            rng=random.Random(SEED), saved=chain.db)  # fmt: skip
        synced = asyncio.run(asyncio.wait_for(resumed.run(), 30))
        assert sorted(i for _, i in honest.asked if i) == [last], honest.asked
        assert _root(synced) == source.manifest.state_root
        write_synced_state(chain.db, synced)
        assert chain.db.saved_sync_progress(source.height) == []
    finally:
        chain.close()


# Attacks found by review23b (each failed on the code as it was).

SYBIL_FIRST_SEED = 1  # random.Random(1) shuffles [honest, sybil] to [sybil, honest]
# The honest snapshot alone syncs in about a second (a few dozen chunks, 8 asks a second
# per peer): a sync may take many times that with one Sybil around, not hours.
SYNC_DEADLINE_S = 30.0


def _deepest_cut(src: Source) -> tuple[Manifest, list[bytes]]:
    """The honest state, cut at the deepest depth a manifest may have (16**4 prefixes)
    and chunked one prefix per chunk: a valid manifest (its cut folds to the trusted
    root, each chunk matches its prefix) that any node holding the state can build
    from it, with 65,536 chunks where the honest manifest has a few dozen."""
    depth = MAX_CUT_DEPTH
    by_prefix: list[list[tuple[bytes, bytes]]] = [[] for _ in range(16**depth)]
    for data in src.chunks:
        for key, value in decode_chunk(data):
            by_prefix[path_prefix(key, depth)].append((key, value))
    entries = tuple(cut_entry(pairs, depth) for pairs in by_prefix)
    manifest = Manifest(
        src.height,
        src.manifest.state_root,
        depth,
        entries,
        tuple(range(16**depth)),
    )
    assert Manifest.decode(manifest.encode()) == manifest  # a manifest any peer may send
    return manifest, [encode_chunk(pairs) for pairs in by_prefix]


def test_one_sybil_offering_the_true_state_in_65536_chunks_does_not_stall_state_sync(
    source: Source,
) -> None:
    """Attack (stall with one identity, no lie): a Sybil offers a snapshot of the true
    state at the trusted height, cut at depth 4, one prefix per chunk (65,536 chunks; the
    honest manifest has a few dozen). Every chunk it serves verifies, so it is never
    punished. Honest peers share one manifest hash, so in the random order of manifests
    this one is tried first half of the time, and the sync works through it alone
    before it looks at another: at the 8 asks a second a peer allows that is 2.3 hours
    (a week if the Sybil answers each chunk just under the 20 s timeout).

    What should happen: the sync completes from the honest peer within a deadline a
    small multiple of what the honest snapshot alone takes, whatever manifest it picks
    first (e.g. a manifest is bounded by what the state needs, or manifests are raced,
    or a slow manifest is abandoned for another)."""
    deep, deep_chunks = _deepest_cut(source)
    network = FakeNetwork(
        {"honest": source.served(), "sybil": source.served(manifest=deep, chunks=deep_chunks)}
    )
    sync = StateSync(
        network,
        source.chain.params,
        source.trust,
        timeout=0.2,
        rng=random.Random(SYBIL_FIRST_SEED),
    )
    started = time.monotonic()
    try:
        synced = asyncio.run(asyncio.wait_for(sync.run(), SYNC_DEADLINE_S))
    except TimeoutError:
        synced = None
    elapsed = time.monotonic() - started
    assert network.asked[0] == ("sybil", 0), f"seed {SYBIL_FIRST_SEED}: honest came first"
    from_sybil = sum(1 for peer, index in network.asked if peer == "sybil" and index)
    assert synced is not None, (
        f"state sync did not complete in {elapsed:.0f} s: it fetched {from_sybil} of the"
        f" Sybil's {deep.chunks} chunks (faults: {sync.faults}), while the honest"
        f" manifest has {source.manifest.chunks}"
    )
    assert _root(synced) == source.manifest.state_root


def _cut_in_chunks(
    src: Source, depth: int, split_nodes: list[tuple[int, int]], chunks: int
) -> tuple[Manifest, list[bytes]]:
    """The honest state cut at `depth` with `split_nodes` split, its slots grouped into
    about `chunks` chunks: a valid manifest of another cut than the honest one."""
    state = {key: value for data in src.chunks for key, value in decode_chunk(data)}
    entries, splits, by_slot = split_cut(state, depth, split_nodes)
    per_chunk = -(-len(by_slot) // chunks)
    starts = tuple(range(0, len(by_slot), per_chunk))
    manifest = Manifest(
        src.height, src.manifest.state_root, depth, tuple(entries), starts, tuple(splits)
    )
    assert Manifest.decode(manifest.encode()) == manifest
    grouped = [
        [pair for slot in by_slot[start : start + per_chunk] for pair in slot] for start in starts
    ]
    return manifest, [encode_chunk(sorted(pairs, key=lambda p: sha256(p[0]))) for pairs in grouped]


def test_sybils_each_offering_another_cut_of_the_state_do_not_multiply_what_a_sync_keeps(
    source: Source,
    tmp_path: Path,
) -> None:
    """Attack (memory and disk amplification): five Sybils each offer the true state
    under another valid cut (depth 2, depth 3, or the honest depth with other nodes
    split: a manifest decides both, and any node holding the state can make them), serve
    every chunk but the last, and withhold that one. Each is punished (WITHHELD) and
    dropped, but progress is shared only between manifests of one cut: each Sybil's
    chunks start a new copy of the whole state, kept in memory for the rest of the sync
    and written to disk (store prefix Y) for resuming, and loaded back all at once on
    restart. N identities: N copies of the state (for a 1,000,000-key state, gigabytes).

    What should happen: what a sync keeps (on disk and in memory) stays within a small
    multiple of the state (here at most twice its bytes), however many cuts are offered."""
    depth = source.manifest.depth
    state_bytes = sum(len(data) for data in source.chunks)
    variants = [
        _cut_in_chunks(source, depth + 1, [], 8),
        _cut_in_chunks(source, depth + 2, [], 8),
        _cut_in_chunks(source, depth, [(depth, 0)], 8),
        _cut_in_chunks(source, depth, [(depth, 1)], 8),
        _cut_in_chunks(source, depth, [(depth, 2)], 8),
    ]
    assert len({manifest.hash() for manifest, _ in variants}) == len(variants)
    network = FakeNetwork(
        {
            f"sybil-{n}": source.served(manifest=manifest, chunks=[*chunks[:-1], b""])
            for n, (manifest, chunks) in enumerate(variants)
        }
    )
    chain = open_chain(tmp_path / "fresh")
    try:
        sync = StateSync(
            network,
            chain.params,
            source.trust,
            timeout=0.2,
            rng=random.Random(SYBIL_FIRST_SEED),
            saved=chain.db,
        )
        assert asyncio.run(asyncio.wait_for(sync.attempt(), SYNC_DEADLINE_S)) is None
        withheld = {peer for peer, fault, _ in sync.faults if fault is SnapshotFault.WITHHELD}
        assert withheld == set(network.served), sync.faults
        kept_on_disk = sum(  # the chunks only (manifests of deep cuts add more)
            len(chunk)
            for _, chunks in chain.db.saved_sync_progress(source.height)
            for _, chunk in chunks
        )
        kept_in_memory = sum(
            len(key) + len(value)
            for progress in sync._progress.values()  # what the sync holds between attempts
            for pairs in progress.pairs
            for key, value in pairs
        )
        print(f"kept: {kept_on_disk} bytes on disk, {kept_in_memory} in memory")
        assert kept_on_disk <= 2 * state_bytes, (
            f"{kept_on_disk} bytes kept on disk for a state of {state_bytes} bytes"
            f" after {len(variants)} Sybils"
        )
        assert kept_in_memory <= 2 * state_bytes, (
            f"{kept_in_memory} bytes of pairs held in memory for a state of {state_bytes}"
            f" bytes after {len(variants)} Sybils"
        )
    finally:
        chain.close()


SYBILS_EARLY_SEED = 2  # shuffles 16 of the Sybils' 24 offers ahead of the honest one


def test_a_peer_that_offers_snapshots_and_never_serves_their_manifests_is_dropped(
    source: Source,
) -> None:
    """Attack (free stalls): each Sybil offers 8 snapshots at the trusted height (the
    most a SNAPSHOTS answer may list) under made-up manifest hashes, then lets every
    manifest request time out (20 s on a real node), or answers it empty ("pruned").
    A manifest that fails so is not a fault at all: the peer is neither punished nor
    dropped, so each of its offers is tried in turn, every attempt: 10 Sybils are 80
    offers, about 40 timeouts (13 minutes) before the honest snapshot comes up, again at
    each attempt that does not complete.

    What should happen: as for a chunk (WITHHELD), a peer that offered a snapshot and
    does not serve its manifest is asked nothing more by this sync: at most one manifest
    request per Sybil."""
    rng = random.Random(SYBILS_EARLY_SEED)
    sybils: dict[str, Served] = {}
    for n in range(3):
        offers = [SnapshotOffer(source.height, rng.randbytes(32), 20) for _ in range(8)]
        sybils[f"sybil-{n}"] = Served(offers, {}, dict(source.blocks), hang_on={0})
    network = FakeNetwork({**sybils, "honest": source.served()})
    sync = StateSync(
        network,
        source.chain.params,
        source.trust,
        timeout=0.2,
        rng=random.Random(SYBILS_EARLY_SEED),
    )
    synced = asyncio.run(asyncio.wait_for(sync.run(), SYNC_DEADLINE_S))
    assert _root(synced) == source.manifest.state_root
    manifest_asks = {
        peer: sum(1 for p, index in network.asked if p == peer and index == 0) for peer in sybils
    }
    assert all(asks <= 1 for asks in manifest_asks.values()), (
        f"manifest requests that timed out, per Sybil: {manifest_asks} (seed"
        f" {SYBILS_EARLY_SEED}); faults recorded: {sync.faults}"
    )


class _SlowHolder(FakeNetwork):
    """A network where peer "slow" answers each chunk `delay` seconds late, just under
    the sync's request timeout (valid data, so never a fault)."""

    def __init__(self, peers: dict[str, Served], delay: float) -> None:
        super().__init__(peers)
        self.delay = delay
        self.slow_asks = 0  # chunks asked of "slow", answered or not (`asked` has the answered)

    async def request_snapshot_part(
        self, peer_id: str, height: int, index: int, timeout: float = 1.0
    ) -> bytes:
        if peer_id == "slow" and index > 0:
            self.slow_asks += 1
            await asyncio.sleep(self.delay)
        return await super().request_snapshot_part(peer_id, height, index, timeout)


SLOW_TIMEOUT_S = 4.0


def test_a_holder_answering_just_under_the_timeout_does_not_hold_back_the_sync(
    source: Source,
) -> None:
    """Attack (slow loris, unpunished): a Sybil offers the honest snapshot (the same
    manifest hash as the honest peers) and answers each chunk it is dealt, correctly,
    just under the request timeout. Chunks are dealt round robin to the holders and an
    idle holder never takes a chunk still queued for another ("no stealing"), so the
    sync waits for the Sybil's whole share at two chunks per timeout: with 1,000 chunks
    and one honest peer, 500 chunks at 2 per 19 s, 80 minutes instead of two. Never
    late, the Sybil is never punished.

    What should happen: a chunk a slow holder has not started yet is taken by an idle
    one, so the sync takes about what the honest peer alone needs (here: well under
    half of what waiting for the Sybil's share takes)."""
    delay = SLOW_TIMEOUT_S * 0.95
    network = _SlowHolder({"honest": source.served(), "slow": source.served()}, delay)
    sync = StateSync(
        network,
        source.chain.params,
        source.trust,
        timeout=SLOW_TIMEOUT_S,
        rng=random.Random(SYBIL_FIRST_SEED),
    )
    started = time.monotonic()
    synced = asyncio.run(asyncio.wait_for(sync.run(), 120))
    elapsed = time.monotonic() - started
    assert _root(synced) == source.manifest.state_root
    from_slow = network.slow_asks
    # Its round-robin share (two holders), all of it waited for without stealing: the
    # chunks asked of it are no measure once idle holders take them (fix23b).
    share = source.manifest.chunks // 2
    waiting_for_the_share = (share / 2) * delay  # two workers per peer
    assert not sync.faults, sync.faults  # the slow holder did nothing punishable
    assert elapsed < waiting_for_the_share / 2, (
        f"{elapsed:.1f} s for {source.manifest.chunks} chunks: {from_slow} were left to"
        f" the holder answering in {delay:.1f} s each"
    )
