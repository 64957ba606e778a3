"""The routing table: a pure function from confirmed chain facts and agent reports.

A route to (app, instance) on node N exists only when all of these hold:

1. confirmed state places that instance on N (read from the node the gateway follows);
2. N's own agent, asked at N's registered endpoint, reports the workload `running`;
3. the address it reports for the port is on N's registered endpoint host and is the
   port the spec publishes. So a node can only ever point the gateway at itself, at a
   port the chain knows, for an instance the chain gave it: it cannot take another app's
   name, nor send the gateway's traffic to a third host.

Names are first come, first served by (registration height, app name): `<app>.<domain>`
for every app, then the spec's own domains (which the chain gives one app at a time). A TCP
or UDP listen port goes to the app that has published it longest (`port_since` of /apps,
kept across updates, then registration height and name): an update cannot take a port
another app holds. A spec domain under the gateway's domain is only honoured under the
app's own name there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from fluxchain.core.appspec.diagnostics import app_name_problem, domain_problem
from fluxchain.gateway.specports import PortSpec, SpecShapeError, Transport, ports_of
from p2p.netgroup import routable, unwrapped

# A route target must never inject text into HAProxy's config: names and domains are
# checked again here, whatever the node that served them says, by the chain's own rules
# (core/appspec), so the gateway routes every name the chain admits and nothing else.
# The gateway's own domain (the operator's `--domain`; `apps.localhost` on a devnet, which
# no spec may name): DNS labels, a TLD of letters or in punycode.
DOMAIN: Final = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})"
)
HOST: Final = re.compile(r"[A-Za-z0-9.:-]{1,253}")
# ASCII digits only: `str.isdigit` admits '²' and 5,000-digit strings, which `int` refuses
PORT: Final = re.compile(r"[0-9]{1,5}")
MAX_INSTANCE: Final = 1 << 32  # an instance index of a report, far above any app's count
# What one report can make the gateway write (log lines, status.json): a refusal's detail
# and app are cut to these lengths, a node's unplaced workloads are listed up to
# MAX_UNPLACED_LISTED and counted beyond, and a table lists at most MAX_REFUSALS refusals.
MAX_DETAIL: Final = 200
MAX_REFUSAL_APP: Final = 64
MAX_UNPLACED_LISTED: Final = 8
MAX_REFUSALS: Final = 200
SLOT_HEADROOM: Final = 2  # spare server slots per backend beyond the app's instance count


class Refused(StrEnum):
    """Why a report, a name or a port was not routed (logged and shown by the gateway)."""

    NOT_PLACED = "not_placed"  # a node reports an instance the chain did not place there
    FOREIGN_HOST = "foreign_host"  # the reported address is not on the node's endpoint host
    WRONG_PORT = "wrong_port"  # the reported port is not the one the spec publishes
    BAD_ADDRESS = "bad_address"  # not host:port, or a host name the gateway did not pin
    # loopback (without --loopback-is-one-host), unspecified, link-local or multicast: the
    # gateway's own machine or network, never a hosting node
    UNROUTABLE_HOST = "unroutable_host"
    DOMAIN_UNDER_GATEWAY = "domain_under_gateway"  # `x.<domain>` claimed by an app not named x
    DOMAIN_TAKEN = "domain_taken"
    BAD_DOMAIN = "bad_domain"
    TCP_PORT_TAKEN = "tcp_port_taken"
    # something else on the gateway's machine listens on it: HAProxy could not bind it
    TCP_PORT_UNAVAILABLE = "tcp_port_unavailable"
    UDP_PORT_TAKEN = "udp_port_taken"
    BAD_SPEC = "bad_spec"
    NOT_LISTED = "not_listed"  # refusals beyond MAX_REFUSALS: counted in one


@dataclass(frozen=True, slots=True)
class Placed:
    """One instance of an app that confirmed state places on a node."""

    index: int
    node_id: str
    endpoint: str  # the node's registered endpoint, host:port (where its API answers)

    @property
    def endpoint_host(self) -> str:
        return endpoint_host(self.endpoint)


@dataclass(frozen=True, slots=True)
class PlacedApp:
    name: str
    registered_height: int
    wanted: int
    ports: tuple[PortSpec, ...]
    instances: tuple[Placed, ...]
    # The spec domains the chain says this app owns (`domains` of /apps): an app kept past
    # its expiry by a backlog may have lost one to a newer app. None: the node did not say.
    owned_domains: frozenset[str] | None = None
    # (host port, "tcp"|"udp") -> the height since which the app publishes it
    port_since: Mapping[tuple[int, str], int] | None = None

    def since(self, port: int, protocol: str) -> int:
        """Since when it publishes `port` over `protocol` (its registration if unknown)."""
        if self.port_since is None:
            return self.registered_height
        return self.port_since.get((port, protocol), self.registered_height)


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload as a node's agent reports it (`GET /agent`)."""

    app: str
    instance: int
    component: str
    state: str
    ports: tuple[str, ...]  # host:port, in the component's port order


