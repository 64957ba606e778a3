"""The WAN between the testnet's regions, in user space: delay, jitter and loss on a TUN.

This kernel (and CI's) is built without netem (`tc qdisc add … netem`: "Specified qdisc
kind is unknown"), so the wide-area part of the testnet is this process. It runs in the
testnet's "wan" namespace, where policy routing sends every packet that crosses from one
region's bridge to another region's addresses into the TUN device it reads. Each packet is
held for its region pair's one-way delay plus a seeded jitter, dropped with the loss
probability, and written back into the TUN: it re-enters the kernel with `iif` the TUN,
which no rule sends back here, so the main table forwards it to the destination region's
bridge (no loop).

The packet path is kept cheap: packets are read in batches as long as the TUN has any,
one heap holds every packet in flight ordered by release time, and one loop timer is armed
for the earliest; when it fires, every packet due within RELEASE_SLACK_S leaves with it.
Jitter never reorders a flow: a packet is never released before the one that preceded it
between the same two addresses (real paths rarely reorder, and TCP reads reordering as
loss).

    python -m tests.wan.delay --tun fxwtun --pairs '{"1-2": 90, …}' --jitter-ms 5
        --loss-pct 0.5 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import heapq
import json
import os
import random
import signal
import struct
import sys
import time
from typing import Final

TUNSETIFF: Final = 0x400454CA
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
MAX_PACKET: Final = 65_535
BATCH: Final = 256  # packets read per wake-up at most, so writes are not starved
# Packets due within this much of a wake-up leave with it: one timer for a burst instead
# of one per packet (a millisecond is within the ±5 ms jitter, and keeps a flow's order).
RELEASE_SLACK_S: Final = 0.001
# Lateness is counted per whole millisecond up to a second (a second late or more: one
# bucket); fixed memory whatever the run's length.
LATE_BUCKETS_MS: Final = 1000
# Low among real-time priorities (1..99): above every normal process (the nodes), below
# the kernel's real-time threads (migration, watchdogs: 99).
REALTIME_PRIORITY: Final = 2


class Wan:
    """Packets in flight between regions, released by one timer.

    The per-packet path is a few list and heap operations (issue 22, wan22k): the delay of
    each pair of second octets (which hold the region) is a precomputed table, the jitter
    and the loss one `random()` each, the flow key one slice of the header.
    """

    def __init__(
        self,
        fd: int,
        one_way_ms: dict[tuple[int, int], float],
        jitter_ms: float,
        loss: float,
        rng: random.Random,
        region_bits: int,
    ) -> None:
        self.fd = fd
        self.jitter_s = jitter_ms / 1000
        self.loss = loss
        self.rng = rng
        # One-way delay in seconds by (source second octet << 8 | destination second
        # octet); 0 inside a region or between unknown ones.
        shift = 8 - region_bits
        self.delay_s = [
            one_way_ms.get((a >> shift, b >> shift), 0.0) / 1000
            for a in range(256)
            for b in range(256)
        ]
        self.heap: list[tuple[float, int, bytes]] = []
        self.seq = 0
        self.last_release: dict[bytes, float] = {}  # src+dst -> release of its last packet
        self.timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self.forwarded = self.dropped = self.wakeups = 0
        self.slack_s = RELEASE_SLACK_S
        # How late each wake-up released its first due packet, by whole milliseconds
        # (the last bucket: LATE_BUCKETS_MS or more): delay the emulated WAN adds on top
        # of the configured one when this process waits for a CPU.
        self.late_ms = [0] * (LATE_BUCKETS_MS + 1)

    def on_readable(self) -> None:
        now = self.loop.time()
        read, fd, hold = os.read, self.fd, self.hold
        for _ in range(BATCH):
            try:
                packet = read(fd, MAX_PACKET)
            except BlockingIOError:
                break
            hold(packet, now)
        self.arm()

    def hold(self, packet: bytes, now: float) -> None:
        if len(packet) < 20 or packet[0] >> 4 != 4:  # only IPv4 is routed here
            return
        random_ = self.rng.random
        if random_() < self.loss:
            self.dropped += 1
            return
        delay_s = self.delay_s[packet[13] << 8 | packet[17]]
        if delay_s:
            # A uniform jitter in [-jitter, +jitter), never below no delay at all.
            delay_s = max(delay_s + (2 * random_() - 1) * self.jitter_s, 0.0)
        flow = packet[12:20]  # source and destination addresses
        last_release = self.last_release
        release = now + delay_s
        last = last_release.get(flow)
        if last is not None and last > release:
            release = last
        last_release[flow] = release
        self.seq += 1
        heapq.heappush(self.heap, (release, self.seq, packet))

    def arm(self) -> None:
        if self.timer is not None or not self.heap:
            return
        self.timer = self.loop.call_at(self.heap[0][0], self.release)

    def release(self) -> None:
        self.timer = None
        self.wakeups += 1
        now = self.loop.time()
        if self.heap:
            late = int((now - self.heap[0][0]) * 1000)
            self.late_ms[min(max(late, 0), LATE_BUCKETS_MS)] += 1
        due = now + self.slack_s
        heap, pop, write, fd = self.heap, heapq.heappop, os.write, self.fd
        forwarded = 0
        while heap and heap[0][0] <= due:
            packet = pop(heap)[2]
            try:
                write(fd, packet)
                forwarded += 1
            except OSError:  # the TUN is full or going away: a lost packet, as on a WAN
                self.dropped += 1
        self.forwarded += forwarded
        if len(self.last_release) > 100_000:  # old flows: nothing of theirs is in flight
            self.last_release = {f: t for f, t in self.last_release.items() if t > now}
        self.arm()


def take_priority() -> str:
    """Run ahead of the nodes for the CPU; the scheduling policy obtained, for the log.

    The emulated WAN must not compete with the nodes for the CPU (a real WAN does not):
    at equal priority, 19 busy node processes on 2 cores leave this process waiting for a
    CPU while packets pile up in the TUN's queue (10,000 deep), which turned 90-160 ms
    round trips into 2 s and overflowed the queue (issue 22, wan22m: docs/performance.md).
    A real-time policy runs it as soon as a packet arrives; it needs about half a core
    at 500 tx/s (the kernel's real-time throttling keeps 5 % for the rest in any case). Where
    real-time scheduling is not permitted (a container without CAP_SYS_NICE), the
    highest nice the process may take; else the default.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        return f"fifo:{REALTIME_PRIORITY}"
    except OSError:  # EPERM: no CAP_SYS_NICE (and no RLIMIT_RTPRIO)
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -20)
        return "nice:-20"
    except OSError:
        return "default"


