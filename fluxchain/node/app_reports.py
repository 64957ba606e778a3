"""Per-instance reports: what each hosting node's agent says of an app's instances.

`/apps/{name}` shows, beside the chain's placement of each instance, the state its
hosting agent reports (running, starting, backoff, failed, with the last error). This
node's own agent's report is read directly; the others come from the hosting nodes'
public `GET /agent/apps/{name}`, at the endpoint each registered on chain: only
endpoints of nodes in committed state are ever fetched, always that one path with a
GET, and only a bounded JSON answer whose `node_id` is the host's is taken (no redirect
is followed). A host that does not answer within FETCH_TIMEOUT_S is listed as
unreachable.

An endpoint is anyone's choice, so it is checked before any connection, with the
gateway's own rule (`p2p.netgroup.routable`): never an address of no machine
or of this node's own link (unspecified, link-local such as a cloud's metadata service
169.254.169.254, multicast, a cloud's other host services such as Azure's 168.63.129.16);
loopback and private (RFC 1918, fc00::/7, 100.64/10) addresses only
where the operator allows them (`ReportHosts`, config.toml `reports_from_loopback` and
`reports_from_private`: on for the nodes `fluxchain devnet` creates, off elsewhere), so a
host on a public network cannot make every node GET its own loopback or internal network.
A host name is resolved once, within RESOLVE_TIMEOUT_S, the address checked, and the
connection made to that very address (no second lookup that could answer another: DNS
rebinding). Answers are cached for CACHE_S, so a busy explorer page costs each host at
most one request per app per CACHE_S, and at most MAX_FETCHES are in flight at once.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from fluxchain.gateway.routes import split_address
from fluxchain.gateway.service import LookupPool, first_allowed_address, is_ip
from fluxchain.node.agent_link import scrub
from p2p.netgroup import routable

FETCH_TIMEOUT_S: Final = 2.0
# A host name's lookup: an operator's slow nameserver delays only its own host's line of
# the page. Lookups run on threads of their own (a lookup the page stopped waiting for
# holds its thread until the system resolver gives up): a nameserver that never answers
# cannot take the threads the node's snapshots and benchmarks run on.
# A page that gave up takes its queued lookup with it, and at most MAX_QUEUED_LOOKUPS (a
# page's hosts) wait for a thread: past that a page answers "name lookup timed out" at once.
RESOLVE_TIMEOUT_S: Final = 1.0
MAX_LOOKUPS: Final = 4
MAX_QUEUED_LOOKUPS: Final = 64
_LOOKUPS: Final = LookupPool(MAX_LOOKUPS, MAX_QUEUED_LOOKUPS, "report-lookup")
CACHE_S: Final = 5.0
CACHE_ENTRIES: Final = 1_024
MAX_ANSWER: Final = 256 * 1024  # a thousand workloads' lines with their messages
MAX_HOSTS: Final = 64  # hosts asked for one page; the rest shown as not asked
# Fetches in flight at once, whatever the number of pages asked: reading many apps' pages
# cannot turn a node into a flood of requests to the hosts.
MAX_FETCHES: Final = 16
# The agent's workload states (api/models.py WorkloadReport.state); anything else reads
# "unknown". `standby`: a host of an app with a replicated volume that keeps a copy while
# the primary runs it.
STATES: Final = frozenset({"starting", "running", "backoff", "failed", "stopping", "standby"})


@dataclass(frozen=True, slots=True)
class ReportHosts:
    """Which host addresses this node may fetch reports from, beside public ones."""

    loopback: bool = False  # a devnet's nodes all on one machine (127.0.0.1)
    private: bool = False  # a network inside one LAN or container network (10/8, ...)

    def allows(self, ip: str) -> bool:
        """May this node connect to IP literal `ip` for a report?"""
        return routable(ip, loopback_is_one_host=self.loopback, private_is_routable=self.private)


PUBLIC: Final = ReportHosts()


class ReportGatherer:
    """Fetches and caches the agent reports of an app's hosting nodes."""

    def __init__(
        self,
        own_node_id: Callable[[], bytes | None],
        own_report: Callable[[str], dict[str, Any]],
        *,
        hosts: ReportHosts = PUBLIC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._own_node_id = own_node_id
        self._own_report = own_report
        self._hosts = hosts
        self._clock = clock
        # (node id, endpoint, app) -> (fetched at, answer or None, error)
        self._cache: OrderedDict[tuple[bytes, str, str], tuple[float, dict[str, Any] | None, str]]
        self._cache = OrderedDict()
        self._fetching = asyncio.Semaphore(MAX_FETCHES)

    async def add_reports(self, view: dict[str, Any]) -> None:
        """Give each instance of an app view (`core.views.app_json`) its host's report as
        `agent`, and the view a list of the hosts that did not answer (`unreachable`)."""
        name = str(view["name"])
        own = self._own_node_id()
        hosts: dict[bytes, str] = {}
        for instance in view.get("instances", []):
            hosts.setdefault(bytes.fromhex(instance["node_id"]), instance.get("endpoint", ""))
        asked = list(hosts.items())[:MAX_HOSTS]
        answers = await asyncio.gather(
            *(self._report(node_id, endpoint, name, own) for node_id, endpoint in asked)
        )
        by_node = {node_id: answer for (node_id, _), answer in zip(asked, answers, strict=True)}
        unreachable = []
        for instance in view.get("instances", []):
            node_id = bytes.fromhex(instance["node_id"])
            answer, error = by_node.get(node_id, (None, "not asked: too many hosts"))
            if answer is None:
                instance["agent"] = {"reachable": False, "error": error}
                if instance["node_id"] not in unreachable:
                    unreachable.append(instance["node_id"])
                continue
            instance["agent"] = {
                "reachable": True,
                "report_age_s": answer.get("report_age_s"),
                "problem": answer.get("problem"),
                "components": [
                    w for w in answer["workloads"] if w["instance"] == instance["index"]
                ],
            }
        view["unreachable"] = unreachable

    async def _report(
        self, node_id: bytes, endpoint: str, app: str, own: bytes | None
    ) -> tuple[dict[str, Any] | None, str]:
        if node_id == own:
            return self._own_report(app), ""
        key = (node_id, endpoint, app)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1], cached[2]
        async with self._fetching:
            answer, error = await fetch_report(node_id, endpoint, app, self._hosts)
        self._cache[key] = (now, answer, error)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return answer, error


