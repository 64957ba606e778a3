"""Review of issue 23's state sync (fluxchain/node/statesync.py): attacks found by reading
the code, each a test of what should happen. They fail on main as built (review23b).

The fake network, the source chain and its honest snapshot are those of
tests/unit/test_statesync.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from fluxchain.core.crypto import sha256
from fluxchain.core.statetree import MAX_CUT_DEPTH, cut_entry, path_prefix
from fluxchain.node.statesync import SnapshotFault, StateSync
from fluxchain.store.snapshots import Manifest, decode_chunk, encode_chunk
from p2p.messages import SnapshotOffer
from tests.support.chain import open_chain
from tests.unit.test_statesync import (  # the module's fixture, shared
    FakeNetwork,
    Served,
    Source,
    _root,
    source,  # noqa: F401
)
from tests.unit.test_statetree_cut import split_cut

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
    source: Source,  # noqa: F811
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
    source: Source,  # noqa: F811
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
    source: Source,  # noqa: F811
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
    source: Source,  # noqa: F811
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