def open_tun(name: str) -> int:
    """Attach to the (persistent) TUN device `name`; non-blocking file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


async def serve(args: argparse.Namespace) -> None:
    one_way: dict[tuple[int, int], float] = {}
    for key, rtt in json.loads(args.pairs).items():
        a, b = (int(r) for r in key.split("-"))
        one_way[(a, b)] = one_way[(b, a)] = float(rtt) / 2
    fd = open_tun(args.tun)
    priority = take_priority() if args.priority else "default"
    wan = Wan(
        fd,
        one_way,
        args.jitter_ms,
        args.loss_pct / 100,
        random.Random(args.seed),
        args.region_bits,
    )
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, wan.on_readable)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, report_lateness, wan)
    print(f"wan delay ready on {args.tun} (seed {args.seed}, priority {priority})", flush=True)
    await stop.wait()
    # Its own CPU time: on a shared machine, this process is one of the things saturated.
    cpu_s = time.process_time()
    print(
        f"wan delay: forwarded={wan.forwarded} dropped={wan.dropped} wakeups={wan.wakeups} "
        f"cpu_s={cpu_s:.1f} {lateness(wan.late_ms)}",
        flush=True,
    )


def report_lateness(wan: Wan) -> None:
    """SIGUSR1: print the lateness since the last report (`wan delay late:` line), reset."""
    print(f"wan delay late: wakeups={sum(wan.late_ms)} {lateness(wan.late_ms)}", flush=True)
    wan.late_ms = [0] * (LATE_BUCKETS_MS + 1)


def lateness(late_ms: list[int]) -> str:
    """`late_ms_p50=… p99=… max=…`: how late the wake-ups released their first due packet."""
    total = sum(late_ms)
    if not total:
        return "late_ms_p50=0 late_ms_p99=0 late_ms_max=0"

    def quantile(q: float) -> int:
        seen = 0
        for ms, count in enumerate(late_ms):
            seen += count
            if seen >= q * total:
                return ms
        return len(late_ms) - 1

    worst = max(ms for ms, count in enumerate(late_ms) if count)
    return f"late_ms_p50={quantile(0.5)} late_ms_p99={quantile(0.99)} late_ms_max={worst}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tun", required=True)
    parser.add_argument("--pairs", required=True, help='{"1-2": rtt_ms, …} per region pair')
    parser.add_argument("--jitter-ms", type=float, default=5.0)
    parser.add_argument("--loss-pct", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--region-bits", type=int, default=3)
    parser.add_argument(
        "--priority",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run ahead of the nodes for the CPU (real-time, else nice -20); "
        "--no-priority: as before issue 22's wan22m round, for comparison",
    )
    asyncio.run(serve(parser.parse_args()))
    sys.exit(0)


if __name__ == "__main__":
    main()