async def pin_endpoint(
    endpoint: str,
    hosts: ReportHosts,
    lookups: Executor = _LOOKUPS,
    wait_s: float | None = RESOLVE_TIMEOUT_S,
) -> tuple[str, str] | str:
    """Where to fetch a report of the host at `endpoint` (host:port, as registered):
    (base URL at a checked IP literal, Host header) or, refused, why.

    A name is looked up on a thread of `lookups` (uptime probes have their own:
    `duties.PROBE_LOOKUPS`), within RESOLVE_TIMEOUT_S of the lookup's start; `wait_s`
    bounds the whole wait, a thread's queue included (a report page answers within it;
    None for probes, whose pool has a thread per target: a probe queued behind hanging
    names waits for a thread rather than reporting its target down)."""
    split = split_address(endpoint)
    if split is None:
        return "unroutable endpoint"
    host, port = split
    if is_ip(host):
        ip = host
    else:
        try:
            pinned = await asyncio.wait_for(
                first_allowed_address(host, hosts.allows, lookups, timeout=RESOLVE_TIMEOUT_S),
                wait_s,
            )
        except TimeoutError:
            return "name lookup timed out"
        if pinned is None:
            return "unroutable endpoint"
        ip = pinned
    if not hosts.allows(ip):
        return "unroutable endpoint"
    at = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"http://{at}", host_header


async def fetch_report(
    node_id: bytes, endpoint: str, app: str, hosts: ReportHosts = PUBLIC
) -> tuple[dict[str, Any] | None, str]:
    """GET http://<endpoint>/agent/apps/<app> of one host; (answer, "") or (None, why)."""
    if not endpoint:
        return None, "the node has no endpoint"
    pinned = await pin_endpoint(endpoint, hosts)
    if isinstance(pinned, str):
        return None, pinned
    base, host_header = pinned
    url = f"{base}/agent/apps/{quote(app, safe='')}"
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False, headers={"Host": host_header}) as response,
        ):
            if response.status != 200:
                return None, f"answered {response.status}"
            body = await read_capped(response.content, MAX_ANSWER)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return None, f"unreachable: {type(exc).__name__}"
    if body is None:
        return None, "answer too large"
    return parse_report(body, node_id)


async def read_capped(content: aiohttp.StreamReader, cap: int) -> bytes | None:
    """The whole body of `content`, or None when it is longer than `cap` bytes: no more than
    `cap` + 1 bytes are read, so a stranger's answer cannot make this node buffer more
    (one `read(n)` returns what has arrived, maybe less than the body: read to the end)."""
    body = bytearray()
    while chunk := await content.read(cap + 1 - len(body)):
        body += chunk
        if len(body) > cap:
            return None
    return bytes(body)


# The largest number a host's answer may hold: an instance index, a restart count, an age
# in seconds (a day short of 32 years). Anything past it is a lie.
MAX_REPORTED: Final = 1_000_000_000


def _count(value: Any) -> int:
    """A whole number in 0..MAX_REPORTED, or ValueError (no bool, float, inf or NaN)."""
    if type(value) is not int or not 0 <= value <= MAX_REPORTED:
        raise ValueError("not a bounded count")
    return value


def _age(value: Any) -> float | None:
    """Seconds since the host's agent reported: None, or a finite number in range."""
    if value is None:
        return None
    if type(value) is int:
        return float(_count(value))
    if type(value) is not float or not math.isfinite(value) or not 0 <= value <= MAX_REPORTED:
        raise ValueError("not a bounded age")
    return round(value, 1)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Infinity, -Infinity, NaN


def parse_report(body: bytes, node_id: bytes) -> tuple[dict[str, Any] | None, str]:
    """A host's answer, field by field (a lying host may send anything): only the host's
    own report, with bounded, known fields; every number a bounded int (or a finite age),
    so the page never re-serves a number it cannot write as JSON."""
    try:
        raw = json.loads(body, parse_constant=_no_constant)
        if raw.get("node_id") != node_id.hex():
            return None, "answered as another node"
        workloads = [
            {
                "instance": _count(w["instance"]),
                "component": str(w["component"])[:64],
                "state": str(w["state"]) if w["state"] in STATES else "unknown",
                "restarts": _count(w.get("restarts", 0)),
                "owner_restarts": _count(w.get("owner_restarts", 0)),
                "message": scrub(str(w.get("message", ""))),
                "reason": str(w.get("reason", ""))[:64],
            }
            for w in list(raw["workloads"])[:1_000]
        ]
        problem = raw.get("problem")
        return {
            "report_age_s": _age(raw.get("report_age_s")),
            "problem": None if problem is None else scrub(str(problem)),
            "workloads": workloads,
        }, ""
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        return None, "malformed answer"
