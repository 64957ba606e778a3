"""The node daemon: keeps this node's workloads converged with what the chain decided.

Three loops over the node's HTTP API, each surviving the node being down:
- follow: the websocket of confirmed blocks (`/ws?from=H`, resumed after the last height
  this agent handled); every block wakes the converger. Only confirmed blocks exist there,
  so the agent never acts on a block that could still change.
- converge: read the node's assignments from confirmed state, compare with what the
  runtime holds, stop what is no longer assigned, start what is missing, restart crashed
  workloads with backoff (`workloads.plan`). Also every TICK_S, to catch crashes.
- report: every HEARTBEAT_S, `POST /agent/report` with the runtime's health, capacity and
  every workload's state; the node's /health depends on it.
The converger also runs the disk watchdog every DISK_CHECK_S: a workload whose disk use
(its data, and for a container its writable layer) exceeds the spec's `disk_gb` is
stopped, its data kept, and held stopped (reported `failed`, reason
`disk_quota_exceeded`) until its spec changes or it is unassigned; holds survive an
agent restart. A quota is the hard bound where the runtime has one; this catches the
rest within one check interval.
Stopping the agent leaves the workloads running; a restarted agent adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import aiohttp

from fluxchain.agent.runtime import (
    GIB,
    Capacity,
    Runtime,
    RuntimeUnavailableError,
    WorkloadError,
    quota_message,
)
from fluxchain.agent.workloads import Observed, Restarts, Workload, desired_workloads, plan
from fluxchain.core import secrets
from fluxchain.core.errors import DecodeError, FluxError, Reason
from fluxchain.core.sealing import SealingError, open_sealed_key
from fluxchain.core.tx import SecretKind

log = logging.getLogger("fluxchain.agent")

TICK_S: Final = 2.0
HEARTBEAT_S: Final = 1.0
CAPACITY_EVERY_S: Final = 30.0
RECONNECT_MAX_S: Final = 5.0
REPLAY_MAX: Final = 1_000  # after a long absence, skip replaying old blocks: state is read fresh
HTTP_TIMEOUT_S: Final = 5.0
# A writer at disk speed (~1 GB/s) overshoots its quota by at most this many seconds of
# writing before it is stopped; measuring costs one walk of its files (or one `docker
# system df`) per interval.
DISK_CHECK_S: Final = 10.0
DISK_QUOTA_EXCEEDED: Final = "disk_quota_exceeded"
# the app's sealed secrets do not open on this node (no key sealed to it yet, garbage
# sealed by a lying host, a tampered ciphertext): held until a good key arrives
SECRET_UNSEALABLE: Final = "secret_unsealable"


class NodeUnreachableError(Exception):
    """The node's API did not answer (it may be restarting); the agent retries."""


