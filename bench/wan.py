"""The chain across a WAN: offered loads up to saturation on the namespaces testnet.

    python -m bench.wan [--validators 16] [--full-nodes 3] [--loads 50,100,200,300,400,500]
        [--seconds 20] [--senders 64] [--seed 1] [--idle SECONDS] [--profile DIR]
    python -m bench.wan --frame-cost TURNS [--frames-per-turn 10]
    python -m bench.wan --delay-cost PACKETS_PER_S [--seconds 3]

Needs root (`ip netns`). Starts the WAN testnet of tests/wan/testnet.py (validators and
full nodes in their own network namespaces, three regions at 90/130/160 ms RTT with
jitter and 0.5 % loss, each node given one seed), then runs bench/devnet.py's load
generator against it: funded senders, batches split to the API's limit, each sender
submitting through one validator's API (sender i through validator i % validators, as a
wallet uses its own node, so that load reaches every validator's API at once;
`--round-robin-ticks` is the load before wan15b, each tick's whole batch to the next
validator), refusals counted by reason, a tx final when validator 0 (EU) sees the block
that holds it committed. The client sits next to every
node (the host reaches the APIs without WAN delay), so submit→final is the chain's
latency across the WAN.

The txs are transfers of --tx-bytes each (1 KB by default, as in CometBFT's QA), padded
by the transfer's memo (which pays its fee by size); --tx-bytes 0 sends plain transfers
(149 bytes). One line per load, the last field set per the issue:

    wan: validators=… rtt_ms=… tx_bytes=… offered_tps=… confirmed_tps=… confirmed_pct=…
         p50_final_ms=… p99_final_ms=… block_ms=… refused=… held=… retried=… cpu_ms_per_tx_node=…
         sent_kb_per_tx_node=… cpu_ms_per_s_node=… delay_cpu_pct=… client_cpu_pct=…
         load_avg=…

`cpu_ms_per_tx_node` is the CPU time the chain's nodes (each with its verifier processes)
spent from the start of the load until its txs settled, divided by the txs submitted and
by the number of nodes: what one tx costs one node (admission, gossip, proposal, block,
and the consensus work around them), the figure that decides throughput when 19 nodes
share a machine. Every submitted tx is admitted and gossiped by every node, confirmed or
not, so it is divided by the txs submitted rather than by those confirmed.
`sent_kb_per_tx_node` is what the nodes sent over their links in the same time (every
frame: txs, proposals, votes, requests), per tx submitted and per node.
`cpu_ms_per_s_node` is the same CPU per node per second of the load (what a round costs
a node whatever the txs: an idle testnet's figure is its floor), and `delay_cpu_pct` the
WAN delay process's CPU share of one core in that time (tests/wan/delay.py: this kernel
has no netem, so every packet between regions passes through it). `client_cpu_pct` is
this process's share of one core in that time (the load generator and the follower, not
counted in the nodes' CPU), `refused` and `held` the txs not confirmed, by their last
answer (bench/devnet.py), `retried` the posts answered "not now" and sent again after their
Retry-After (bench/load_clients.py), `submit_s` how long the load took to post (the load's
seconds when the APIs keep up) and `late_s` how far behind its schedule the generator
started a tick's posts, at worst.
`--idle SECONDS` first measures the funded testnet with no load for that long: one line
`wan idle: seconds=… nodes=… cpu_ms_per_s_node=… sent_kb_per_s_node=… delay_cpu_pct=… load_avg=…`.
`load_avg` is the machine's one-minute load average at the end of the load (the machine
may be shared: figures are only comparable at similar load).
`frames_per_s_node=SENT/RECEIVED` are the p2p frames a node sent and received a second
(each node's `/metrics`, fluxchain_p2p_frames_total: a frame inside a BATCH counts as
its own kind), `messages_per_s_node=SENT/RECEIVED` the websocket messages that carried
them (a BATCH is one: each costs a seal, an open, a websocket frame and a TCP segment),
and `sent_kinds` the eight kinds a node sent most, per second (`-` for a build without
the counters). The idle line adds `heights` (decided during it), `frames_per_height_node`
(frames a node sent a height) and `vote_frames_per_vote` (VOTE frames a node received per
round-0 vote of another validator: 1.00 is each vote once). `sigs_per_tx_node` are the tx
signatures all nodes verified over the load (fluxchain_signatures_verified_total) per
confirmed tx a node: ~1.0 when each tx is verified once a node; `sigs_by_path` splits
them (admission, block; `taken`: copies of block-checked txs admitted unverified).

`--frame-cost TURNS` prints the CPU per frame through one loopback link (both ends in
one process: seal, websocket, open, decode, rate limits, dispatch), `--frames-per-turn`
frames queued per turn, sent alone and batched (`Limits.batch_frames`), alternating,
medians: `wan frames: …`. `--delay-cost PACKETS_PER_S` prints the delay process's CPU
per packet forwarding that rate for `--seconds` (a datagram socketpair in place of its
TUN): `wan delay cost: …`. Neither needs root.

`--profile DIR` samples validator v01 and full node f00 with py-spy during the idle time
and each load (DIR/idle, DIR/load<N>-<rate>: raw stacks per node) and prints their CPU
(`wan profile: node=… cpu_ms_per_s=… sys_ms_per_s=… cpu_us_per_tx=…`, the system part
mostly the kernel's network stack) and a table by activity (bench/profile.py).

`--proposal-cost TXS` prints, without a network, what one proposal of TXS such txs costs
a receiving node sent full and sent compact (bytes on each link, CPU to check it and
produce the block consensus gets), as `wan proposal: …`.

Loads are offered in order and the sweep stops after the first load of which less than
95 % was confirmed (with --every-load it offers them all, each after the backlog of the
last); it ends with `wan: saturation_tps=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.devnet import (
    FIRST_SENDER,
    SATURATED_PCT,
    Follower,
    fund,
    measure,
    offer,
    wait_ready,
)
from bench.frames import Frames
from bench.profile import cpu_split, report_profiles, start_sampling
from consensus.messages import Proposal
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.params import COIN
from fluxchain.core.tx import MAX_MEMO, Transfer, Tx
from fluxchain.node.compact import (
    assemble,
    decode_compact_proposal,
    encode_compact_proposal,
    gather,
)
from fluxchain.node.driver import decode_proposal, encode_proposal
from p2p.limits import Rate
from p2p.messages import MAX_BATCH_FRAMES, Kind
from tests.p2p.harness import cluster, fast_limits, limits_with_rates
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key, open_chain
from tests.support.wait import wait_until_async
from tests.wan.testnet import P2P_PORT, RTT_MS, TUN, WanTestnet
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def tx_size(chain_id: str, key: SigningKey, memo: bytes = b"") -> int:
    """Bytes of one bench transfer as submitted (what the load is made of)."""
    pay = Transfer(bytes(20), COIN // 100, memo)
    return len(Tx.create(key, chain_id, 1_000_000, 1_000, pay).raw)


def memo_for(chain_id: str, key: SigningKey, tx_bytes: int) -> bytes:
    """The memo that makes a bench transfer `tx_bytes` long (none if 0 or too short)."""
    # The memo's own msgpack prefix is 1 to 3 bytes: start at the plain size, then trim.
    room = tx_bytes - tx_size(chain_id, key)
    memo = b"m" * min(max(room, 0), MAX_MEMO)
    while memo and tx_size(chain_id, key, memo) > tx_bytes:
        memo = memo[:-1]
    return memo


def node_cpu_seconds(net: WanTestnet) -> float:
    """CPU seconds (user + system) used so far by every chain node's processes: each node
    runs in a session of its own (`WanTestnet.start`), so its verifier processes count."""
    sessions = {proc.pid for name, proc in net.procs.items() if not name.startswith("s")}
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) in sessions:  # field 6, the session id
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def delay_lateness(net: WanTestnet) -> str:
    """How late the delay process released packets since the last call (`late_ms_p50=…
    late_ms_p99=… late_ms_max=…`, tests/wan/delay.py's SIGUSR1 report): the queueing it
    adds beyond the configured delay when it waits for a CPU."""
    if net.delay is None:
        return ""
    log = net.root / "wan-delay.log"
    before = log.read_text().count("wan delay late:")
    net.delay.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith("wan delay late:")]
        if len(lines) > before:
            return "delay_" + lines[-1].split(" ", 4)[4].replace(" late_ms", " delay_late_ms")
        await asyncio.sleep(0.05)
    return ""


def tun_drops() -> int:
    """Packets the kernel dropped at the WAN's TUN so far: its queue (txqueuelen) was full
    because the delay process did not read it fast enough. Read from the calling
    thread's namespace (`WanTestnet.in_wan`: the wan namespace)."""
    for line in Path("/proc/thread-self/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == TUN:
            return int(counters.split()[11])  # transmit: bytes packets errs drop …
    return 0


def cross_region_rtts_ms(net: WanTestnet) -> list[float]:
    """The kernel's smoothed RTT of every established p2p connection between a region's
    first validator and another region (`ss -ti` in its namespace): the configured RTT
    plus whatever queues on the path (the TUN, the delay process, the shapers)."""
    rtts: list[float] = []
    for node in net.validators[:3]:
        out = subprocess.run(
            ["ip", "netns", "exec", node.ns, "ss", "-tinH", "state", "established"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        peer_region: int | None = None
        for line in out.splitlines():
            fields = line.split()
            # A socket's first line: Recv-Q Send-Q local:port peer:port; then its details.
            if len(fields) >= 4 and fields[0].isdigit():
                local, peer = fields[2], fields[3]
                p2p = local.endswith(f":{P2P_PORT}") or peer.endswith(f":{P2P_PORT}")
                peer_region = int(peer.split(".")[1]) // 32 if p2p else None
                continue
            match = re.search(r"\brtt:([\d.]+)/", line)
            if match and peer_region is not None and peer_region != node.region:
                rtts.append(float(match.group(1)))
            peer_region = None
    return rtts


class WanHealth:
    """What the emulated WAN did to the nodes' links during a load: TUN overflow drops,
    the cross-region RTT (sampled every second), the links closed as slow."""

    def __init__(self, net: WanTestnet) -> None:
        self.net = net
        self.rtts: list[float] = []
        self.drops_before = tun_drops()
        self.closes_before = self._slow_closes()

    def _slow_closes(self) -> int:
        return sum(
            (n.home / "node.log").read_text(errors="replace").count("reason=slow_peer")
            for n in self.net.nodes
            if (n.home / "node.log").exists()
        )

    async def sample(self) -> None:
        while True:
            self.rtts += await asyncio.to_thread(cross_region_rtts_ms, self.net)
            await asyncio.sleep(1.0)

    def line(self) -> str:
        rtts = sorted(self.rtts) or [0.0]
        p50 = rtts[len(rtts) // 2]
        p90 = rtts[min(len(rtts) - 1, len(rtts) * 9 // 10)]
        # A node logs each slow close twice (p2p's event and the node's), at warning only
        # under --log-level info or lower.
        closes = (self._slow_closes() - self.closes_before) // 2
        return (
            f"wan_rtt_ms_p50={p50:.0f} wan_rtt_ms_p90={p90:.0f} "
            f"tun_drops={tun_drops() - self.drops_before} slow_closes={closes}"
        )


def delay_cpu_seconds(net: WanTestnet) -> float:
    """CPU seconds (user + system) used so far by the WAN delay process (tests/wan/delay.py:
    `ip netns exec` replaces itself by it, so the Popen's pid is the delay process)."""
    if net.delay is None:
        return 0.0
    try:
        stat = Path(f"/proc/{net.delay.pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_sent_bytes(net: WanTestnet) -> int:
    """Bytes sent so far by every chain node: the transmit counters of the interfaces of
    each node's namespace (its veth; loopback left out)."""
    total = 0
    for node in net.nodes:
        dev = subprocess.run(
            ["ip", "netns", "exec", node.ns, "cat", "/proc/net/dev"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in dev.splitlines()[2:]:
            name, _, counters = line.partition(":")
            if name.strip() != "lo":
                total += int(counters.split()[8])  # transmit bytes
    return total


# `--profile`: the nodes sampled, one validator (not validator 0, which the bench follows)
# and one full node: what a tx costs a node that votes on it and one that only relays it.
PROFILED: tuple[str, ...] = ("v01", "f00")


class Spied:
    """py-spy on the PROFILED nodes for one load (DIR/LABEL/nodeN.txt, N in PROFILED's
    order), and their process CPU in the same time, to turn each activity's share of the
    samples into µs per tx."""

    def __init__(self, out: Path, pids: list[int], spies: list[subprocess.Popen[bytes]]) -> None:
        self.out, self.pids, self.spies = out, pids, spies
        self.cpu_start = [cpu_split(pid) for pid in pids]
        self.started = time.monotonic()

    @classmethod
    def start(cls, profile: Path | None, net: WanTestnet, label: str, seconds: int) -> Spied | None:
        if profile is None:
            return None
        pids = [net.procs[name].pid for name in PROFILED if name in net.procs]
        out = profile / label
        return cls(out, pids, start_sampling(pids, seconds, out))

    def report(self, txs: int) -> None:
        """Print each sampled node's CPU (ms a second, µs a tx) and the activity table."""
        for spy in self.spies:
            spy.wait()
        elapsed = time.monotonic() - self.started
        for name, pid, (user_start, sys_start) in zip(
            PROFILED, self.pids, self.cpu_start, strict=False
        ):
            user, system = cpu_split(pid)
            user, system = user - user_start, system - sys_start
            per_tx = f"{1e6 * (user + system) / txs:.0f}" if txs else "-"
            print(
                f"wan profile: node={name} cpu_ms_per_s={1000 * (user + system) / elapsed:.0f} "
                f"sys_ms_per_s={1000 * system / elapsed:.0f} cpu_us_per_tx={per_tx} "
                f"stacks={self.out}",
                flush=True,
            )
        report_profiles(self.out, len(self.pids))


def client_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process: the load generator's."""
    usage = os.times()
    return usage.user + usage.system


async def sweep(args: argparse.Namespace, net: WanTestnet) -> None:
    urls = [n.api for n in net.validators]
    chain_id = "flux-wan"
    senders = [
        derive_key(INSECURE_TEST_MNEMONIC, account_path(FIRST_SENDER + i))
        for i in range(args.senders)
    ]
    rtt = "/".join(str(v) for v in sorted(RTT_MS.values()))
    memo = memo_for(chain_id, senders[0], args.tx_bytes)
    size = tx_size(chain_id, senders[0], memo)
    print(f"tx size {size} bytes", flush=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await wait_ready(session, urls, 180)
        follower = Follower()
        following = asyncio.create_task(follower.run(session, urls[0]))
        try:
            await fund(session, urls, chain_id, follower, senders)
            if args.idle:
                await idle(args.idle, net, session, args.profile)
            saturation, saturated = 0, False
            for index, rate in enumerate(args.loads):
                cpu_before, sent_before = node_cpu_seconds(net), node_sent_bytes(net)
                frames_before = await Frames.read(session, [node.api for node in net.nodes])
                await delay_lateness(net)  # from the load's start
                delay_before, client_before, started = (
                    delay_cpu_seconds(net),
                    client_cpu_seconds(),
                    time.monotonic(),
                )
                health = WanHealth(net)
                sampling = asyncio.create_task(health.sample())
                spied = Spied.start(args.profile, net, f"load{index}-{rate}", args.seconds)
                try:
                    load = await offer(
                        session,
                        urls,
                        chain_id,
                        follower,
                        senders,
                        rate,
                        args.seconds,
                        memo,
                        posting="serial" if args.serial_clients else "concurrent",
                        pinned=not args.round_robin_ticks,
                    )
                finally:
                    sampling.cancel()
                m = measure(load, follower)
                cpu_s = node_cpu_seconds(net) - cpu_before
                elapsed = time.monotonic() - started
                delay_s, client_s = (
                    delay_cpu_seconds(net) - delay_before,
                    client_cpu_seconds() - client_before,
                )
                frames = (await Frames.read(session, [node.api for node in net.nodes])).since(
                    frames_before,
                    elapsed,
                    len(net.nodes),
                    txs=len(load.submitted),
                    confirmed=sum(1 for t in load.submitted if t in follower.final),
                )
                late = await delay_lateness(net)
                per_node_tx = max(1, len(load.submitted)) * len(net.nodes)
                if spied is not None:
                    spied.report(len(load.submitted))
                cpu_ms_per_tx_node = 1000 * cpu_s / per_node_tx
                sent_kb_per_tx_node = (node_sent_bytes(net) - sent_before) / 1024 / per_node_tx
                print(
                    f"wan: validators={len(net.validators)} rtt_ms={rtt} tx_bytes={size} "
                    f"offered_tps={m.offered_tps} confirmed_tps={m.confirmed_tps:.0f} "
                    f"confirmed_pct={m.confirmed_pct:.1f} p50_final_ms={m.p50_final_ms:.0f} "
                    f"p99_final_ms={m.p99_final_ms:.0f} block_ms={m.block_ms:.0f} "
                    f"refused={m.refused} held={m.held} retried={load.retried} "
                    f"submit_s={load.submit_s:.1f} late_s={load.late_s:.1f} "
                    f"cpu_ms_per_tx_node={cpu_ms_per_tx_node:.2f} "
                    f"sent_kb_per_tx_node={sent_kb_per_tx_node:.1f} "
                    f"cpu_ms_per_s_node={1000 * cpu_s / elapsed / len(net.nodes):.0f} "
                    f"delay_cpu_pct={100 * delay_s / elapsed:.0f} "
                    f"client_cpu_pct={100 * client_s / elapsed:.0f} {late} {health.line()} "
                    f"{frames} "
                    f"load_avg={os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                if m.confirmed_pct < SATURATED_PCT:
                    saturated = True
                    if not args.every_load:
                        break
                if not saturated:
                    saturation = rate
            print(f"wan: saturation_tps={saturation}", flush=True)
        finally:
            following.cancel()


async def idle(
    seconds: int, net: WanTestnet, session: aiohttp.ClientSession, profile: Path | None = None
) -> None:
    """The testnet with no load: CPU per node per second (each node with its verifier
    processes) and the delay process's CPU share; one `wan idle:` line."""
    cpu_before, delay_before, sent_before = (
        node_cpu_seconds(net),
        delay_cpu_seconds(net),
        node_sent_bytes(net),
    )
    frames_before = await Frames.read(session, [node.api for node in net.nodes])
    height_before = await _height(session, net.validators[0].api)
    started = time.monotonic()
    print(f"wan idle: measuring for {seconds} s", flush=True)
    spied = Spied.start(profile, net, "idle", seconds)
    await asyncio.sleep(seconds)
    if spied is not None:
        spied.report(0)
    elapsed = time.monotonic() - started
    frames_after = await Frames.read(session, [node.api for node in net.nodes])
    heights = await _height(session, net.validators[0].api) - height_before
    frames = frames_after.since(frames_before, elapsed, len(net.nodes))
    nodes, validators = len(net.nodes), len(net.validators)
    per_height = frames_after.per_height(frames_before, heights, nodes, validators)
    cpu_s = node_cpu_seconds(net) - cpu_before
    delay_s = delay_cpu_seconds(net) - delay_before
    sent_kb = (node_sent_bytes(net) - sent_before) / 1024
    print(
        f"wan idle: seconds={elapsed:.0f} nodes={len(net.nodes)} "
        f"cpu_ms_per_s_node={1000 * cpu_s / elapsed / len(net.nodes):.0f} "
        f"sent_kb_per_s_node={sent_kb / elapsed / len(net.nodes):.1f} "
        f"delay_cpu_pct={100 * delay_s / elapsed:.0f} {frames} {per_height} "
        f"load_avg={os.getloadavg()[0]:.1f}",
        flush=True,
    )


async def _height(session: aiohttp.ClientSession, api: str) -> int:
    async with session.get(f"{api}/status") as response:
        return int((await response.json())["height"])


def proposal_cost(txs: int, tx_bytes: int, rounds: int = 200) -> None:
    """What one proposal of `txs` transfers of `tx_bytes` costs a receiving node, sent full
    (PROPOSAL) and compact (COMPACT_PROPOSAL, every tx held): bytes on each link, and CPU
    to check it and produce the block bytes consensus gets. No root, no network."""
    with tempfile.TemporaryDirectory() as tmp:
        chain = open_chain(Path(tmp))
        try:
            builder = Builder(chain)
            builder.commit()
            key = funded_key(VALIDATORS)
            memo = memo_for(chain.params.chain_id, key, tx_bytes)
            candidates = [
                builder.tx(key, Transfer(i.to_bytes(20, "big"), COIN, memo), fee=10_000)
                for i in range(1, txs + 1)
            ]
            block, _commit = builder.block(candidates)
            signer = next(
                node_hot_key(i)
                for i in range(VALIDATORS)
                if node_hot_key(i).public_key == block.header.proposer
            )
            proposal = Proposal.create(
                signer, chain.params.chain_id, block.height, 0, -1, block.hash()
            )
            params = chain.params
        finally:
            chain.close()
    full = encode_proposal(proposal, block.encode())
    compact = encode_compact_proposal(proposal, block)
    held = {sha256(raw): raw for raw in block.txs}
    started = time.process_time()
    for _ in range(rounds):
        decode_proposal(full, params.max_block_bytes * 4, params.max_block_txs)
    full_s = time.process_time() - started
    started = time.process_time()
    for _ in range(rounds):
        rebuilt = decode_compact_proposal(compact, params.max_block_txs)
        found, _missing = gather(rebuilt.ids(), lambda ids: [held.get(i) for i in ids])
        assemble(rebuilt, [raw for raw in found if raw is not None], params.max_block_bytes * 4)
    compact_s = time.process_time() - started
    print(
        f"wan proposal: txs={len(block.txs)} tx_bytes={len(block.txs[0])} "
        f"full_bytes={len(full)} compact_bytes={len(compact)} "
        f"receive_full_ms={1000 * full_s / rounds:.2f} "
        f"receive_compact_ms={1000 * compact_s / rounds:.2f} "
        f"load_avg={os.getloadavg()[0]:.1f}",
        flush=True,
    )


async def _frames_once(turns: int, per_turn: int, batched: bool, payload_bytes: int) -> float:
    """CPU seconds (this process: both ends of one loopback link) to send and receive
    `turns` x `per_turn` VOTE frames of `payload_bytes`, `per_turn` queued in each turn,
    with batching on or off (the link writer's MAX_BATCH_FRAMES)."""
    unlimited = limits_with_rates(
        fast_limits(batch_frames=MAX_BATCH_FRAMES if batched else 1), VOTE=Rate(1e9, 1e9)
    )
    async with cluster() as nodes:
        sender, receiver = await nodes.add(limits=unlimited), await nodes.add(limits=unlimited)
        await sender.network.connect(receiver.address)
        await wait_until_async(lambda: receiver.id in sender.peer_ids(), what="linked")
        await asyncio.sleep(0.2)  # the link's first frames (STATUS, GET_PEERS) settle
        pad = bytes(payload_bytes - 8)
        total = turns * per_turn
        started = time.process_time()
        for turn in range(turns):
            for i in range(per_turn):
                sender.network.broadcast(Kind.VOTE, (turn * per_turn + i).to_bytes(8) + pad)
            await asyncio.sleep(0)  # one turn: the writer runs after it
        await wait_until_async(
            lambda: len(receiver.host.gossip) >= total, timeout=60, what="every frame in"
        )
        return time.process_time() - started


def frame_cost(turns: int, per_turn: int, payload_bytes: int = 150, repeats: int = 5) -> None:
    """CPU per frame through a real link (seal, websocket, open, decode, rate limits,
    dispatch, both ends in this process), batched and not, alternating; medians. No
    root, no WAN."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for batched in (False, True):
            times[batched].append(
                asyncio.run(_frames_once(turns, per_turn, batched, payload_bytes))
            )
    frames = turns * per_turn
    alone_us, batched_us = (1e6 * sorted(times[b])[repeats // 2] / frames for b in (False, True))
    print(
        f"wan frames: frames={frames} per_turn={per_turn} payload_bytes={payload_bytes} "
        f"alone_us_per_frame={alone_us:.1f} batched_us_per_frame={batched_us:.1f} "
        f"load_avg={os.getloadavg()[0]:.1f}",
        flush=True,
    )


def _run_delay_on(module_name: str, fd: int) -> None:
    """In a forked child: the delay process of `module_name` (tests/wan/delay.py or an
    older copy) with `fd` (one end of a datagram socketpair) in place of its TUN."""
    module: Any = importlib.import_module(module_name)
    module.open_tun = lambda name: fd
    args = argparse.Namespace(
        tun="bench", pairs='{"1-2": 90, "1-3": 160, "2-3": 130}', jitter_ms=5.0,
        loss_pct=0.5, seed=1, region_bits=3, priority=False,
    )  # fmt: skip
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - its ready and stats lines
    run = module.serve(args)
    if asyncio.iscoroutine(run):
        asyncio.run(run)


def _delay_packets(count: int, rng: random.Random) -> list[bytes]:
    """IPv4 packets between the three regions (the second octet's top three bits), of the
    sizes TCP sends on the testnet: full 1,500-byte segments, small frames, bare ACKs."""
    packets = []
    for n in range(count):
        src, dst = rng.sample((1, 2, 3), 2)
        size = rng.choice((52, 52, 200, 600, 1500))
        header = bytes([0x45, *bytes(11), 10, src << 5, 0, 2, 10, dst << 5, 0, 3])
        packets.append(header + n.to_bytes(4, "big") + bytes(size - 24))
    return packets


def delay_cost(rate: int, seconds: int, module_name: str, repeats: int = 3) -> None:
    """CPU per packet of the WAN delay process (tests/wan/delay.py) forwarding `rate`
    packets a second for `seconds`: a datagram socketpair stands for its TUN (the same
    one packet per read and write), the child's user + system CPU read from /proc. No
    root, no network."""
    results = []
    for _ in range(repeats):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        theirs.setblocking(False)
        child = multiprocessing.get_context("fork").Process(
            target=_run_delay_on, args=(module_name, theirs.fileno())
        )
        child.start()
        assert child.pid is not None
        theirs.close()
        ours.setblocking(False)
        packets = _delay_packets(rate * seconds, random.Random(7))
        time.sleep(0.5)  # the child's start-up is not counted
        before = _process_cpu_s(child.pid)
        back, started, sent = 0, time.monotonic(), 0
        while sent < len(packets) or time.monotonic() < started + seconds + 0.5:
            due = min(len(packets), int((time.monotonic() - started) * rate))
            while sent < due:
                ours.send(packets[sent])
                sent += 1
            with contextlib.suppress(BlockingIOError):
                while True:
                    ours.recv(2048)
                    back += 1
            time.sleep(0.001)
        cpu_s = _process_cpu_s(child.pid) - before
        os.kill(child.pid, signal.SIGTERM)
        child.join(5)
        ours.close()
        results.append((cpu_s, back))
    cpu_s, back = sorted(results)[repeats // 2]
    print(
        f"wan delay cost: module={module_name} packets={rate * seconds} forwarded={back} "
        f"rate={rate} us_per_packet={1e6 * cpu_s / max(1, back):.1f} "
        f"load_avg={os.getloadavg()[0]:.1f}",
        flush=True,
    )


def _process_cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=16)
    parser.add_argument("--full-nodes", type=int, default=3)
    parser.add_argument(
        "--loads",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[50, 100, 200, 300, 400, 500],
        help="offered tx/s, comma-separated, in order",
    )
    parser.add_argument("--seconds", type=int, default=20, help="length of each load")
    parser.add_argument("--senders", type=int, default=64, help="accounts signing the load")
    parser.add_argument(
        "--tx-bytes", type=int, default=1024, help="size of each tx (a memo pads it); 0: plain"
    )
    parser.add_argument("--seed", type=int, default=1, help="the WAN's jitter and loss")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' homes and logs")
    parser.add_argument(
        "--log-level",
        default="warning",
        help="the nodes' log level; info logs each height's proposal, votes and commit "
        "(with --keep: a per-height timeline, bench/wan_timeline.py)",
    )
    parser.add_argument(
        "--every-load",
        action="store_true",
        help="offer every load even past saturation (each after the backlog of the last)",
    )
    parser.add_argument(
        "--idle",
        type=int,
        default=0,
        metavar="SECONDS",
        help="first measure the funded testnet with no load for SECONDS (`wan idle:` line)",
    )
    parser.add_argument(
        "--proposal-cost",
        type=int,
        default=0,
        metavar="TXS",
        help="only print what a proposal of TXS txs costs a receiver, full and compact "
        "(no network, no root)",
    )
    parser.add_argument(
        "--frame-cost",
        type=int,
        default=0,
        metavar="TURNS",
        help="only print the CPU per frame through one loopback link, frames sent alone "
        "and batched (--frames-per-turn each turn; no network, no root)",
    )
    parser.add_argument("--frames-per-turn", type=int, default=10)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample validator v01 and full node f00 with py-spy during each load (and the "
        "idle time): DIR/<load>/nodeN.txt and a table by activity (bench/profile.py)",
    )
    parser.add_argument(
        "--delay-cost",
        type=int,
        default=0,
        metavar="PACKETS_PER_S",
        help="only print the WAN delay process's CPU per packet at this rate (no root)",
    )
    parser.add_argument("--delay-module", default="tests.wan.delay", help=argparse.SUPPRESS)
    parser.add_argument(
        "--serial-clients",
        action="store_true",
        help="post each tick's batch only after the previous one's answer (before wan22m: "
        "a slow API then slows the offered load, see submit_s); by default each tick "
        "posts at once, as independent clients do",
    )
    parser.add_argument(
        "--round-robin-ticks",
        action="store_true",
        help="the load before wan15b: each tick's whole batch to the next validator in turn "
        "(by default each sender submits through one validator, as a wallet does)",
    )
    parser.add_argument(
        "--no-delay-priority",
        action="store_true",
        help="run the WAN delay process at the nodes' priority (as before wan22m), to compare",
    )
    args = parser.parse_args()
    if args.delay_cost:
        delay_cost(args.delay_cost, args.seconds, args.delay_module)
        return
    if args.frame_cost:
        frame_cost(args.frame_cost, args.frames_per_turn)
        return
    if args.proposal_cost:
        proposal_cost(args.proposal_cost, args.tx_bytes)
        return
    if os.geteuid() != 0:
        parser.error("the WAN testnet needs root (ip netns, veth, TUN)")
    if args.validators < 4 or min(args.loads) < 1 or args.seconds < 1 or args.senders < 1:
        parser.error("--validators >= 4; --loads, --seconds and --senders positive")
    work = Path(tempfile.mkdtemp(prefix="flux-bench-wan-"))
    net = WanTestnet(
        work,
        args.validators,
        args.full_nodes,
        args.seed,
        log_level=args.log_level,
        delay_priority=not args.no_delay_priority,
    )
    try:
        net.up()
        # The node addresses are reachable from the wan namespace only.
        net.in_wan(lambda: asyncio.run(sweep(args, net)))
    finally:
        net.down()
        if args.keep:
            print(f"homes and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
