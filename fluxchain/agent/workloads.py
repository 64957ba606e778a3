"""What the agent should run, what it sees running, and the plan that closes the gap.

Pure functions: `desired_workloads` turns the node's confirmed assignments (the API's
`/nodes/{key}/assignments`) into workloads, and `plan` compares them with what the
runtime reports and decides what to stop and what to start. Crashes are retried with
exponential backoff (`Restarts`), so a workload that dies at once cannot spin the host.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, NamedTuple

from fluxchain.core.appspec import AppSpec, Protocol, VolumeMode

BACKOFF_FIRST_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
STABLE_S: Final = 60.0  # running this long forgives earlier crashes


class PublishedPort(NamedTuple):
    """One port of a workload: `host` on the node forwards to `container` over `protocol`."""

    host: int
    container: int
    protocol: Protocol

    @property
    def transports(self) -> tuple[str, ...]:
        """The single protocols to publish: ("tcp",), ("udp",) or ("tcp", "udp")."""
        return tuple(
            single.label for single in (Protocol.TCP, Protocol.UDP) if self.protocol & single
        )


@dataclass(frozen=True, slots=True)
class Workload:
    """One component of one app instance, as the chain assigned it to this node."""

    key: str  # "<component>_<app>", unique on a node (Flux's container naming)
    app: str
    instance: int
    component: str
    image: str
    command: tuple[str, ...]
    environment: tuple[str, ...]  # "KEY=value"
    ports: tuple[PublishedPort, ...]
    data_path: str
    cpu_tenths: int
    ram_mb: int
    disk_gb: int
    # Every component of this app instance on the node, itself included, with its
    # published ports: what the runtime tells each component about the others
    # (runtime.component_env). Part of the fingerprint: an update that adds or moves a
    # component restarts the others with the new addresses.
    components: tuple[tuple[str, tuple[PublishedPort, ...]], ...] = ()
    # The spec's declared volumes besides data_path: (mount, "local" or "replicated").
    volumes: tuple[tuple[str, str], ...] = ()

    @property
    def replicated_mounts(self) -> tuple[str, ...]:
        """Mounts of its replicated volumes: while its app has any, it runs on the primary
        only (fluxchain/agent/volumes.py)."""
        return tuple(m for m, mode in self.volumes if mode == VolumeMode.REPLICATED.label)

    # Sealed secrets (docs/apps.md "Secrets"), decrypted by the agent: never shown, never
    # stored, never in the fingerprint (which runtimes keep on disk). `secrets_id` names
    # the ciphertexts instead, so new secrets restart the workload.
    secret_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    registry_auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secrets_id: str = ""
    # Why the app's secrets cannot be opened here ("" when they can or there are none):
    # the agent then holds the workload and reports `secret_unsealable`.
    secrets_problem: str = ""

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything the runtime applies changes (an app update)."""
        fields = [getattr(self, name) for name in self.__slots__ if name not in _UNPRINTED]
        if self.secrets_id:
            fields.append(self.secrets_id)
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


_UNPRINTED: Final = frozenset({"secret_env", "registry_auth", "secrets_id", "secrets_problem"})


@dataclass(frozen=True, slots=True)
class Observed:
    """A workload the runtime holds for this node, running or not."""

    key: str
    fingerprint: str
    running: bool
    exit_code: int | None = None
    detail: str = ""


def desired_workloads(assignments: list[dict[str, Any]]) -> dict[str, Workload]:
    """The workloads of every assigned app instance, keyed by `Workload.key`."""
    out: dict[str, Workload] = {}
    for item in assignments:
        if item.get("spec") is None:
            continue
        spec = AppSpec.from_json(item["spec"])
        for c in spec.components:
            key = f"{c.name}_{spec.name}"
            out[key] = Workload(
                key=key,
                app=spec.name,
                instance=int(item["instance"]),
                component=c.name,
                image=c.image,
                command=c.command,
                environment=c.environment,
                ports=tuple(PublishedPort(p.host, p.container, p.protocol) for p in c.ports),
                data_path=c.data_path,
                cpu_tenths=c.cpu,
                ram_mb=c.ram_mb,
                disk_gb=c.disk_gb,
                volumes=tuple((v.mount, v.mode.label) for v in c.volumes),
            )
        members = [w for w in out.values() if w.app == spec.name]
        components = tuple((w.component, w.ports) for w in members)
        for w in members:
            out[w.key] = replace(w, components=components)
    return out


@dataclass(slots=True)
class Restarts:
    """Crash bookkeeping per workload key: how often, and not before when."""

    count: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def crashed(self, key: str, now: float, why: str) -> None:
        n = self.count.get(key, 0) + 1
        self.count[key] = n
        self.not_before[key] = now + min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (n - 1))
        self.last_error[key] = why

    def started(self, key: str, now: float) -> None:
        self.started_at[key] = now

    def still_running(self, key: str, now: float) -> None:
        if now - self.started_at.get(key, now) >= STABLE_S:
            self.count.pop(key, None)
            self.last_error.pop(key, None)

    def forget(self, key: str) -> None:
        for table in (self.count, self.not_before, self.started_at, self.last_error):
            table.pop(key, None)


@dataclass(frozen=True, slots=True)
class Plan:
    """Stops first (keys, and whether the data stays), then starts."""

    stop: tuple[tuple[str, bool], ...]
    start: tuple[Workload, ...]


def plan(
    desired: Mapping[str, Workload],
    observed: Mapping[str, Observed],
    restarts: Restarts,
    now: float,
    held: Collection[str] = (),
) -> Plan:
    """Decide what to stop and start so the runtime converges on `desired`.

    `held` workloads (stopped by the disk watchdog) are assigned but must not run: one
    still running is stopped with its data kept, and none is started.
    """
    stop: list[tuple[str, bool]] = []
    start: list[Workload] = []
    for key, seen in sorted(observed.items()):
        want = desired.get(key)
        if key in held and want is not None:
            stop.append((key, True))
        elif want is None:
            stop.append((key, False))  # no longer assigned here: its data goes too
            restarts.forget(key)
        elif seen.fingerprint != want.fingerprint:
            stop.append((key, True))  # updated spec: replace, keep the data
            restarts.forget(key)
        elif not seen.running:
            why = "exited" if seen.exit_code is None else f"exited with {seen.exit_code}"
            restarts.crashed(key, now, f"{why} {seen.detail}".strip())
            stop.append((key, True))
        else:
            restarts.still_running(key, now)
    stopped = {key for key, _ in stop}
    for key, want in sorted(desired.items()):
        if key in held:
            continue
        present = key in observed and key not in stopped
        if not present and now >= restarts.not_before.get(key, 0.0):
            start.append(want)
    return Plan(tuple(stop), tuple(start))
