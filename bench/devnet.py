"""A 4-validator devnet on this machine under a steady submit load, or a sweep of loads.

    python -m bench.devnet [--rate 2000] [--seconds 30] [--senders 64]
        [--concurrent-clients | --serial-clients]
    python -m bench.devnet --sweep [--start 2000] [--step 2000] [--max 20000] [--seconds 20]
        [--round-robin-ticks]

Starts four `fluxchain run` processes from a fresh genesis, funds SENDERS fresh accounts
from the dev accounts (so that no sender reaches the mempool's per-sender limit), then
offers each load: pre-signs RATE x SECONDS transfers and encodes their JSON, then submits
them every 100 ms in batches split to the API's limit (each sender through one of the
four nodes' APIs, as a wallet uses its own node; sender i through node i % 4;
`--round-robin-ticks`: each tick's whole batch to the next node in turn, the load before
wan15b), and follows node0's block stream: a tx is final when the block holding it is
committed. Each sender's txs are posted by one client, in nonce order, one post in flight
(bench/load_clients.py). By default one client a node, each posting on its own as its
txs come, as the wallets at each node would: a node slow to answer (busy with a block)
delays only its own senders' txs, which go in its next post, and never another node's.
`--serial-clients`: the default before session 21, one client a node, each tick's posts
one after another, each waiting for the answer before it, so one busy node held back
every node's batches and the load was offered late (`submit_s` 32-74 s for 30 s of load;
the generator's own encoding and decoding were ~1 s of it: docs/performance.md, "Devnet,
twelfth pass"). `--concurrent-clients`: CLIENTS_PER_NODE clients a node, each posting on
its own (the flood; `bench.wan` by default); at 10,000 tx/s on two cores that flood once
stalled block production for 18-39 s (issue 24, session 18). The nodes shed a flood (429
`busy`, api/shedding.py); like a wallet, a client posts a tx answered "not now" (429, or
`mempool_full`/`sender_limit`/`nonce_too_far` not held) again after its Retry-After, at
most RETRIES times, while the other clients go on.

One line per load: `devnet: offered_tps=… confirmed_tps=… confirmed_pct=… p50_final_ms=…
p99_final_ms=… block_ms=… refused=… held=… retried=… submit_s=…` (`refused` and `held`:
the txs not confirmed by the end, by the reason of their last answer, as reason:count or
0: refused, or held by their node, which said it may still commit them; a tx that
confirmed counts confirmed whatever it was answered; `retried`, the posts answered "not
now" and sent again; `submit_s`, the first submit to the last answer: longer than
SECONDS when the load was offered late).
Then `devnet generator: late_s=… ticks=… late_ticks=… posts=… post_ms_p50=… post_ms_p99=…
post_ms_max=… wait_s=… encode_s=… decode_s=… serial_posting_s=… routing_s=…`: where the
generator's time went (`Timing`, bench/load_clients.py): each post's wall time from its
body to its decoded answer, summed over posts the time spent waiting on the nodes
(`wait_s`) and the client's own encoding and decoding; the ticks begun over a tick late;
with `--serial-clients` the tick loop's time in posts; and its own routing of the txs.
`confirmed_pct` is the share of the load as offered (RATE x SECONDS) that was final by 2 s
after its last second, so an API that slows the generator down counts as saturation too. A
sweep raises the load by STEP until that share falls below 95 % (or MAX is reached) and
ends with `devnet: saturation_tps=…`, the highest load that kept it.

After each load's line, `devnet cpu: node_us_per_tx=a/b/c/d nodes_us_per_tx=…
client_us_per_tx=… confirmed=… system_pct=… sigs_per_tx_node=… sigs_by_path=…`: the CPU
each node process (its verifier processes included) and this client spent from the load's
first submit to its settling, per confirmed tx, and the kernel's share of the nodes' CPU —
what a change is judged by on a shared machine; and the tx signatures all nodes verified
over the load (each node's /metrics, fluxchain_signatures_verified_total) per confirmed tx
a node, ~1.0 when each tx is verified once a node, by path (admission, block; `taken`:
copies of block-checked txs admitted unverified). `--profile DIR` samples each node with py-spy
during the load and prints where its time went, by activity (bench/profile.py);
`--profile-gil` samples only the threads holding the GIL (the Python work). Then
`devnet frames: frames_per_tx=… messages_per_tx=… sent_kinds=KIND:n,…`: the p2p frames
and websocket messages (a BATCH of frames is one) all nodes sent per confirmed tx.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
import msgspec

from bench.frames import Frames
from bench.load_clients import (
    HELD,
    JSON,
    RETRIES,
    Load,
    LoadClient,
    answer_of,
    batch_body,
    drain,
    retry_delay,
)
from bench.profile import cpu_split, report_profiles, start_sampling
from fluxchain.api.models import MAX_BATCH
from fluxchain.core.crypto import SigningKey, address_of, encode_address
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx, memo_fee
from fluxchain.genesis_builder import DEV_ACCOUNTS, devnet_params
from fluxchain.node.devnet import create_devnet, start_node
from fluxchain.node.profiling import LOOP_TURNS_ENV
from fluxchain.node.supervisor import stop
from tests.support.ports import lease_ports
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

TICK_S: Final = 0.1
FEE: Final = 1_000
VALIDATORS: Final = 4
SATURATED_PCT: Final = 95.0
ON_TIME_S: Final = 2.0  # after a load's last second, how long its txs may take to count
DRAIN_S: Final = 30.0  # after the last submit, how long a load's txs may take to commit
SENDER_FUNDS: Final = 5_000 * COIN  # fees and amounts of well over a million transfers
FIRST_SENDER: Final = 100  # HD index of the first bench sender (clear of the dev accounts)
# Concurrent clients a node (`--concurrent-clients`): each owns some of the node's senders
# and posts their txs in nonce order, one post in flight (bench/load_clients.py).
CLIENTS_PER_NODE: Final = 4
# How the load's clients post (`offer`).
Posting = Literal["node", "concurrent", "serial"]


@dataclass(slots=True)
class Follower:
    """node0's committed blocks: when each tx became final, and when each block came."""

    final: dict[bytes, float] = field(default_factory=dict)
    block_times: list[float] = field(default_factory=list)

    async def run(self, session: aiohttp.ClientSession, url: str) -> None:
        async with session.ws_connect(f"{url}/ws") as ws:
            async for msg in ws:
                now = time.perf_counter()
                block = msgspec.json.decode(msg.data)
                self.block_times.append(now)
                for tx_id in block["txs"]:
                    self.final.setdefault(bytes.fromhex(tx_id), now)


