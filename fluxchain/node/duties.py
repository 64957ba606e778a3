"""Node duties: the node keeps itself confirmed and checks the nodes the chain assigns it.

After each committed block (never an unconfirmed one), with the node's hot key:
- NODE_CONFIRM with a fresh benchmark, once per confirm window, or at once after the
  node lost its status (DOWN, EXPIRED, jail served);
- at each epoch, probe this epoch's targets (`GET http://<endpoint>/health`, bounded
  timeout; up only when the answer proves it is the target's: `uptime.health_proof_valid`)
  and send one UPTIME_ATTEST with the verdicts;
- for an app it hosts whose key sealed to it does not open (garbage from a lying host),
  one APP_SECRETS_REJECT: the key goes and its sealer may not seal here again;
- for an app with sealed secrets that it hosts and holds the key of, when the chain placed
  the app on hosts without the key and this node is the app's sealer on duty at this
  height, one APP_SECRETS_SEAL sealing the key to them (failover without the owner).

The decisions (`confirm_due`, `attest_due`) are pure functions of the committed state;
the `Duties` object does the I/O.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from fluxchain.core import placement, secrets
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import TxError
from fluxchain.core.nodes import get_node, get_node_by_key
from fluxchain.core.params import MAX_CHECKERS, Params
from fluxchain.core.records import META, Meta, Node, NodeStatus
from fluxchain.core.sealing import SealingError, open_sealed_key, seal_key
from fluxchain.core.state import State
from fluxchain.core.tx import (
    AppSecretsReject,
    AppSecretsSeal,
    Benchmark,
    NodeConfirm,
    Seal,
    Tx,
    UptimeAttest,
    UptimeReport,
)
from fluxchain.core.uptime import (
    WALK_FACTOR,
    get_ring,
    health_nonces,
    health_proof_valid,
    on_duty,
    targets_of,
)
from fluxchain.node.app_reports import PUBLIC, ReportHosts, pin_endpoint, read_capped
from fluxchain.node.benchmark import run_benchmark
from p2p.netgroup import LearnRule

log = logging.getLogger("fluxchain.duties")

PROBE_TIMEOUT_S: Final = 2.0
# A /health answer is ~355 bytes (healthy, height, syncing, agent, proof, previous): a
# larger one is down, read no further, so a target cannot make its checkers buffer and
# parse megabytes on their loop.
MAX_HEALTH_ANSWER: Final = 4 * 1024
# A target that fails its probe is tried again before it is reported down: one refused
# connection (a node restarting, a whole devnet starting at once) must not cost it its apps.
PROBE_ATTEMPTS: Final = 3
PROBE_RETRY_S: Final = 1.0
VERSION: Final = "fluxchain/0.1.0"
# Name lookups of probes, on threads of their own: a report page's lookups (whose pool is
# small) cannot make probes time out, nor probes a report page's. One thread per target a
# checker can have (core/uptime.py WALK_FACTOR * k, made on demand): every target's first
# attempt finds a thread however many names hang; a retry may wait for one.
PROBE_LOOKUPS: Final = ThreadPoolExecutor(
    WALK_FACTOR * MAX_CHECKERS, thread_name_prefix="probe-lookup"
)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """What a probe's answer must prove: the target's node id, signed by its node key for
    an epoch the checker accepts (`uptime.health_nonces`: {epoch: nonce})."""

    chain_id: str
    node_id: bytes
    node_key: bytes
    nonces: Mapping[int, bytes]


def confirm_due(state: State, params: Params, node_key: bytes, height: int) -> Node | None:
    """The node this key runs, if it should send NODE_CONFIRM now."""
    node = get_node_by_key(state, node_key)
    if node is None or node.status is NodeStatus.UNBONDING:
        return None
    if node.status is NodeStatus.JAILED and height + 1 < node.jailed_until:
        return None
    window = params.confirm_window
    if not node.last_confirm_height or node.last_confirm_height < node.status_height:
        return node  # never confirmed, or lost its status since the last confirmation
    if node.last_confirm_height // window < (height + 1) // window:
        return node
    return None


def attest_due(
    state: State, params: Params, node_key: bytes
) -> tuple[Node, int, list[bytes]] | None:
    """(node, epoch, targets) if this node owes an UPTIME_ATTEST for the current epoch."""
    node = get_node_by_key(state, node_key)
    if node is None or not on_duty(state, node):
        return None
    meta: Meta = state.get(META)
    ring = get_ring(state)
    if ring.epoch != meta.epoch or node.last_attest_epoch == meta.epoch + 1:
        return None
    targets = targets_of(state, node.node_id, params.checkers_per_node)
    return (node, meta.epoch, targets) if targets else None


def reseal_due(state: State, node_key: bytes, height: int) -> list[tuple[str, bytes, list[bytes]]]:
    """(app, this node's id, hosts to seal to) for each app whose key this node owes a
    re-seal after block `height`.

    For each host without the key, among the hosts that hold it and that it has not
    rejected, the one on duty takes turns by height (`sealers[height % len(sealers)]`):
    one seal per host per block, and a holder that is placed but silent (or lying, once
    rejected) only delays the seal by a block.
    """
    node = get_node_by_key(state, node_key)
    load = None if node is None else placement.get_load(state, node.node_id)
    if node is None or load is None:
        return []
    due = []
    for name in sorted({app for app, _ in load.hosted}):
        if secrets.get_sealed_key(state, name, node.node_id) is None:
            continue
        holders = [
            h
            for h in secrets.get_hosts(state, name)
            if secrets.get_sealed_key(state, name, h) is not None
        ]
        targets = []
        for target in secrets.compute_unsealed_hosts(state, name):
            refused = secrets.get_refused_sealers(state, name, target)
            sealers = sorted(h for h in holders if h not in refused)
            if sealers and sealers[height % len(sealers)] == node.node_id:
                targets.append(target)
        if targets:
            due.append((name, node.node_id, targets))
    return due


def reject_due(state: State, node_key: bytes) -> list[tuple[str, bytes, bytes]]:
    """(app, this node's id, key check) for each app it hosts with a key sealed to it: the
    keys `Duties` tries to open with the node's secret, rejecting (APP_SECRETS_REJECT) any
    that does not open or is not the app's, so that another host seals a good one."""
    node = get_node_by_key(state, node_key)
    load = None if node is None else placement.get_load(state, node.node_id)
    if node is None or load is None:
        return []
    out = []
    for name in sorted({app for app, _ in load.hosted}):
        sealed = secrets.get_sealed_key(state, name, node.node_id)
        if sealed is not None:
            out.append((name, node.node_id, sealed.key_check))
    return out


@dataclass(slots=True)
class DutyState:
    """What this process already sent, so a slow block doesn't make it send twice."""

    confirm_sent_window: int = -1
    confirm_sent_status_height: int = -1
    attest_sent_epoch: int = -1
    rejected: set[tuple[str, int]] = field(default_factory=set)  # (app, sealed key's height)


class Duties:
    """Runs the duties of one node after each committed block."""

    def __init__(
        self,
        key: SigningKey,
        params: Params,
        state: Callable[[], State],
        next_nonce: Callable[[bytes], int],
        submit: Callable[[bytes], Tx],
        benchmark: Callable[[], Awaitable[Benchmark]],
        *,
        probe: Callable[[str, HealthCheck], Awaitable[tuple[bool, int]]] | None = None,
        probe_hosts: ReportHosts = PUBLIC,
        unfit: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.key, self.params = key, params
        self._state, self._next_nonce, self._submit = state, next_nonce, submit
        self._benchmark = benchmark
        # Where this node's probes may go beside public addresses (`probe_health`).
        self._probe = probe or functools.partial(probe_health, hosts=probe_hosts)
        self._unfit = unfit  # why this node cannot host now (e.g. its agent is gone)
        self._sent = DutyState()
        self._busy = False

    def on_committed(self, height: int, *, attest: bool = True) -> None:
        """Schedule this block's duties; at most one round of duties runs at a time.

        `attest=False` at start-up: peers may not be serving yet, so probes wait for the
        first block this process sees committed."""
        if self._busy:
            return
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._run(height, attest))
        task.add_done_callback(lambda _: setattr(self, "_busy", False))

    async def _run(self, height: int, attest: bool) -> None:
        try:
            await self._confirm(height)
            self._reject_garbage()
            self._reseal(height)
            if attest:
                await self._attest()
        except Exception:  # a duty that fails is retried next block; it never stops the node
            log.exception("node duty failed height=%d", height)

    async def _confirm(self, height: int) -> None:
        node = confirm_due(self._state(), self.params, self.key.public_key, height)
        if node is None:
            return
        problem = self._unfit()
        if problem is not None:
            # Confirming a node that cannot run workloads would only win it instances it
            # then fails; it confirms once the problem is gone.
            log.info("confirm held back: %s", problem)
            return
        window = (height + 1) // self.params.confirm_window
        if (window, node.status_height) == (
            self._sent.confirm_sent_window,
            self._sent.confirm_sent_status_height,
        ):
            return
        bench = await self._benchmark()
        payload = NodeConfirm(node.node_id, bench, VERSION)
        if self._send(payload):
            self._sent.confirm_sent_window = window
            self._sent.confirm_sent_status_height = node.status_height
            log.info("confirm sent node=%s window=%d", node.node_id.hex()[:12], window)

    async def _attest(self) -> None:
        due = attest_due(self._state(), self.params, self.key.public_key)
        if due is None:
            return
        node, epoch, targets = due
        if epoch == self._sent.attest_sent_epoch:
            return
        state = self._state()
        nonces = health_nonces(state, self.params)
        probes = []
        for target in targets:
            target_node = get_node(state, target)
            endpoint = "" if target_node is None else target_node.endpoint
            key = b"" if target_node is None else target_node.node_key
            check = HealthCheck(self.params.chain_id, target, key, nonces)
            probes.append(self._probe_patiently(endpoint, check))
        results = await asyncio.gather(*probes)
        reports = tuple(
            UptimeReport(t, up, latency) for t, (up, latency) in zip(targets, results, strict=True)
        )
        if self._send(UptimeAttest(node.node_id, epoch, reports)):
            self._sent.attest_sent_epoch = epoch
            down = [r.target.hex()[:12] for r in reports if not r.up]
            log.info("attest sent epoch=%d targets=%d down=%s", epoch, len(reports), down or "-")

    async def _probe_patiently(self, endpoint: str, check: HealthCheck) -> tuple[bool, int]:
        up, latency = await self._probe(endpoint, check)
        for _ in range(PROBE_ATTEMPTS - 1):
            if up:
                break
            await asyncio.sleep(PROBE_RETRY_S)
            up, latency = await self._probe(endpoint, check)
        return up, latency

    def _reject_garbage(self) -> None:
        state = self._state()
        for name, node_id, check in reject_due(state, self.key.public_key):
            sealed = secrets.get_sealed_key(state, name, node_id)
            assert sealed is not None  # reject_due checked it
            try:
                open_sealed_key(self.key.secret, sealed.sealed, check)
                continue
            except SealingError as exc:
                reason = exc.message
            if (name, sealed.height) in self._sent.rejected:
                continue
            if self._send(AppSecretsReject(name, node_id, check)):
                self._sent.rejected.add((name, sealed.height))
                log.warning(
                    "event=secret_unsealable app=%s sealer=%s reason=%s (rejected)",
                    name,
                    sealed.sealer.hex()[:12] or "owner",
                    reason,
                )

    def _reseal(self, height: int) -> None:
        state = self._state()
        for name, node_id, targets in reseal_due(state, self.key.public_key, height):
            sealed = secrets.get_sealed_key(state, name, node_id)
            assert sealed is not None  # reseal_due checked it
            try:
                data_key = open_sealed_key(self.key.secret, sealed.sealed, sealed.key_check)
            except SealingError as exc:
                # sealed to us wrongly (garbage, or another key): we cannot pass it on; the
                # agent reports the same, and the owner re-seals (`flux-wallet app secrets`)
                log.warning("event=secret_unsealable app=%s reason=%s", name, exc.message)
                continue
            seals = []
            for target in targets:
                target_node = get_node(state, target)
                if target_node is not None:
                    seals.append(Seal(target, seal_key(target_node.node_key, data_key)))
            if seals and self._send(AppSecretsSeal(name, node_id, sealed.key_check, tuple(seals))):
                log.info("secrets sealed app=%s to=%d height=%d", name, len(seals), height)

    def _send(
        self, payload: NodeConfirm | UptimeAttest | AppSecretsSeal | AppSecretsReject
    ) -> bool:
        nonce = self._next_nonce(self.key.public_key)
        tx = Tx.create(self.key, self.params.chain_id, nonce, 0, payload)
        try:
            self._submit(tx.raw)
        except TxError as exc:
            log.warning(
                "duty tx refused kind=%s reason=%s %s", tx.kind.name, exc.reason, exc.message
            )
            return False
        return True


def probe_hosts(reports: ReportHosts, listen_host: str, advertise: str | None) -> ReportHosts:
    """Where a node's uptime probes may go beside public addresses: where it fetches
    reports from (its operator's `reports_from_*`: the local devnet's loopback, the docker
    devnet's private bridge, where nodes advertise nothing and probe each other by service
    name), and where it is itself (`LearnRule`'s reading of its own address: the WAN
    testnet on 10/8, a node advertising loopback), as for the addresses it learns from
    peers. A node on the default config (127.0.0.1, nothing advertised) probes no
    loopback endpoint."""
    where = LearnRule.of_node(listen_host, advertise)
    return ReportHosts(reports.loopback or where.loopback, reports.private or where.private)


async def probe_health(
    endpoint: str, check: HealthCheck, hosts: ReportHosts = PUBLIC
) -> tuple[bool, int]:
    """(up, latency_ms) of a node's `/health`, within PROBE_TIMEOUT_S.

    Up only when the answer says healthy and carries the proof `check` asks for: the
    target's node id and its node key's signature for an accepted epoch. Without it the
    checker cannot tell whose machine answered (an endpoint registered at another node's
    API, or at a checker's own), so the target is down; a contradicted down costs nothing.

    The endpoint is a stranger's choice, so it is judged as a report fetch's is
    (`app_reports.pin_endpoint`: `routable`, a name resolved once and its allowed IP
    dialed): never link-local, a cloud host service, unspecified or multicast; loopback
    and private only where `hosts` allows them. A refused endpoint is reported down with
    no connection: the checker could not probe it, and a contradicted down report costs
    it nothing (docs/state.md "Refused probes"), so a target registered there cannot
    punish its checkers. A redirect is never followed: a node's `/health` answers 200
    itself, and a 3xx is down. An answer past MAX_HEALTH_ANSWER bytes is down, not read
    further."""
    if not endpoint:
        return False, 0
    start = time.monotonic()
    pinned = await pin_endpoint(endpoint, hosts, PROBE_LOOKUPS, wait_s=None)
    if isinstance(pinned, str):
        log.debug("event=probe_refused endpoint=%s reason=%s", endpoint, pinned)
        return False, int((time.monotonic() - start) * 1000)
    base, host_header = pinned
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                f"{base}/health", allow_redirects=False, headers={"Host": host_header}
            ) as response,
        ):
            raw = await read_capped(response.content, MAX_HEALTH_ANSWER)
            body = None if raw is None else json.loads(raw)
            up = (
                response.status == 200
                and isinstance(body, dict)
                and body.get("healthy") is True
                and any(
                    health_proof_valid(
                        body.get(field), check.chain_id, check.node_id, check.node_key, check.nonces
                    )
                    for field in ("proof", "previous")
                )
            )
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError, RecursionError):
        up = False  # RecursionError: `[` nested past the parser's stack, within the cap
    return up, int((time.monotonic() - start) * 1000)


async def threaded_benchmark(directory: Path, bandwidth_mbit: int) -> Benchmark:
    """Run the benchmark off the event loop (it blocks for about half a second)."""
    return await asyncio.to_thread(run_benchmark, directory, bandwidth_mbit)
