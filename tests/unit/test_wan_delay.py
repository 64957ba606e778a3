"""The WAN testnet's user-space delay line (tests/wan/delay.py), without a TUN or root."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random

from tests.support.wait import wait_until_async
from tests.wan.delay import LATE_BUCKETS_MS, RELEASE_SLACK_S, Wan, lateness

SEED = 11
ONE_WAY_MS = {(1, 3): 80.0, (3, 1): 80.0}  # EU-AS, half of 160 ms RTT
EU, EU2, AS = (10, 33, 0, 2), (10, 34, 0, 2), (10, 97, 0, 2)


def packet(src: tuple[int, ...], dst: tuple[int, ...], n: int) -> bytes:
    """A minimal IPv4 header (version 4, IHL 5) with a sequence number as payload."""
    return bytes([0x45, *bytes(11), *src, *dst]) + n.to_bytes(4, "big")


def make_wan(fd: int, jitter_ms: float, loss: float) -> Wan:
    return Wan(fd, ONE_WAY_MS, jitter_ms, loss, random.Random(SEED), region_bits=3)


def test_a_packet_is_held_for_its_region_pairs_delay_and_never_reordered() -> None:
    asyncio.run(_a_packet_is_held_for_its_region_pairs_delay_and_never_reordered())


async def _a_packet_is_held_for_its_region_pairs_delay_and_never_reordered() -> None:
    read_fd, write_fd = os.pipe()
    try:
        wan = make_wan(write_fd, jitter_ms=30.0, loss=0.0)
        now = asyncio.get_running_loop().time()
        for n in range(200):  # one EU→AS flow: jitter ±30 ms on 80 ms
            wan.hold(packet(EU, AS, n), now)
        wan.hold(packet(EU, EU2, 999), now)  # inside a region: no delay
        releases = {int.from_bytes(p[20:], "big"): t - now for t, _, p in wan.heap}
        assert releases[999] == 0.0
        flow = [releases[n] for n in range(200)]
        assert all(0.050 <= d <= 0.110 for d in flow), (min(flow), max(flow), f"seed {SEED}")
        assert flow == sorted(flow)  # jitter never lets a packet overtake its predecessor
        assert max(flow) - min(flow) > 0.010  # and there is jitter

        wan.arm()
        received = bytearray()

        def all_out() -> bool:
            with contextlib.suppress(BlockingIOError):  # nothing released yet
                received.extend(os.read(read_fd, 1 << 16))
            return len(received) >= 201 * 24

        os.set_blocking(read_fd, False)
        await wait_until_async(all_out, 5.0, "every held packet written back")
        order = [int.from_bytes(received[i + 20 : i + 24], "big") for i in range(0, 201 * 24, 24)]
        assert order[0] == 999 and order[1:] == list(range(200))
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_loss_drops_about_its_share_of_packets() -> None:
    asyncio.run(_loss_drops_about_its_share_of_packets())


async def _loss_drops_about_its_share_of_packets() -> None:
    read_fd, write_fd = os.pipe()
    try:
        wan = make_wan(write_fd, jitter_ms=0.0, loss=0.005)
        now = asyncio.get_running_loop().time()
        for n in range(20_000):
            wan.hold(packet(EU, AS, n), now)
        assert 60 <= wan.dropped <= 140, f"{wan.dropped} of 20,000 dropped at 0.5 % (seed {SEED})"
        assert len(wan.heap) == 20_000 - wan.dropped
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_packet_that_is_not_ipv4_is_not_forwarded() -> None:
    asyncio.run(_a_packet_that_is_not_ipv4_is_not_forwarded())


async def _a_packet_that_is_not_ipv4_is_not_forwarded() -> None:
    read_fd, write_fd = os.pipe()
    try:
        wan = make_wan(write_fd, jitter_ms=0.0, loss=0.0)
        now = asyncio.get_running_loop().time()
        wan.hold(b"\x60" + bytes(39), now)  # IPv6
        wan.hold(b"\x45" + bytes(5), now)  # truncated
        assert wan.heap == []
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_packets_due_within_the_slack_leave_in_one_wakeup() -> None:
    asyncio.run(_packets_due_within_the_slack_leave_in_one_wakeup())


async def _packets_due_within_the_slack_leave_in_one_wakeup() -> None:
    """A burst of packets due over less than RELEASE_SLACK_S costs one timer wake-up, not
    one per packet, and still leaves in flow order (issue 22, wan22i)."""
    read_fd, write_fd = os.pipe()
    try:
        wan = make_wan(write_fd, jitter_ms=0.0, loss=0.0)
        now = asyncio.get_running_loop().time()
        burst = 20
        step = RELEASE_SLACK_S / (2 * burst)  # the whole burst is due within half the slack
        for n in range(burst):
            wan.hold(packet(EU, AS, n), now + n * step)
        wan.arm()
        received = bytearray()

        def all_out() -> bool:
            with contextlib.suppress(BlockingIOError):
                received.extend(os.read(read_fd, 1 << 16))
            return len(received) >= burst * 24

        os.set_blocking(read_fd, False)
        await wait_until_async(all_out, 5.0, "the burst written back")
        assert wan.wakeups == 1
        order = [int.from_bytes(received[i + 20 : i + 24], "big") for i in range(0, burst * 24, 24)]
        assert order == list(range(burst))
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_lateness_reports_the_quantiles_of_the_late_wakeups() -> None:
    """The delay process's lateness line (bench.wan's `delay_late_ms_*`): whole ms."""
    late_ms = [0] * (LATE_BUCKETS_MS + 1)
    assert lateness(late_ms) == "late_ms_p50=0 late_ms_p99=0 late_ms_max=0"
    late_ms[0] = 98
    late_ms[7] = 1
    late_ms[LATE_BUCKETS_MS] = 1  # a second late or more
    assert lateness(late_ms) == f"late_ms_p50=0 late_ms_p99=7 late_ms_max={LATE_BUCKETS_MS}"


def test_a_release_counts_how_late_it_came() -> None:
    asyncio.run(_a_release_counts_how_late_it_came())


async def _a_release_counts_how_late_it_came() -> None:
    read_fd, write_fd = os.pipe()
    try:
        wan = make_wan(write_fd, jitter_ms=0.0, loss=0.0)
        now = asyncio.get_running_loop().time()
        wan.hold(packet(EU, AS, 1), now - 0.090)  # due 80 ms after; released 10 ms late
        wan.release()
        assert sum(wan.late_ms) == 1
        assert 10 <= wan.late_ms.index(1) <= 20
    finally:
        os.close(read_fd)
        os.close(write_fd)