async def wait_ready(session: aiohttp.ClientSession, urls: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            heights = []
            for url in urls:
                async with session.get(f"{url}/status") as r:
                    heights.append((await r.json())["height"])
            if min(heights) >= 2:
                return
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("the devnet did not start")


async def submit(session: aiohttp.ClientSession, url: str, txs: list[Tx], load: Load) -> None:
    """POST `txs` in chunks of at most MAX_BATCH, each after the one before it was answered
    (a sender's nonces in order); count every final refusal by its reason."""
    for offset in range(0, len(txs), MAX_BATCH):
        chunk = txs[offset : offset + MAX_BATCH]
        body = await post_batch(session, url, chunk, load)
        if body is None:
            continue
        results = body.get("results")
        if not isinstance(results, list):  # the whole batch refused: {"error": {...}}
            load.refused[str(body.get("error", {}).get("reason", "no_results"))] += len(chunk)
            continue
        for result in results:
            answer = answer_of(result)
            if answer.startswith(HELD):
                load.held[answer.removeprefix(HELD)] += 1
            elif "error" in result:
                load.refused[str(result["error"].get("reason", "unknown"))] += 1


async def post_batch(
    session: aiohttp.ClientSession, url: str, chunk: list[Tx], load: Load
) -> dict[str, Any] | None:
    """The node's answer to `chunk` (None on a transport failure, counted): a 429 (none of
    it admitted) is posted again after its Retry-After, up to RETRIES times."""
    data = batch_body(chunk, load.encoded)
    for attempt in range(RETRIES + 1):
        try:
            async with session.post(f"{url}/txs/batch", data=data, headers=JSON) as r:
                body: dict[str, Any] = msgspec.json.decode(await r.read())
                status, retry_after = r.status, r.headers.get("Retry-After", "")
        except (aiohttp.ClientError, OSError, TimeoutError, msgspec.DecodeError) as exc:
            load.refused[f"transport:{type(exc).__name__}"] += len(chunk)
            return None
        if status != 429 or attempt == RETRIES:
            return body
        load.retried += 1
        await asyncio.sleep(retry_delay(retry_after))
    raise AssertionError("unreachable")


async def nonces(session: aiohttp.ClientSession, url: str, keys: list[SigningKey]) -> list[int]:
    async with session.get(f"{url}/params") as r:
        hrp = str((await r.json())["address_hrp"])
    out = []
    for key in keys:
        address = encode_address(address_of(key.public_key), hrp)
        async with session.get(f"{url}/accounts/{address}") as r:
            out.append(int((await r.json())["nonce"]))
    return out


async def wait_settled(
    session: aiohttp.ClientSession, url: str, follower: Follower, expect: set[bytes]
) -> None:
    """Until every tx in `expect` is final or the drain deadline passes."""
    deadline = time.perf_counter() + DRAIN_S
    while time.perf_counter() < deadline and not expect <= follower.final.keys():
        await asyncio.sleep(0.2)


async def fund(
    session: aiohttp.ClientSession,
    urls: list[str],
    chain_id: str,
    follower: Follower,
    senders: list[SigningKey],
) -> None:
    """Give each sender enough to pay for any load from the genesis-funded accounts."""
    funded = VALIDATORS + DEV_ACCOUNTS  # the validators' owners, then the dev accounts
    funders = [derive_key(INSECURE_TEST_MNEMONIC, account_path(i)) for i in range(funded)]
    start = await nonces(session, urls[0], funders)
    txs = []
    for i, sender in enumerate(senders):
        j = i % len(funders)
        pay = Transfer(address_of(sender.public_key), SENDER_FUNDS)
        txs.append(Tx.create(funders[j], chain_id, start[j] + i // len(funders), FEE, pay))
    load = Load(0)
    await submit(session, urls[0], txs, load)
    if load.refused:
        raise SystemExit(f"funding the senders was refused: {dict(load.refused)}")
    await wait_settled(session, urls[0], follower, {t.id for t in txs})


def by_client(offset: int, batch: list[Tx], senders: int, clients: int) -> dict[int, list[Tx]]:
    """A batch of `offer`'s txs (tx i, from `offset`, is sender i % `senders`'s) by the
    client that posts them: sender s always through client s % `clients`, which posts to
    node urls[client % len(urls)] (`clients` a multiple of the nodes), so sender s through
    node s % len(urls).

    A wallet submits through one node, and many wallets through many nodes: every node
    is an origin of txs all the time. Sending each tick's whole batch to the next node
    in turn made one node a tick the origin of 50-2,000 txs in one TXS frame, and put a
    sender's consecutive nonces on different nodes (issue 22, wan15b)."""
    routed: dict[int, list[Tx]] = {}
    for i, tx in enumerate(batch, start=offset):
        routed.setdefault(i % senders % clients, []).append(tx)
    return routed


async def offer(
    session: aiohttp.ClientSession,
    urls: list[str],
    chain_id: str,
    follower: Follower,
    senders: list[SigningKey],
    rate: int,
    seconds: int,
    memo: bytes = b"",
    on_start: Callable[[], None] = lambda: None,
    posting: Posting = "node",
    pinned: bool = True,
) -> Load:
    """Offer `rate` tx/s for `seconds`; return what was submitted and refused. Each
    transfer carries `memo` (and pays its fee), to make the txs a given size; `on_start`
    runs when the txs are signed and encoded, just before the first submit.

    Each sender submits through one node (`by_client`), as a wallet does through its own
    node: a tick's batch is split by node. `pinned=False` is the load before wan15b:
    each tick's whole batch to the next node in turn (one origin a tick, far fewer and
    larger TXS frames; a sender's nonces spread over nodes).

    `posting` (bench/load_clients.py; every client posts its senders' txs in nonce order,
    one post in flight): "node", one client a node, each posting on its own as its txs
    come, so a node slow to answer delays only its own senders' txs; "concurrent",
    CLIENTS_PER_NODE clients a node, each on its own (the flood); "serial", one client a
    node, each tick's posts one after another, so one slow API holds back the batches of
    every other node (the default before session 21). A retry waits only its own client."""
    sink = address_of(derive_key(INSECURE_TEST_MNEMONIC, account_path(99)).public_key)
    base = await nonces(session, urls[0], senders)
    total = rate * seconds
    n = len(senders)
    print(f"signing {total} transfers…", flush=True)
    fee = FEE + memo_fee(memo, devnet_params(chain_id))
    pay = Transfer(sink, COIN // 100, memo)
    txs = [
        Tx.create(senders[i % n], chain_id, base[i % n] + i // n, fee, pay) for i in range(total)
    ]
    load = Load(rate, seconds)
    load.encode(txs)  # the bodies' bytes, off the clock
    per_node = CLIENTS_PER_NODE if posting == "concurrent" else 1
    count = len(urls) * max(1, min(per_node, n // len(urls))) if pinned else 1
    clients = [LoadClient(urls[c % len(urls)]) for c in range(count)]
    per_tick = max(1, int(rate * TICK_S))
    # Each tick's txs, and by the client that posts them: routed off the clock.
    batches = [txs[offset : offset + per_tick] for offset in range(0, total, per_tick)]
    ticks = [(b, by_client(i * per_tick, b, n, count)) for i, b in enumerate(batches)]
    closed = asyncio.Event()
    serial = posting == "serial"
    running = [asyncio.create_task(c.run(session, load, closed)) for c in clients if not serial]
    on_start()
    start = time.perf_counter()
    try:
        for tick, (batch, routed) in enumerate(ticks):
            now = time.perf_counter()
            load.late_s = max(load.late_s, now - (start + tick * TICK_S))
            load.timing.ticks += 1
            load.timing.late_ticks += now - (start + tick * TICK_S) > TICK_S
            for tx in batch:
                load.submitted[tx.id] = now
            if not pinned:  # the whole tick to the next node in turn
                clients[0].url = urls[tick % len(urls)]
            for c, txs_of_client in routed.items():
                clients[c].enqueue(txs_of_client)
            load.timing.routing_s += time.perf_counter() - now
            if serial:
                posting_began = time.perf_counter()
                for client in clients:
                    if client.ready():
                        await client.post(session, load)
                load.timing.serial_posting_s += time.perf_counter() - posting_began
            await asyncio.sleep(max(0.0, start + (tick + 1) * TICK_S - time.perf_counter()))
        closed.set()
        for client in clients:
            client.arrived.set()
        await asyncio.gather(*running)
        await drain(clients, session, load)
    finally:
        for task in running:
            task.cancel()
    load.submit_s = time.perf_counter() - start
    await wait_settled(session, urls[0], follower, set(load.submitted))
    load.settle(follower.final.keys())
    return load


@dataclass(frozen=True, slots=True)
class Measured:
    """One load's figures: what the `devnet:` (and `wan:`) lines print."""

    offered_tps: int
    confirmed_tps: float
    confirmed_pct: float
    p50_final_ms: float
    p99_final_ms: float
    block_ms: float
    refused: str  # reason:count, … or "0": not confirmed, last refused for that reason
    held: str  # the same for the txs not confirmed that their node last said it held


def measure(load: Load, follower: Follower) -> Measured:
    """What `follower` saw of `load`: confirmed share, rate, submit→final latencies.

    The share confirmed is of the load as offered (RATE x SECONDS), counting the txs final
    by the end of the load plus ON_TIME_S: a node that slows its API down (so that the
    load generator submits less than offered) or lets txs queue is saturated too."""
    final = follower.final
    done = [final[t] - s for t, s in load.submitted.items() if t in final]
    offered = load.rate * load.seconds or len(load.submitted)
    start = min(load.submitted.values(), default=0.0)
    due = start + load.seconds + ON_TIME_S
    on_time = sum(1 for t in load.submitted if final.get(t, due + 1) <= due)
    pct = 100.0 * on_time / offered if offered else 0.0
    refused = ",".join(f"{r}:{c}" for r, c in load.refused.most_common()) or "0"
    held = ",".join(f"{r}:{c}" for r, c in load.held.most_common()) or "0"
    if not done:
        return Measured(load.rate, 0.0, 0.0, 0.0, 0.0, 0.0, refused, held)
    first_submit = min(load.submitted.values())
    last_final = max(final[t] for t in load.submitted if t in final)
    tps = len(done) / max(last_final - first_submit, 1e-9)
    latencies = sorted(1000 * d for d in done)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    times = [t for t in follower.block_times if first_submit <= t <= last_final]
    intervals = [b - a for a, b in itertools.pairwise(times)]
    block_ms = 1000 * statistics.mean(intervals) if intervals else 0.0
    return Measured(load.rate, tps, pct, p50, p99, block_ms, refused, held)


def report(load: Load, follower: Follower) -> float:
    """Print the load's line; return the share of offered txs confirmed, in percent."""
    m = measure(load, follower)
    print(
        f"devnet: offered_tps={m.offered_tps} confirmed_tps={m.confirmed_tps:.0f} "
        f"confirmed_pct={m.confirmed_pct:.1f} p50_final_ms={m.p50_final_ms:.0f} "
        f"p99_final_ms={m.p99_final_ms:.0f} block_ms={m.block_ms:.0f} refused={m.refused} "
        f"held={m.held} retried={load.retried} submit_s={load.submit_s:.1f}",
        flush=True,
    )
    print(f"devnet generator: late_s={load.late_s:.2f} {load.timing.line()}", flush=True)
    return m.confirmed_pct


@dataclass(slots=True)
class CpuMeter:
    """The CPU the node processes (verifiers included) and this client spent on a load,
    from its first submit to its settling: per confirmed tx, the yardstick of a change on
    a shared machine (the other engineers' load moves wall clock, not CPU per tx)."""

    pids: list[int]
    profile: Path | None = None
    seconds: int = 0
    gil: bool = False
    nodes_start: list[tuple[float, float]] = field(default_factory=list)
    client_start: float = 0.0
    spies: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        self.nodes_start = [cpu_split(pid) for pid in self.pids]
        self.client_start = time.process_time()
        if self.profile is not None:
            self.spies = start_sampling(self.pids, self.seconds, self.profile, gil=self.gil)

    def report(self, load: Load, follower: Follower, sigs: str) -> None:
        """Print `devnet cpu:` (µs per confirmed tx, each node and the client; `sigs`, the
        signatures verified a tx a node: `Frames.sigs_per_tx`), and the profile table if
        sampling."""
        confirmed = sum(1 for t in load.submitted if t in follower.final) or 1
        splits = [
            (user - user0, system - system0)
            for (user, system), (user0, system0) in zip(
                (cpu_split(p) for p in self.pids), self.nodes_start, strict=True
            )
        ]
        nodes = [user + system for user, system in splits]
        # The kernel's share (mostly the loopback TCP path of the peer links)
        system_pct = 100 * sum(system for _, system in splits) / (sum(nodes) or 1)
        client = time.process_time() - self.client_start
        per_node = "/".join(f"{1e6 * c / confirmed:.0f}" for c in nodes)
        print(
            f"devnet cpu: node_us_per_tx={per_node} "
            f"nodes_us_per_tx={1e6 * sum(nodes) / confirmed:.0f} "
            f"client_us_per_tx={1e6 * client / confirmed:.0f} confirmed={confirmed} "
            f"system_pct={system_pct:.1f} {sigs}",
            flush=True,
        )
        if self.profile is not None:
            for spy in self.spies:
                spy.wait()
            report_profiles(self.profile, len(self.pids))


async def report_nodes(
    session: aiohttp.ClientSession,
    urls: list[str],
    before: Frames,
    load: Load,
    follower: Follower,
    meter: CpuMeter,
) -> None:
    """Print `devnet cpu:` (`CpuMeter.report`, with the signatures all nodes verified
    since `before` a confirmed tx a node) and `devnet frames:` (p2p frames and websocket
    messages all nodes sent per confirmed tx since `before`, by kind)."""
    confirmed = sum(1 for t in load.submitted if t in follower.final)
    after = await Frames.read(session, urls)
    meter.report(load, follower, after.sigs_per_tx(before, confirmed, len(urls)))
    print(f"devnet frames: {after.per_tx(before, confirmed)}", flush=True)


async def run(
    args: argparse.Namespace,
    urls: list[str],
    chain_id: str,
    pids: list[int],
    windows: list[tuple[float, float]],
) -> None:
    """Fund the senders, offer the load (or the sweep); each load's wall-clock window
    (first submit to settled) goes into `windows`."""
    senders = [
        derive_key(INSECURE_TEST_MNEMONIC, account_path(FIRST_SENDER + i))
        for i in range(args.senders)
    ]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await wait_ready(session, urls, 60)
        follower = Follower()
        following = asyncio.create_task(follower.run(session, urls[0]))
        try:
            await fund(session, urls, chain_id, follower, senders)
            meter = CpuMeter(pids, args.profile, max(1, args.seconds - 1), args.profile_gil)
            if not args.sweep:
                began = time.time()
                frames = await Frames.read(session, urls)
                load = await offer(
                    session,
                    urls,
                    chain_id,
                    follower,
                    senders,
                    args.rate,
                    args.seconds,
                    on_start=meter.start,
                    posting=args.posting,
                    pinned=not args.round_robin_ticks,
                )
                windows.append((began, time.time()))
                report(load, follower)
                await report_nodes(session, urls, frames, load, follower, meter)
                return
            saturation = 0
            for rate in range(args.start, args.max + 1, args.step):
                began = time.time()
                frames = await Frames.read(session, urls)
                load = await offer(
                    session,
                    urls,
                    chain_id,
                    follower,
                    senders,
                    rate,
                    args.seconds,
                    on_start=meter.start,
                    posting=args.posting,
                    pinned=not args.round_robin_ticks,
                )
                windows.append((began, time.time()))
                confirmed_pct = report(load, follower)
                await report_nodes(session, urls, frames, load, follower, meter)
                if confirmed_pct < SATURATED_PCT:
                    break
                saturation = rate
            print(f"devnet: saturation_tps={saturation}")
        finally:
            following.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2_000, help="offered tx/s (one load)")
    parser.add_argument("--seconds", type=int, default=30, help="length of each load")
    parser.add_argument("--senders", type=int, default=64, help="accounts signing the load")
    parser.add_argument("--sweep", action="store_true", help="raise the load to saturation")
    parser.add_argument("--start", type=int, default=2_000, help="first load of a sweep")
    parser.add_argument("--step", type=int, default=2_000, help="load increase per step")
    parser.add_argument("--max", type=int, default=20_000, help="last load of a sweep")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample each node with py-spy during the load (DIR/nodeN.txt) and print "
        "where its CPU went, by activity (bench/profile.py)",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only threads holding the GIL (the Python work; "
        "leaves out syscalls and waits, and C work that releases the GIL such as the "
        "signature check): bench/profile.py start_sampling",
    )
    parser.add_argument(
        "--round-robin-ticks",
        action="store_true",
        help="the load before wan15b: each tick's whole batch to the next node in turn "
        "(by default each sender submits through one node, as a wallet does)",
    )
    posting = parser.add_mutually_exclusive_group()
    posting.add_argument(
        "--concurrent-clients",
        dest="posting",
        action="store_const",
        const="concurrent",
        default="node",
        help=f"{CLIENTS_PER_NODE} clients a node, each posting its senders' txs as they come "
        "(the flood); by default one client a node, each posting on its own",
    )
    posting.add_argument(
        "--serial-clients",
        dest="posting",
        action="store_const",
        const="serial",
        help="one client a node, each tick's posts one after another, each after the answer "
        "before it (the default before session 21: one slow API delays every node's "
        "batches, see submit_s)",
    )
    parser.add_argument(
        "--loop-turns",
        action="store_true",
        help="time every callback of each node's event loop and print, per load, how "
        "often and how long the loop was held (fluxchain/node/profiling.py loop_turns)",
    )
    args = parser.parse_args()
    if min(args.rate, args.seconds, args.senders, args.start, args.step) < 1:
        parser.error("--rate, --seconds, --senders, --start and --step must be positive")
    work = Path(tempfile.mkdtemp(prefix="flux-bench-devnet-"))
    # The genesis names each node's API endpoint: runs of ports leased before the launch.
    p2p_ports = lease_ports(VALIDATORS, contiguous=True)
    api_ports = lease_ports(VALIDATORS, contiguous=True)
    genesis, members = create_devnet(
        work / "net",
        VALIDATORS,
        p2p_base=p2p_ports.ports[0],
        api_base=api_ports.ports[0],
        log_level="warning",
        agents=False,
    )
    turns = work / "turns"
    if args.loop_turns:
        turns.mkdir()
        os.environ[LOOP_TURNS_ENV] = str(turns)  # the nodes inherit it
    procs = [start_node(m.home, m.home / "node.log") for m in members]
    windows: list[tuple[float, float]] = []
    try:
        urls = [m.api for m in members]
        asyncio.run(run(args, urls, genesis.chain_id, [p.pid for p in procs], windows))
    finally:
        stop(procs)
        p2p_ports.release()
        api_ports.release()
        if args.loop_turns:
            report_turns(turns, [p.pid for p in procs], windows)
        shutil.rmtree(work, ignore_errors=True)


def report_turns(turns: Path, pids: list[int], windows: list[tuple[float, float]]) -> None:
    """Print, per load, each node's event-loop callbacks during it (`loop_turns`): how many
    a second held the loop 5 ms or more, and the longest, in wall time (what a waiting vote
    sees, inflated by a loaded machine) and in the loop thread's CPU (the work itself);
    then which coroutines held it, in CPU ms a second per node, in callbacks of >= 5 ms."""
    for began, ended in windows:
        seconds = max(ended - began, 1e-9)
        parts = []
        held = Counter[str]()
        longest: tuple[float, str] = (0.0, "")
        for index, pid in enumerate(pids):
            path = turns / f"turns-{pid}.json"
            if not path.exists():
                parts.append(f"node{index}=missing")
                continue
            entries = json.loads(path.read_text())["long"]
            window = [(wall, cpu, what) for at, wall, cpu, what in entries if began <= at <= ended]
            walls = [wall for wall, _, _ in window]
            cpus = [cpu for _, cpu, _ in window]
            for _, cpu, what in window:
                if cpu >= 0.005:
                    held[what] += 1000 * cpu
                longest = max(longest, (cpu, what))
            parts.append(
                f"node{index}:wall_over5ms/s={sum(w >= 0.005 for w in walls) / seconds:.1f},"
                f"wall_max_ms={1000 * max(walls, default=0.0):.0f},"
                f"cpu_over5ms/s={sum(c >= 0.005 for c in cpus) / seconds:.1f},"
                f"cpu_max_ms={1000 * max(cpus, default=0.0):.0f}"
            )
        print(f"devnet loop: {' '.join(parts)}", flush=True)
        top = ", ".join(
            f"{what} {ms / len(pids) / seconds:.0f}" for what, ms in held.most_common(6)
        )
        print(
            f"devnet loop held (CPU ms/s a node, callbacks of >= 5 ms CPU): {top}; "
            f"longest {1000 * longest[0]:.0f} ms CPU in {longest[1]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
