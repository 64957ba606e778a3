"""CPU per tx of one node's tx-relay bookkeeping on the WAN mesh, without a network.

    python -m bench.relay_cost [--txs 20000] [--peers 18] [--repeats 5] [--calls]
                               [--frame-txs 16] [--heard 0.5] [--frame-s 0.08]

One node of the 19-node WAN testnet as the TxFetcher (p2p/tx_fetch.py) sees it at
200 tx/s: every 80 ms a TXS frame of 16 txs pushed by one of its peers (the origin) is
admitted and announced (`announce`), each other peer announces the same ids to it with
probability one half (`on_announcement`: it trickled them before we did), and every
100 ms the batching window closes (`_flush`: the fast peers' TX_IDS, each peer's trickle
when due). A fake clock drives the timers, links only count frames, and the pool holds
every tx: what is left is the per-peer, per-id Python work. Prints the median CPU per tx
of --repeats runs (`time.process_time`) and, with --calls, the Python calls per tx
(cProfile, deterministic): `relay cost: txs=… peers=… us_per_tx=… calls_per_tx=…`.
With --txs past 16,384 the peers' known sets (`known_txs_per_peer`) are full. The
devnet's shape (a full mesh of four, API batches pushed in big TXS frames, every other
peer announcing each id): `--peers 3 --frame-txs 300 --heard 1`. The WAN's pinned load
(every validator an origin each tick, 500 tx/s): `--frame-txs 3 --frame-s 0.006`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import time
from typing import Any, cast

from p2p.connection import Links
from p2p.limits import Limits, Rate, TokenBucket
from p2p.messages import Kind, TxIds
from p2p.peer import Peer
from p2p.tx_fetch import TxFetcher

FRAME_S = 0.08  # a TXS frame from some origin every 80 ms: ~12 a second, as measured
FRAME_TXS = 16  # 200 tx/s
WINDOW_S = 0.1  # Limits.tx_announce_wait


class HoldsEveryTx:
    """A tx pool holding every tx: announcements of them are never fetched."""

    def has_tx(self, tx_id: bytes) -> bool:
        return True

    def in_mempool(self, tx_id: bytes) -> bool:
        return True

    def tx_bodies(self, tx_ids: list[bytes]) -> list[bytes | None]:
        return [None for _ in tx_ids]


class _Links:
    """Counts what would leave."""

    def __init__(self) -> None:
        self.frames = 0

    budget_reserve = 0.0

    def send(self, peer: Peer, frame: bytes, *, droppable: bool) -> bool:
        self.frames += 1
        return True

    def send_budgeted(self, peer: Peer, kind: Kind, frame: bytes, now: float) -> bool:
        """As `Links.send_budgeted` on a link of unbounded budgets (it took `send`'s
        place for TX_IDS and GET_TXS after this bench was written)."""
        self.frames += 1
        return True


def _peer(index: int, limits: Limits) -> Peer:
    """A connected peer as the fetcher reads it: id, budgets, closing."""
    peer = Peer.__new__(Peer)
    wide = Rate(1e9, 1e9)
    peer.peer_id = f"{index:064x}"
    peer.closing = False
    peer.out_rates = {}
    peer.in_bytes = TokenBucket(wide, 0.0)
    peer.out_bytes = TokenBucket(wide, 0.0)
    peer.dropped_frames = 0
    return peer


async def _relay_once(
    txs: int,
    peers: int,
    seed: int,
    profile: cProfile.Profile | None,
    frame_txs: int = FRAME_TXS,
    heard_p: float = 0.5,
    frame_s: float = FRAME_S,
) -> float:
    loop = asyncio.get_running_loop()
    clock = [0.0]
    loop.time = lambda: clock[0]  # type: ignore[method-assign]
    limits = Limits()
    links = _Links()
    by_id = {p.peer_id: p for p in (_peer(i, limits) for i in range(peers))}
    fetcher = TxFetcher(
        by_id, cast(Links, links), limits, lambda *a: None, lambda *a: None, HoldsEveryTx()
    )
    rng = random.Random(seed)
    ordered = list(by_id.values())
    frames = [[rng.randbytes(32) for _ in range(frame_txs)] for _ in range(txs // frame_txs)]
    heard = [[p for p in ordered if rng.random() < heard_p] for _ in frames]
    next_window = WINDOW_S
    if profile is not None:
        profile.enable()
    started = time.process_time()
    for n, ids in enumerate(frames):
        origin = ordered[n % peers]
        fetcher.announce(ids, origin)
        announcement = TxIds(b"".join(ids))
        for peer in heard[n]:
            if peer is not origin:
                fetcher.on_announcement(peer, announcement)
        clock[0] += frame_s
        if clock[0] >= next_window:
            fetcher._flush()  # the batching window's timer, driven by hand
            next_window += WINDOW_S
    took = time.process_time() - started
    if profile is not None:
        profile.disable()
    fetcher.close()
    return took


def relay_cost(
    txs: int,
    peers: int,
    repeats: int,
    calls: bool,
    seed: int = 1,
    frame_txs: int = FRAME_TXS,
    heard: float = 0.5,
    frame_s: float = FRAME_S,
) -> str:
    """The `relay cost:` line: median CPU per tx, and Python calls per tx if `calls`."""
    times = [
        asyncio.run(_relay_once(txs, peers, seed, None, frame_txs, heard, frame_s))
        for _ in range(repeats)
    ]
    line = (
        f"relay cost: txs={txs} peers={peers} frame_txs={frame_txs} heard={heard} "
        f"frame_s={frame_s} "
        f"us_per_tx={1e6 * sorted(times)[repeats // 2] / txs:.2f}"
    )
    if calls:
        profile = cProfile.Profile()
        asyncio.run(_relay_once(txs, peers, seed, profile, frame_txs, heard, frame_s))
        stats: Any = pstats.Stats(profile)
        line += f" calls_per_tx={stats.total_calls / txs:.1f}"
    return f"{line} load_avg={os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=20_000)
    parser.add_argument("--peers", type=int, default=18)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", action="store_true", help="also count Python calls per tx")
    parser.add_argument("--frame-txs", type=int, default=FRAME_TXS, help="txs a TXS frame")
    parser.add_argument("--heard", type=float, default=0.5, help="share of peers announcing")
    parser.add_argument("--frame-s", type=float, default=FRAME_S, help="seconds between frames")
    args = parser.parse_args()
    line = relay_cost(
        args.txs,
        args.peers,
        args.repeats,
        args.calls,
        frame_txs=args.frame_txs,
        heard=args.heard,
        frame_s=args.frame_s,
    )
    print(line, flush=True)


if __name__ == "__main__":
    main()