class NodeApi:
    """The few calls the agent makes to its node."""

    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.base_url, self.token, self.session = base_url.rstrip("/"), token, session

    async def _get(self, path: str) -> tuple[int, Any]:
        try:
            async with self.session.get(self.base_url + path) as response:
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise NodeUnreachableError(f"GET {path}: {exc}") from None

    async def height(self) -> int:
        status, body = await self._get("/status")
        if status != 200:
            raise NodeUnreachableError(f"GET /status: {status}")
        return int(body["height"])

    async def assignments(self, node_key: str) -> tuple[int, list[dict[str, Any]]]:
        """(height, assignments) from confirmed state; none while the node is unregistered."""
        status, body = await self._get(f"/nodes/{node_key}/assignments")
        if status == 404:
            return await self.height(), []
        if status != 200:
            raise NodeUnreachableError(f"GET assignments: {status} {body}")
        return int(body["height"]), list(body["assignments"])

    async def report(self, body: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with self.session.post(
                self.base_url + "/agent/report", json=body, headers=headers
            ) as response:
                if response.status != 200:
                    text = await response.text()
                    raise NodeUnreachableError(f"report refused: {response.status} {text[:200]}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeUnreachableError(f"POST /agent/report: {exc}") from None

    async def node_id(self, node_key: str) -> bytes | None:
        """This node's id, once it is registered."""
        status, body = await self._get(f"/nodes/{node_key}")
        if status == 404:
            return None
        if status != 200:
            raise NodeUnreachableError(f"GET node: {status}")
        return bytes.fromhex(body["node_id"])

    async def app_secrets(self, name: str) -> dict[str, Any] | None:
        """The app's sealed secrets (`GET /apps/{name}/secrets`), None if it has none."""
        status, body = await self._get(f"/apps/{name}/secrets")
        if status == 404:
            return None
        if status != 200:
            raise NodeUnreachableError(f"GET secrets: {status}")
        return dict(body)

    def stream_url(self, start: int) -> str:
        return f"{self.base_url}/ws" + (f"?from={start}" if start else "")


class Agent:
    """One node's daemon. `run()` until `stop` is set."""

    def __init__(
        self,
        api_url: str,
        token: str,
        node_key: str,
        runtime: Runtime,
        state_file: Path,
        bind: str,
        *,
        tick_s: float = TICK_S,
        heartbeat_s: float = HEARTBEAT_S,
        disk_check_s: float = DISK_CHECK_S,
        node_secret: bytes | None = None,
    ) -> None:
        self.api_url, self.token, self.node_key = api_url, token, node_key
        self.runtime, self.state_file, self.bind = runtime, state_file, bind
        self.tick_s, self.heartbeat_s, self.disk_check_s = tick_s, heartbeat_s, disk_check_s
        # Workloads the disk watchdog stopped: key -> (fingerprint of the spec, message).
        self.held: dict[str, tuple[str, str]] = {}
        self.height = self._load_height()  # last confirmed height converged to
        self._disk_checked_at = 0.0
        self.seen_height = self.height
        self.desired: dict[str, Workload] = {}
        self.observed: dict[str, Observed] = {}
        self.start_errors: dict[str, str] = {}
        self.restarts = Restarts()
        # Why the runtime cannot work now, from its own check and from the last converge
        # pass; each source clears only its own when it succeeds again.
        self.errors = {"check": "", "converge": ""}
        self._capacity: Capacity | None = None
        self._capacity_at = 0.0
        self._wake = asyncio.Event()
        self._report_now = asyncio.Event()  # set after a change, so the node learns at once
        # The node key's secret opens the app keys sealed to this node (docs/apps.md
        # "Secrets"); without it, apps with secrets are held and reported unsealable.
        self._node_secret = node_secret
        self._node_id: bytes | None = None
        self._secret_problems: dict[str, str] = {}  # app -> why its secrets do not open

    # -- persistence ---------------------------------------------------------------------

    def _load_height(self) -> int:
        """The saved height (and the disk watchdog's holds, which live beside it)."""
        try:
            saved = json.loads(self.state_file.read_text())
            height = int(saved["height"])
            self.held = {
                str(k): (str(v[0]), str(v[1])) for k, v in dict(saved.get("held", {})).items()
            }
            return height
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            log.warning("agent state %s unreadable; starting from the live stream", self.state_file)
            return 0

    def _save_height(self) -> None:
        held = {key: list(value) for key, value in sorted(self.held.items())}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"height": self.height, "held": held}))
        os.replace(tmp, self.state_file)

    # -- loops ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            api = NodeApi(self.api_url, self.token, session)
            tasks = [
                asyncio.create_task(self._follow(api), name="follow"),
                asyncio.create_task(self._converge_loop(api), name="converge"),
                asyncio.create_task(self._report_loop(api), name="report"),
            ]
            log.info(
                "agent started runtime=%s node=%s api=%s resume_height=%d",
                self.runtime.name,
                self.node_key[:16],
                self.api_url,
                self.height,
            )
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await self.runtime.close()
                log.info("agent stopped height=%d (workloads keep running)", self.height)

    async def _follow(self, api: NodeApi) -> None:
        delay = 0.2
        while True:
            try:
                start = self.seen_height + 1 if self.seen_height else 0
                with contextlib.suppress(NodeUnreachableError):
                    if start and await api.height() - start > REPLAY_MAX:
                        start = 0
                timeout = aiohttp.ClientWSTimeout(ws_close=HTTP_TIMEOUT_S)
                async with api.session.ws_connect(
                    api.stream_url(start), heartbeat=10, timeout=timeout
                ) as ws:
                    delay = 0.2
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            break
                        block = json.loads(message.data)
                        self.seen_height = int(block["height"])
                        self._wake.set()
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as exc:
                log.debug("block stream: %s", exc)
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def _converge_loop(self, api: NodeApi) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            self._wake.clear()
            try:
                await self.converge(api)
            except NodeUnreachableError as exc:
                log.debug("node unreachable: %s", exc)
            except RuntimeUnavailableError as exc:
                self._runtime_failed("converge", str(exc))
            except FluxError as exc:  # a spec the core refuses: never expected from the chain
                log.error("cannot read assignments: %s", exc)

    def _runtime_failed(self, source: str, error: str) -> None:
        if error != self.errors[source]:
            log.error("runtime unavailable: %s", error)
        self.errors[source] = error

    async def converge(self, api: NodeApi) -> None:
        """One pass: read the assignments, then stop and start until the runtime matches."""
        height, assignments = await api.assignments(self.node_key)
        desired = await self.open_secrets(api, desired_workloads(assignments))
        await self.release_holds(desired)
        observed = await self.runtime.observe()
        now = time.monotonic()
        unsealable = {key for key, w in desired.items() if w.secrets_problem}
        todo = plan(desired, observed, self.restarts, now, held=self.held.keys() | unsealable)
        for key, keep_data in todo.stop:
            why = "unassigned" if key not in desired else "replaced or exited"
            log.info("stopping workload %s (%s)", key, why)
            await self.runtime.remove(key, keep_data=keep_data)
            observed.pop(key, None)
        for workload in todo.start:
            try:
                await self.runtime.start(workload)
            except WorkloadError as exc:
                log.warning("workload %s failed to start: %s", workload.key, exc)
                self.start_errors[workload.key] = str(exc)
                self.restarts.crashed(workload.key, now, str(exc))
                continue
            self.start_errors.pop(workload.key, None)
            self.restarts.started(workload.key, now)
            observed[workload.key] = Observed(workload.key, workload.fingerprint, True)
            log.info(
                "started workload %s app=%s instance=%d height=%d",
                workload.key,
                workload.app,
                workload.instance,
                height,
            )
        if todo.stop or todo.start or desired.keys() != self.desired.keys():
            self._report_now.set()
        self.desired, self.observed = desired, observed
        self.errors["converge"] = ""
        if height != self.height:
            self.height = height
            self.seen_height = max(self.seen_height, height)
            self._save_height()
        if now - self._disk_checked_at >= self.disk_check_s:
            self._disk_checked_at = now
            await self.enforce_disk_quotas(desired)

    async def open_secrets(self, api: NodeApi, desired: dict[str, Workload]) -> dict[str, Workload]:
        """Give the workloads of apps with sealed secrets their values, decrypted here in
        memory; a workload whose secrets do not open gets `secrets_problem` instead."""
        out = dict(desired)
        for app in sorted({w.app for w in desired.values()}):
            view = await api.app_secrets(app)
            if view is None:
                continue
            secrets_id = (
                view["key_check"]
                + hashlib.sha256(json.dumps(view["secrets"]).encode()).hexdigest()[:16]
            )
            try:
                values = await self._unseal(api, app, view)
                problem = ""
            except SealingError as exc:
                values, problem = {}, exc.message
            if problem != self._secret_problems.get(app):  # once per change, not per pass
                if problem:
                    log.warning("event=%s app=%s reason=%s", SECRET_UNSEALABLE, app, problem)
                else:
                    log.info("secrets opened app=%s", app)
            self._secret_problems[app] = problem
            for key, w in desired.items():
                if w.app != app:
                    continue
                env = tuple(
                    sorted(
                        (n, v)
                        for (c, k, n), v in values.items()
                        if c == w.component and k is SecretKind.ENV
                    )
                )
                auth = tuple(
                    sorted(
                        (n, v)
                        for (c, k, n), v in values.items()
                        if c == w.component and k is SecretKind.REGISTRY_AUTH
                    )
                )
                out[key] = replace(
                    w,
                    secret_env=env,
                    registry_auth=auth,
                    secrets_id=secrets_id,
                    secrets_problem=problem,
                )
        return out

    async def _unseal(
        self, api: NodeApi, app: str, view: dict[str, Any]
    ) -> dict[tuple[str, SecretKind, str], str]:
        if self._node_id is None:
            self._node_id = await api.node_id(self.node_key)
        return open_app_secrets(self._node_secret, self._node_id, view, app)

    async def release_holds(self, desired: dict[str, Workload]) -> None:
        """A held workload whose spec changed may run again; an unassigned one goes, data
        and all (the runtime no longer lists it, so the plan would not remove it)."""
        for key, (fingerprint, _message) in sorted(self.held.items()):
            want = desired.get(key)
            if want is None:
                await self.runtime.remove(key, keep_data=False)
            elif want.fingerprint == fingerprint:
                continue
            del self.held[key]
            self._save_height()

    async def enforce_disk_quotas(self, desired: dict[str, Workload]) -> list[str]:
        """The disk watchdog: stop and hold every workload using more disk than its spec's
        `disk_gb`; return their keys."""
        try:
            usage = await self.runtime.disk_usage()
        except WorkloadError as exc:
            log.warning("disk usage unavailable: %s", exc)
            return []
        stopped = []
        for key, used in sorted(usage.items()):
            want = desired.get(key)
            if want is None or key in self.held or used <= want.disk_gb * GIB:
                continue
            message = quota_message(used, want.disk_gb)
            log.warning("event=%s workload=%s %s", DISK_QUOTA_EXCEEDED, key, message)
            await self.runtime.remove(key, keep_data=True)
            self.observed.pop(key, None)
            self.restarts.forget(key)
            self.held[key] = (want.fingerprint, message)
            stopped.append(key)
        if stopped:
            self._save_height()
            self._report_now.set()
        return stopped

    async def _report_loop(self, api: NodeApi) -> None:
        while True:
            try:
                await self._report(api)
            except NodeUnreachableError as exc:
                log.debug("report not delivered: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_now.wait(), self.heartbeat_s)
            self._report_now.clear()

    async def _report(self, api: NodeApi) -> None:
        try:
            await self.runtime.check()
            if self._capacity is None or time.monotonic() - self._capacity_at > CAPACITY_EVERY_S:
                self._capacity = await self.runtime.capacity()
                self._capacity_at = time.monotonic()
            self.errors["check"] = ""
        except RuntimeUnavailableError as exc:
            self._runtime_failed("check", str(exc))
        except Exception as exc:  # capacity figures from an engine mid-failure
            self._runtime_failed("check", f"{type(exc).__name__}: {exc}")
        await api.report(self.report_body())

    def report_body(self) -> dict[str, Any]:
        """The heartbeat: runtime health, capacity, and the state of every workload."""
        now = time.monotonic()
        workloads = []
        for key, w in sorted(self.desired.items()):
            seen = self.observed.get(key)
            message = reason = ""
            if key in self.held:
                state, reason, message = "failed", DISK_QUOTA_EXCEEDED, self.held[key][1]
            elif w.secrets_problem:
                state, reason, message = "failed", SECRET_UNSEALABLE, w.secrets_problem
            elif seen is not None and seen.running:
                state = "running"
            elif key in self.start_errors:
                state, message = "failed", self.start_errors[key]
            elif self.restarts.not_before.get(key, 0.0) > now:
                state, message = "backoff", self.restarts.last_error.get(key, "")
            else:
                state = "starting"
            workloads.append(
                {
                    "app": w.app,
                    "instance": w.instance,
                    "component": w.component,
                    "state": state,
                    "restarts": self.restarts.count.get(key, 0),
                    "ports": [f"{self.bind}:{p.host}" for p in w.ports],
                    "message": message[:1000],
                    "reason": reason,
                }
            )
        cap = self._capacity
        return {
            "runtime": self.runtime.name,
            "runtime_ok": not any(self.errors.values()),
            "error": "; ".join(e for e in self.errors.values() if e)[:1000],
            "height": self.height,
            "capacity": None
            if cap is None
            else {"cores": cap.cores, "ram_mb": cap.ram_mb, "disk_gb": cap.disk_gb},
            "workloads": workloads,
        }


def open_app_secrets(
    node_secret: bytes | None, node_id: bytes | None, view: dict[str, Any], app: str
) -> dict[tuple[str, SecretKind, str], str]:
    """The values of an app's secrets (`GET /apps/{name}/secrets` answer `view`), opened
    with the key sealed to this node; SealingError, with the reason the agent reports as
    `secret_unsealable`, when they cannot be: no key sealed here yet, a key that does not
    open or is not the app's (garbage sealed by a lying host), a tampered ciphertext."""
    if node_secret is None:
        raise SealingError(Reason.BAD_FIELD, "this agent has no node key to unseal with")
    sealed = view["sealed"].get(node_id.hex()) if node_id else None
    if sealed is None:
        raise SealingError(
            Reason.BAD_FIELD, "no key is sealed to this node yet (a host or the owner seals it)"
        )
    try:
        secret_set = secrets.secret_set_from_view(view)
        data_key = open_sealed_key(
            node_secret, bytes.fromhex(sealed["sealed"]), secret_set.key_check
        )
        values = secrets.open_secrets(secret_set, data_key, str(view["chain_id"]), app)
        return {where: value.decode() for where, value in values.items()}
    except UnicodeDecodeError:
        raise SealingError(Reason.BAD_FIELD, "a secret value is not UTF-8 text") from None
    except (KeyError, ValueError, TypeError, DecodeError) as exc:  # a malformed answer
        raise SealingError(Reason.BAD_FIELD, f"unreadable secrets: {exc}") from None
