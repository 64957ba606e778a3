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
- control: holds `GET /agent/control` (a websocket, the agent token) open; through it the
  node passes the owner requests it checked (logs, stats, restart, redeploy), and the
  agent runs each on the named app's own workloads only (`operate`).
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
from collections.abc import AsyncGenerator, Collection
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
    tree_usage,
)
from fluxchain.agent.volumes import VolumeKeeper
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
PULL_CHECK_S: Final = 0.5  # how often a new primary's pull is checked, so it starts soon
# the app's sealed secrets do not open on this node (no key sealed to it yet, garbage
# sealed by a lying host, a tampered ciphertext): held until a good key arrives
SECRET_UNSEALABLE: Final = "secret_unsealable"
# Why an owner's restart or redeploy of a workload is refused while the agent holds it:
# a standby of a replicated volume (its app runs on the primary: a second writer would
# corrupt it) and a new primary still pulling its copy (it would send an incomplete one).
STANDBY: Final = "standby"
VOLUME_PULLING: Final = "volume_pulling"
# An owner operation already running on the workload, or too many log follows of one app.
BUSY: Final = "busy"
# Live `logs --follow` streams per app: a few watchers of an app is what its owner needs;
# each costs a pump reading the log and up to the follow rate down the control channel,
# so their number is bounded as the follow rate bounds each one.
MAX_FOLLOWS_PER_APP: Final = 8


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

    async def chain_id(self) -> str:
        status, body = await self._get("/status")
        if status != 200:
            raise NodeUnreachableError(f"GET /status: {status}")
        return str(body["chain_id"])

    async def app(self, name: str) -> dict[str, Any] | None:
        """An app's confirmed placement (`/apps/{name}`); None when it is gone."""
        status, body = await self._get(f"/apps/{name}")
        if status == 404:
            return None
        if status != 200:
            raise NodeUnreachableError(f"GET /apps/{name}: {status}")
        return dict(body)

    async def node(self, node_id: str) -> dict[str, Any] | None:
        """A node's confirmed record (`/nodes/{id}`); None when it is unknown."""
        status, body = await self._get(f"/nodes/{node_id}")
        if status == 404:
            return None
        if status != 200:
            raise NodeUnreachableError(f"GET /nodes/{node_id}: {status}")
        return dict(body)

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

    def control_url(self) -> str:
        return f"{self.base_url}/agent/control"


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
        volumes: VolumeKeeper | None = None,
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
        # Owner operations: restarts and redeploys asked per workload, and the lock that
        # keeps one from racing a converge pass over the same workload.
        self.owner_restarts: dict[str, int] = {}
        self._runtime_lock = asyncio.Lock()
        # Workloads an owner operation is restarting now: a converge pass leaves them alone
        # (the lock above is held only to mark them, never across a pull or a stop, so one
        # app's slow registry never freezes the other apps of the host).
        self._operating: set[str] = set()
        self._follows: dict[str, int] = {}  # app -> live `logs --follow` streams
        self.volumes = volumes  # replicated volumes (None: this agent runs none)
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
                asyncio.create_task(self._control(api), name="control"),
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
                if self.volumes is not None:
                    await self.volumes.close()
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
            pulling = self.volumes is not None and self.volumes.pulling
            wait_s = min(self.tick_s, PULL_CHECK_S) if pulling else self.tick_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
            self._wake.clear()
            try:
                async with self._runtime_lock:
                    await self.converge(api)
            except NodeUnreachableError as exc:
                log.debug("node unreachable: %s", exc)
            except RuntimeUnavailableError as exc:
                self._runtime_failed("converge", str(exc))
            except FluxError as exc:  # a spec the core refuses: never expected from the chain
                log.error("cannot read assignments: %s", exc)
            except Exception as exc:  # no input may end the loop for good
                # Whatever one app's input did (a value a runtime chokes on), the other apps
                # of the host must still be started, restarted and moved here: the pass is
                # reported failed and the next one runs.
                log.exception("converge pass failed")
                self._runtime_failed("converge", f"converge pass failed: {type(exc).__name__}")

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
        # replicated volumes: standbys and primaries still pulling their data do not run
        waiting = (
            set()
            if self.volumes is None
            # a copy held past its quota gets no folder: nothing more is written into it
            else await self.volumes.gate(api, desired, observed, paused=self.held.keys())
        )
        now = time.monotonic()
        unsealable = {key for key, w in desired.items() if w.secrets_problem}
        held = self.held.keys() | waiting | unsealable
        # an owner operation restarting a workload now owns it until it ends
        operating = set(self._operating)
        todo = plan(
            {k: w for k, w in desired.items() if k not in operating},
            {k: seen for k, seen in observed.items() if k not in operating},
            self.restarts,
            now,
            held=held,
        )
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
        usage.update(await self._copy_usage(desired, usage.keys()))
        stopped = []
        for key, used in sorted(usage.items()):
            want = desired.get(key)
            if want is None or key in self.held or used <= want.disk_gb * GIB:
                continue
            if key in self._operating:  # an owner restart owns it now; the next check sees it
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

    async def _copy_usage(
        self, desired: dict[str, Workload], measured: Collection[str]
    ) -> dict[str, int]:
        """Bytes of the replicated copies of workloads the runtime did not measure: a
        standby (or a primary still pulling) never started, yet its Syncthing writes the
        primary's whole folder into its copy, on the disk this host shares."""
        usage: dict[str, int] = {}
        for key, w in sorted(desired.items()):
            if key in measured or not w.replicated_mounts:
                continue
            used = 0
            for mount in w.replicated_mounts:
                try:
                    path = self.runtime.volume_path(key, mount)
                except WorkloadError:
                    continue  # a mount the runtime refuses never gets a folder either
                used += await asyncio.to_thread(tree_usage, path)
            usage[key] = used
        return usage

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
            elif self.volumes is not None and key in self.volumes.standby:
                state, message = "standby", "its app runs on the primary; this host keeps a copy"
            elif self.volumes is not None and key in self.volumes.pulling:
                state = "starting"
                message = self.volumes.error or "pulling its replicated volumes before it starts"
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
                    "owner_restarts": self.owner_restarts.get(key, 0),
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
            "syncthing": None if self.volumes is None else self.volumes.device(),
        }

    # -- owner operations ------------------------------------------------------------------

    async def _control(self, api: NodeApi) -> None:
        """Hold the node's control channel; serve each command in a task of its own."""
        delay = 0.2
        headers = {"Authorization": f"Bearer {api.token}"}
        while True:
            tasks: dict[int, asyncio.Task[None]] = {}
            try:
                timeout = aiohttp.ClientWSTimeout(ws_close=HTTP_TIMEOUT_S)
                async with api.session.ws_connect(
                    api.control_url(), headers=headers, heartbeat=10, timeout=timeout
                ) as ws:
                    delay = 0.2
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            break
                        command = json.loads(message.data)
                        call_id = int(command["id"])
                        if command.get("cancel"):
                            task = tasks.pop(call_id, None)
                            if task is not None:
                                task.cancel()
                            continue
                        for finished in [i for i, t in tasks.items() if t.done()]:
                            del tasks[finished]
                        tasks[call_id] = asyncio.create_task(
                            self._serve_command(ws, call_id, command)
                        )
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as exc:
                log.debug("control channel: %s", exc)
            finally:
                for task in list(tasks.values()):
                    task.cancel()
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def _serve_command(
        self, ws: aiohttp.ClientWebSocketResponse, call_id: int, command: dict[str, Any]
    ) -> None:
        """Run one command; its items, then done (or the error), down the channel."""
        end: dict[str, Any] = {"id": call_id, "done": True}
        try:
            async with asyncio.timeout(max(0.0, float(command.get("timeout_s", 0)))):
                async for item in self.operate(command):
                    await ws.send_json({"id": call_id, "item": item})
        except OperateError as exc:
            end["error"] = {"reason": exc.reason, "message": exc.message}
        except TimeoutError:
            pass  # the request expired: the node has ended the call already
        except (WorkloadError, RuntimeUnavailableError) as exc:
            end["error"] = {"reason": "runtime_error", "message": str(exc)[:1000]}
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json(end)

    def _state_of(self, key: str) -> str:
        for w in self.report_body()["workloads"]:
            if f"{w['component']}_{w['app']}" == key:
                return str(w["state"])
        return "unknown"

    async def operate(self, command: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Carry out a command the node accepted from the app's owner, on that app's own
        workloads on this node (never another app's, whatever the command says)."""
        method, app = str(command["method"]), str(command["app"])
        instances = {int(i) for i in command["instances"]}
        targets = [
            w for _, w in sorted(self.desired.items()) if w.app == app and w.instance in instances
        ]
        if not targets:
            raise OperateError("not_hosted", "this agent runs no such instance of the app")
        if method == "logs" and bool(command["follow"]):
            async for item in self._follow_logs(app, targets, int(command["tail"])):
                yield item
        elif method == "logs":
            async for item in self._logs(targets, int(command["tail"]), False):
                yield item
        elif method == "stats":
            for w in targets:
                stats = await self.runtime.stats(w.key)
                yield {
                    "instance": w.instance,
                    "component": w.component,
                    "state": self._state_of(w.key),
                    **stats,
                }
        elif method in ("restart", "redeploy"):
            try:
                for w in targets:
                    yield await self._restart(w, method)
            finally:
                self._report_now.set()
        else:
            raise OperateError("bad_request", f"unknown method {method!r}")

    def _hold_of(self, w: Workload) -> tuple[str, str] | None:
        """(reason, message) when the agent holds `w` stopped, as the last converge pass
        decided (the same sources `report_body` shows): an owner operation never runs it."""
        if w.key in self.held:
            return DISK_QUOTA_EXCEEDED, self.held[w.key][1]
        if w.secrets_problem:
            return SECRET_UNSEALABLE, w.secrets_problem
        if self.volumes is not None and w.key in self.volumes.standby:
            return STANDBY, "a standby: its app runs on the primary, this host keeps a copy"
        if self.volumes is not None and w.key in self.volumes.pulling:
            return VOLUME_PULLING, "pulling its replicated volumes before it starts"
        return None

    async def _restart(self, w: Workload, method: str) -> dict[str, Any]:
        item: dict[str, Any] = {"instance": w.instance, "component": w.component}
        # Taken only to decide between converge passes, never across the runtime's work
        # (an image pull may last PULL_TIMEOUT_S): meanwhile passes skip this workload.
        async with self._runtime_lock:
            hold = self._hold_of(w)
            if hold is not None:
                return {**item, "error": {"reason": hold[0], "message": hold[1]}}
            if w.key in self._operating:
                message = "another restart or redeploy of it is running"
                return {**item, "error": {"reason": BUSY, "message": message}}
            self._operating.add(w.key)
        try:
            return await self._restart_unlocked(w, method, item)
        finally:
            self._operating.discard(w.key)

    async def _restart_unlocked(
        self, w: Workload, method: str, item: dict[str, Any]
    ) -> dict[str, Any]:
        log.info("owner %s of workload %s", method, w.key)
        try:
            await (self.runtime.redeploy(w) if method == "redeploy" else self.runtime.restart(w))
        except WorkloadError as exc:
            seen = (await self.runtime.observe()).get(w.key)
            if seen is not None and seen.running:  # failed before stopping it (a pull)
                return {**item, "error": {"reason": "not_restarted", "message": str(exc)[:1000]}}
            now = time.monotonic()
            self.start_errors[w.key] = str(exc)
            self.restarts.crashed(w.key, now, str(exc))
            return {**item, "error": {"reason": "start_failed", "message": str(exc)[:1000]}}
        self.start_errors.pop(w.key, None)
        self.restarts.started(w.key, time.monotonic())
        self.observed[w.key] = Observed(w.key, w.fingerprint, True)
        self.owner_restarts[w.key] = self.owner_restarts.get(w.key, 0) + 1
        return {**item, "done": method}

    async def _follow_logs(
        self, app: str, targets: list[Workload], tail: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        """`_logs` live, while fewer than MAX_FOLLOWS_PER_APP follows of the app are open
        (`busy` beyond: the follow rate bounds one stream, this their number)."""
        if self._follows.get(app, 0) >= MAX_FOLLOWS_PER_APP:
            raise OperateError(
                BUSY, f"{MAX_FOLLOWS_PER_APP} log follows of this app are open; end one first"
            )
        self._follows[app] = self._follows.get(app, 0) + 1
        try:
            async for item in self._logs(targets, tail, True):
                yield item
        finally:
            self._follows[app] -= 1
            if not self._follows[app]:
                del self._follows[app]

    async def _logs(
        self, targets: list[Workload], tail: int, follow: bool
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Each target's log, merged as chunks come (each chunk names its workload)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(LOG_QUEUE)

        async def pump(w: Workload) -> None:
            try:
                async for chunk in self.runtime.logs(w.key, tail, follow):
                    data = chunk.decode("utf-8", errors="replace")
                    await queue.put(
                        {"instance": w.instance, "component": w.component, "data": data}
                    )
            finally:
                await queue.put(None)

        pumps = [asyncio.create_task(pump(w)) for w in targets]
        try:
            running = len(pumps)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                    continue
                yield item
            for task in pumps:
                task.result()  # a pump's error (the runtime's) is the command's
        finally:
            for task in pumps:
                task.cancel()


LOG_QUEUE: Final = 16  # chunks waiting to go down the channel: the pumps wait beyond


class OperateError(Exception):
    """An owner command this agent refuses, with a stable reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


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
        opened = {where: value.decode() for where, value in values.items()}
    except UnicodeDecodeError:
        raise SealingError(Reason.BAD_FIELD, "a secret value is not UTF-8 text") from None
    except (KeyError, ValueError, TypeError, DecodeError) as exc:  # a malformed answer
        raise SealingError(Reason.BAD_FIELD, f"unreadable secrets: {exc}") from None
    # No environment variable, file or command line can hold a NUL (exec refuses it)
    for (_component, _kind, name), value in sorted(opened.items()):
        if "\x00" in value:
            raise SealingError(Reason.BAD_FIELD, f"the value of secret {name!r} holds a NUL")
    return opened