@dataclass(frozen=True, slots=True)
class Server:
    host: str
    port: int
    node_id: str
    instance: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    app: str
    mode: str  # "http" or "tcp" (HAProxy), or "udp" (the gateway's own relay)
    slots: int
    servers: tuple[Server, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Refused
    app: str
    detail: str


@dataclass(frozen=True, slots=True)
class RouteTable:
    backends: tuple[Backend, ...]
    hosts: tuple[tuple[str, str], ...]  # (host name, backend), sorted
    tcp_ports: tuple[tuple[int, str], ...]  # (listen port, backend), sorted
    udp_ports: tuple[tuple[int, str], ...]  # (listen port, backend), sorted: relayed
    refusals: tuple[Refusal, ...]

    def shape(self) -> tuple[Any, ...]:
        """What an HAProxy reload must change: everything of HAProxy's but the servers."""
        backends = tuple((b.name, b.mode, b.slots) for b in self.proxied())
        return backends, self.hosts, self.tcp_ports

    def proxied(self) -> tuple[Backend, ...]:
        """The backends HAProxy serves (UDP ones are relayed by the gateway)."""
        return tuple(b for b in self.backends if b.mode != "udp")

    def servers(self) -> dict[str, tuple[Server, ...]]:
        return {b.name: b.servers for b in self.backends}


EMPTY: Final = RouteTable((), (), (), (), ())


def without_tcp_ports(table: RouteTable, ports: Mapping[int, str]) -> RouteTable:
    """`table` without the TCP listen ports of `ports` (port -> why), each refused
    `tcp_port_unavailable`: a backend left with no port or host name is dropped."""
    if not ports:
        return table
    tcp = tuple((p, b) for p, b in table.tcp_ports if p not in ports)
    app_of = {b.name: b.app for b in table.backends}
    refusals = tuple(
        Refusal(Refused.TCP_PORT_UNAVAILABLE, app_of.get(b, "?"), f"{p}: {ports[p]}")
        for p, b in table.tcp_ports
        if p in ports
    )
    used = {b for _, b in table.hosts} | {b for _, b in tcp} | {b for _, b in table.udp_ports}
    return RouteTable(
        tuple(b for b in table.backends if b.name in used),
        table.hosts,
        tcp,
        table.udp_ports,
        table.refusals + refusals,
    )


# -- reading the API's JSON ------------------------------------------------------------------


def placed_app_from_json(obj: Any) -> PlacedApp:
    """An entry of the node's `GET /apps` (or `/apps/{name}`); SpecShapeError if malformed."""
    try:
        name = obj["name"]
        if not isinstance(name, str) or app_name_problem(name) is not None:
            raise SpecShapeError(f"app name {name!r}")
        instances = tuple(
            Placed(int(i["index"]), str(i["node_id"]), str(i.get("endpoint", "")))
            for i in obj["instances"]
        )
        return PlacedApp(
            name,
            int(obj["registered_height"]),
            int(obj["wanted"]),
            tuple(ports_of(obj["spec"])),
            instances,
            _owned_domains(obj.get("domains")),
            _port_since(obj.get("port_since")),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # Overflow: Infinity
        raise SpecShapeError(f"app entry: {str(exc)[:MAX_DETAIL]}") from None


def _owned_domains(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise SpecShapeError("domains is not a list of names")
    return frozenset(d.lower() for d in value)


def _port_since(value: Any) -> dict[tuple[int, str], int] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise SpecShapeError("port_since is not a list")
    return {(int(p["port"]), str(p["protocol"])): int(p["since"]) for p in value}


def workloads_from_json(obj: Any) -> list[Workload]:
    """The workloads of an agent report (`GET /agent`); malformed entries are dropped."""
    out = []
    items = obj.get("workloads", []) if isinstance(obj, dict) else []
    for w in items if isinstance(items, list) else []:
        try:
            ports = tuple(str(p) for p in w["ports"])
            out.append(
                Workload(
                    str(w["app"]),
                    _instance(w["instance"]),
                    str(w["component"]),
                    str(w["state"]),
                    ports,
                )
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
    return out


def _instance(value: Any) -> int:
    """An instance index of a report: a JSON integer in range (no float, bool, Infinity)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_INSTANCE:
        raise ValueError(f"instance {str(value)[:20]!r}")
    return value


def endpoint_host(endpoint: str) -> str:
    """The host of a registered `host:port` endpoint ("" when there is none)."""
    host, sep, _ = endpoint.rpartition(":")
    return host.strip("[]").lower() if sep else ""


def split_address(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not HOST.fullmatch(host) or not PORT.fullmatch(port) or not 0 < int(port) < 65536:
        return None
    return host.lower(), int(port)


def same_host(endpoint: str, reported: str, *, loopback_is_one_host: bool) -> bool:
    """Is `reported` the node's own host? Equal names, or (when allowed) both loopback.

    The loopback exception is for devnets on one machine, where each node's apps publish
    on their own 127.0.1.x while every API is on 127.0.0.1: all of it is one host, the
    gateway's own (docs/ingress.md)."""
    if endpoint and endpoint == reported:
        return True
    if not loopback_is_one_host:
        return False
    return _is_loopback(endpoint) and _is_loopback(reported)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return unwrapped(ipaddress.ip_address(host)).is_loopback
    except ValueError:
        return False


# -- the table -------------------------------------------------------------------------------


def backend_name(app: str, port: PortSpec, udp: bool = False) -> str:
    return f"app_{app}_{port.component}_{port.index}" + ("_udp" if udp else "")


def build_table(
    apps: Iterable[PlacedApp],
    reports: Mapping[str, Sequence[Workload]],
    domain: str,
    *,
    loopback_is_one_host: bool = False,
    private_is_routable: bool = True,
    reserved_ports: frozenset[int] = frozenset(),
    pinned: Mapping[str, str] | None = None,
) -> RouteTable:
    """The routes of confirmed placement, gated by each host's own agent report.

    `reports` maps a node id to its agent's workloads; a node missing from it has no routes.
    `reserved_ports` are the gateway's own listen ports, never given to an app. `pinned`
    maps an endpoint's host name to the IP address the gateway resolved it to once (and
    read its report at): a server is always an IP literal, never a name HAProxy resolves."""
    pins = pinned or {}
    allowed = _Allowed(loopback_is_one_host, private_is_routable)
    ordered = sorted(apps, key=lambda a: (a.registered_height, a.name))
    refusals = _unplaced_reports(ordered, reports)
    holders = _port_holders(ordered, reserved_ports)
    backends: dict[str, Backend] = {}
    tcp: dict[int, str] = {}
    udp: dict[int, str] = {}
    http_ports: list[tuple[PlacedApp, PortSpec]] = []
    for app in ordered:
        for port in app.ports:
            if port.transport is not Transport.TCP:  # udp or both: relayed by port
                if holders.get((port.host_port, "udp")) != (app.name, port):
                    refusals.append(refusal(Refused.UDP_PORT_TAKEN, app.name, str(port.host_port)))
                else:
                    name = backend_name(app.name, port, udp=True)
                    udp[port.host_port] = name
                    # a port that is also TCP reports its refusals once, below
                    noted = refusals if port.transport is Transport.UDP else []
                    servers = tuple(_servers(app, port, reports, allowed, pins, noted))
                    backends[name] = Backend(name, app.name, "udp", app.wanted, servers)
                if port.transport is Transport.UDP:
                    continue
            is_http = port == app.ports[0] or bool(port.domains)
            name = backend_name(app.name, port)
            if is_http:
                http_ports.append((app, port))
            elif holders.get((port.host_port, "tcp")) != (app.name, port):
                refusals.append(refusal(Refused.TCP_PORT_TAKEN, app.name, str(port.host_port)))
                continue
            else:
                tcp[port.host_port] = name
            servers = tuple(_servers(app, port, reports, allowed, pins, refusals))
            mode = "http" if is_http else "tcp"
            backends[name] = Backend(name, app.name, mode, app.wanted + SLOT_HEADROOM, servers)
    hosts = _host_names(http_ports, domain, refusals)
    used = set(hosts.values()) | set(tcp.values()) | set(udp.values())
    return RouteTable(
        tuple(backends[n] for n in sorted(backends) if n in used),
        tuple(sorted(hosts.items())),
        tuple(sorted(tcp.items())),
        tuple(sorted(udp.items())),
        bounded(refusals),
    )


def _port_holders(
    apps: Sequence[PlacedApp], reserved_ports: frozenset[int]
) -> dict[tuple[int, str], tuple[str, PortSpec]]:
    """(listen port, protocol) -> the (app, port) it goes to: the one published longest,
    then by registration height and name (`apps` is in that order). HTTP ports (an app's
    first, or one with domains) are routed by host name, not by listen port."""
    best: dict[tuple[int, str], tuple[int, str, PortSpec]] = {}
    for app in apps:
        for port in app.ports:
            wanted = []
            if port.transport is not Transport.TCP:
                wanted.append("udp")
            is_http = port == app.ports[0] or bool(port.domains)
            if port.transport is not Transport.UDP and not is_http:
                if port.host_port in reserved_ports:
                    continue
                wanted.append("tcp")
            for protocol in wanted:
                key = (port.host_port, protocol)
                since = app.since(port.host_port, protocol)
                if key not in best or since < best[key][0]:  # ties: the earlier app
                    best[key] = (since, app.name, port)
    return {key: (name, port) for key, (_, name, port) in best.items()}


@dataclass(frozen=True, slots=True)
class _Allowed:
    """The operator's choices of what a server may be (`routable`)."""

    loopback_is_one_host: bool
    private_is_routable: bool


def _unplaced_reports(
    apps: Sequence[PlacedApp], reports: Mapping[str, Sequence[Workload]]
) -> list[Refusal]:
    """Workloads a node reports for an instance the chain did not place on it: ignored."""
    placed_on = {(a.name, p.index, p.node_id) for a in apps for p in a.instances}
    out = []
    for node_id, workloads in sorted(reports.items()):
        unplaced = [w for w in workloads if (w.app, w.instance, node_id) not in placed_on]
        out += [
            refusal(Refused.NOT_PLACED, w.app, f"node {node_id} instance {w.instance}")
            for w in unplaced[:MAX_UNPLACED_LISTED]
        ]
        if len(unplaced) > MAX_UNPLACED_LISTED:  # counted, not listed: bounded output
            more = len(unplaced) - MAX_UNPLACED_LISTED
            out.append(refusal(Refused.NOT_PLACED, "?", f"node {node_id}: {more} more workloads"))
    return out


def refusal(reason: Refused, app: str, detail: str) -> Refusal:
    """A refusal with its app and detail cut short: both may carry a node's text."""
    if len(app) > MAX_REFUSAL_APP:
        app = app[:MAX_REFUSAL_APP] + "..."
    if len(detail) > MAX_DETAIL:
        detail = f"{detail[:MAX_DETAIL]}... ({len(detail)} chars)"
    return Refusal(reason, app, detail)


def bounded(refusals: Sequence[Refusal], limit: int = MAX_REFUSALS) -> tuple[Refusal, ...]:
    """At most `limit` refusals, the rest counted in one more."""
    if len(refusals) <= limit:
        return tuple(refusals)
    more = len(refusals) - limit
    return (*refusals[:limit], Refusal(Refused.NOT_LISTED, "?", f"{more} more refusals"))


def _host_names(
    http_ports: Sequence[tuple[PlacedApp, PortSpec]], domain: str, refusals: list[Refusal]
) -> dict[str, str]:
    """Host name -> backend: every app's own name first (nothing can take it), then the
    spec domains, first come first served."""
    hosts = {
        f"{app.name}.{domain}": backend_name(app.name, port)
        for app, port in http_ports
        if port == app.ports[0]
    }
    for app, port in http_ports:
        for wanted in port.domains:
            reason = _domain_refusal(wanted, app.name, domain, hosts)
            if reason is None and app.owned_domains is not None and wanted not in app.owned_domains:
                reason = Refused.DOMAIN_TAKEN  # the chain gave it to another app
            if reason is not None:
                refusals.append(refusal(reason, app.name, wanted))
                continue
            hosts[wanted] = backend_name(app.name, port)
    return hosts


def _domain_refusal(wanted: str, app: str, domain: str, hosts: Mapping[str, str]) -> Refused | None:
    if domain_problem(wanted) is not None:
        return Refused.BAD_DOMAIN
    own = f"{app}.{domain}"
    if (wanted == domain or wanted.endswith("." + domain)) and not wanted.endswith("." + own):
        return Refused.DOMAIN_UNDER_GATEWAY
    if wanted in hosts:
        return Refused.DOMAIN_TAKEN
    return None


def _servers(
    app: PlacedApp,
    port: PortSpec,
    reports: Mapping[str, Sequence[Workload]],
    allowed: _Allowed,
    pinned: Mapping[str, str],
    refusals: list[Refusal],
) -> Iterable[Server]:
    for placed in sorted(app.instances, key=lambda p: p.index):
        report = reports.get(placed.node_id)
        if report is None:
            continue
        workload = next(
            (
                w
                for w in report
                if (w.app, w.instance, w.component) == (app.name, placed.index, port.component)
            ),
            None,
        )
        if workload is None or workload.state != "running" or len(workload.ports) <= port.index:
            continue
        address = split_address(workload.ports[port.index])
        reported = workload.ports[port.index]
        where = f"node {placed.node_id} reported {reported[:MAX_DETAIL]!r}"
        if address is None:
            refusals.append(refusal(Refused.BAD_ADDRESS, app.name, where))
            continue
        endpoint = pinned.get(placed.endpoint_host, placed.endpoint_host)
        # a report naming the endpoint's own host name is at the address pinned for it
        host = endpoint if address[0] == placed.endpoint_host else address[0]
        if not same_host(endpoint, host, loopback_is_one_host=allowed.loopback_is_one_host):
            refusals.append(refusal(Refused.FOREIGN_HOST, app.name, where))
        elif not routable(
            host,
            loopback_is_one_host=allowed.loopback_is_one_host,
            private_is_routable=allowed.private_is_routable,
        ):
            reason = Refused.BAD_ADDRESS if _not_ip(host) else Refused.UNROUTABLE_HOST
            refusals.append(refusal(reason, app.name, where))
        elif address[1] != port.host_port:
            refusals.append(refusal(Refused.WRONG_PORT, app.name, where))
        else:
            yield Server(host, address[1], placed.node_id, placed.index)


def _not_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False
