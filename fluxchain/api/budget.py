"""The API's read budget: how much of the node's event loop (the loop consensus runs on)
each client group may take with requests other than tx posts, and all of them together.

A GET is cheap to send and costs the node a turn of its loop to answer; with no bound, a
client that keeps asking keeps consensus waiting. Each client group (the address group
the node tells API clients apart by, node/origins.py, through the reverse proxies the
operator trusts: api/forwarded.py) draws from its own token bucket, and every group from
one node-wide bucket: past either, a request is refused 429 `rate_limited` with
Retry-After, before its handler runs. A request costs one token; a history scan (up to
`MAX_HISTORY_BLOCKS` blocks read from disk) costs `HISTORY_COST`.

`/ws?from=H` replays are bounded apart, by count: each reads and sends every block from H
to the head. Only a request that will be upgraded asks for one (api/routes.py `get_ws`); a
replay over the bounds is refused 429 `replay_limited` before the upgrade. A
group's second replay is refused while only the reserve (a quarter of the node's slots) is
free; and when the node is full, a group that holds none takes the oldest replay of a group
holding more than one (closed 1013 with where to resume), so shutting a group out of
replays takes as many address groups as the node has slots.

Exempt: tx posts (their own gate, api/shedding.py) and clients on this host: a socket
whose own peer address is loopback, and that carries no client a trusted proxy names
(a forwarded address is the words of whoever sent it, and a loopback one named through a
remote hop is not this host). Those are the node's own wallet, agent, benchmarks, devnets
and tests, which the operator runs. A reverse proxy on the host must be named in
`api_trusted_proxies`, else every client it forwards is loopback.

`/health` (other nodes' uptime checks) and `/metrics` (the operator's monitoring, which
must see a flood while it happens) skip the node-wide bucket, never their group's own:
a flood by others cannot refuse them, and a group asking them in a loop is refused like
any read.

Known clients (an explorer, a gateway behind NAT: config `api_trusted_clients`, at most
`MAX_TRUSTED_NETWORKS` networks of at most `MAX_TRUSTED_ADDRESSES` addresses) are each
judged by its own address, not its group, with a bucket of `per_trusted_client`. Not a
bypass: the address is the one the node judges every client by (the socket's peer, or
what a proxy the operator trusts names), so a listed address is as hard to claim as
any; the node-wide bucket and its fair share bind them as any group; and loopback stays
exempt only as above.

The node-wide bucket is not first-come: when it is short, a group is refused by it only
while its recent use of it (node tokens spent, decaying with time constant `burst_s`)
is more than its fair share (the bucket's capacity over the groups kept). So groups that
spent most of it are refused, not the next comer (a gateway reading `GET /agent`, a node
reading `/agent/apps/{name}`). The bucket may then run into debt, down to minus its
capacity: the node-wide burst is at most twice it, the sustained rate still `per_node`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from fluxchain.api.forwarded import is_trusted, parse_proxies
from fluxchain.api.queries import ApiError
from p2p.messages import parse_ip
from p2p.netgroup import Network

RATE_LIMITED: Final = "rate_limited"  # the client's group, or the node, is over its budget
REPLAY_LIMITED: Final = "replay_limited"  # too many /ws replays at once
REASONS: Final = (RATE_LIMITED, REPLAY_LIMITED)
# A history scan reads up to MAX_HISTORY_BLOCKS blocks (and decodes up to
# MAX_HISTORY_TXS txs): tens of milliseconds, where most reads take well under one.
HISTORY_COST: Final = 20
# Routes no read budget applies to (the module's doc says why), by method and path.
EXEMPT: Final = frozenset({("POST", "/txs"), ("POST", "/txs/batch")})
# Routes that spend their group's bucket only, never the node-wide one (the module's doc).
GROUP_ONLY: Final = frozenset({("GET", "/health"), ("GET", "/metrics")})
COSTS: Final = {"/nodes/{id}/history": HISTORY_COST, "/apps/{name}/events": HISTORY_COST}
# The bucket key of a trusted client (`ReadBudget.client_of`): its own address after it.
TRUSTED: Final = "trusted/"
# Bounds of `api_trusted_clients`: a few known clients, by address; a wide network would
# make each of its addresses a group of its own (every bucket still within max_clients).
MAX_TRUSTED_NETWORKS: Final = 64
MAX_TRUSTED_ADDRESSES: Final = 256


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Bounds of the API's reads; the defaults are for production (config.toml
    `api_reads_per_client`, `api_reads_per_node`, `api_replays_per_client`,
    `api_replays_per_node`)."""

    # Requests a second, sustained, per client group. The dashboard in a browser asks
    # ~10 at once when a page opens and a few each block; a gateway reads each hosting
    # node's GET /agent every pass, 1 s (fluxchain/gateway); a light client a header and a
    # set a block: 50 leaves room for several of them behind one address group.
    per_client: int = 50
    # Over every group: ~0.3-1 ms of the loop each on a cheap read, so at most a
    # fraction of it; 10 groups at their full rate.
    per_node: int = 500
    # Seconds of its rate a bucket holds: a burst (a page opening, a reconnect) of up to
    # `per_client * burst_s` requests is answered at once.
    burst_s: int = 10
    # Client groups whose buckets are kept (least recently used dropped first): one
    # dropped starts full again, its recent use forgotten, so a client with more groups
    # than this gets more than its share of the node-wide bucket, never more than the
    # bucket and its debt (twice its capacity at once, `per_node` a second sustained).
    max_clients: int = 4_096
    # /ws replays at once, per group and over all of them (each holds the loop ~1.5 ms
    # every 16 blocks it sends).
    replays_per_client: int = 2
    replays_per_node: int = 8
    # Seconds a replay may take before it is closed (1013, with the height to resume
    # from): a client that reads slowly would otherwise hold its slot for as long as it
    # likes, and a few groups the node's. The loop renders a day of empty 1 s blocks in
    # ~8 s (~90 us each), but the send buffer (`STREAM_SEND_BUFFER`, api/routes.py) lets
    # at most ~512 KiB be in flight: ~2 MB/s on a 250 ms path, so that day (~0.5 KB a
    # block, ~43 MB) takes ~20 s there, and a replay longer than ~120 MB at that pace
    # is closed here and resumed with from=H, taking a slot again.
    replay_s: float = 60.0
    # Known clients, each judged by its own address with a bucket of this rate (config
    # `api_trusted_clients`, `api_reads_per_trusted_client`): a gateway reading each
    # hosting node's GET /agent every pass, an explorer paging the node table.
    trusted_clients: tuple[Network, ...] = ()
    per_trusted_client: int = 200


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    # Node-wide tokens this group spent, decaying with time constant burst_s (its recent
    # use of the node-wide bucket; unused on the node's own bucket).
    spent: float = 0.0


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a socket's peer address, or the client a trusted proxy named) is
    on this host. Only the address itself counts: an IPv6 form that embeds 127.0.0.1
    (6to4, Teredo) comes from elsewhere."""
    ip = None if host is None else parse_ip(host)
    return ip is not None and ip.is_loopback


class ReadBudget:
    """Token buckets per client group and node-wide; counts of replays in progress."""

    def __init__(
        self, limits: ReadLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or ReadLimits()
        self._clock = clock
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        # The groups that spent node-wide tokens within the last burst_s, by the time they
        # last did, oldest first: the node-wide bucket's fair share is over them, not over
        # every group kept (other nodes' /health probes make thousands of groups that
        # spend none; late review of session 24). At most max_clients.
        self._users: OrderedDict[str, float] = OrderedDict()
        now = clock()
        self._node = _Bucket(self.limits.per_node * self.limits.burst_s, now)
        # Only groups with a replay in progress, each replay in the order taken (at most
        # replays_per_node in all).
        self._replays: dict[str, list[ReplaySlot]] = {}
        self._taken = 0  # replays ever taken: their order across groups
        self.refusals: Counter[str] = Counter()  # /metrics reads them

    @property
    def clients(self) -> int:
        """Client groups whose buckets are kept."""
        return len(self._clients)

    @property
    def replays(self) -> int:
        return sum(len(slots) for slots in self._replays.values())

    def client_of(self, host: str | None, group: str) -> str:
        """The bucket `host` (the address the node judges the client by) spends: its own
        for a trusted client, else its address `group`."""
        ip = None if host is None else parse_ip(host)
        if ip is not None and is_trusted(str(ip), self.limits.trusted_clients):
            return f"{TRUSTED}{ip}"
        return group

    def take(self, client: str, cost: int = 1, node_wide: bool = True) -> None:
        """Spend `cost` tokens of `client`'s bucket and (`node_wide`) the node's, or raise
        429 `rate_limited` (nothing spent) with the seconds until both could pay. A cost
        over a bucket's capacity is charged the capacity: a read costing more than a
        bucket holds would otherwise be refused forever, each time with a Retry-After."""
        limits = self.limits
        now = self._clock()
        rate = limits.per_trusted_client if client.startswith(TRUSTED) else limits.per_client
        client_cap = rate * limits.burst_s
        node_cap = limits.per_node * limits.burst_s
        bucket = self._clients.pop(client, None)
        if bucket is None:
            bucket = _Bucket(client_cap, now)
            while len(self._clients) >= limits.max_clients:
                self._clients.popitem(last=False)
        self._clients[client] = bucket  # the most recently used, last
        bucket.spent *= math.exp(-max(0.0, now - bucket.stamp) / limits.burst_s)
        _refill(bucket, now, rate, client_cap)
        _refill(self._node, now, limits.per_node, node_cap)
        cost = min(cost, client_cap)
        wait = (cost - bucket.tokens) / rate
        if node_wide:
            cost = min(cost, node_cap)
            # Short, the node-wide bucket refuses only a group over its fair share of it,
            # and never lends past minus its capacity.
            users = self._users
            while users and (
                now - next(iter(users.values())) > limits.burst_s
                or len(users) >= limits.max_clients
            ):
                users.popitem(last=False)
            share = node_cap / (len(users) + (client not in users))
            short = cost > self._node.tokens and (
                bucket.spent > share or self._node.tokens - cost < -node_cap
            )
            if short:
                wait = max(wait, (cost - self._node.tokens) / limits.per_node)
        if wait > 0:
            self.refusals[RATE_LIMITED] += 1
            raise ApiError(
                429,
                RATE_LIMITED,
                "too many requests from your network or to this node; retry after Retry-After",
                retry_after=max(1, math.ceil(wait)),
            )
        bucket.tokens -= cost
        if node_wide:
            bucket.spent += cost
            self._node.tokens -= cost
            self._users[client] = now
            self._users.move_to_end(client)

    @contextlib.contextmanager
    def replay(self, client: str) -> Iterator[ReplaySlot]:
        """Hold one of the replays in progress for `client`'s group, or raise 429
        `replay_limited`. Slots are freed every `replay_s` and their clients reconnect at
        once, so first-come let four groups hold the node's eight for good (api25 1); a
        reserve alone did not stop five that rotate their replays (rev25api 1). So a group
        that holds one already is refused while only the reserve (`replay_reserve`) is
        free, and a group holding none, on a full node, takes the oldest replay of the
        group holding the most if that is more than one: the slot is its from now, and
        the replay is told to close (`ReplaySlot.preempt`). Refused only while every
        group holds one, a group is shut out by no fewer groups than the node's slots."""
        limits = self.limits
        held = len(self._replays.get(client, ()))
        free = limits.replays_per_node - self.replays
        victim = None
        if free <= 0 and not held:
            victim = self._victim()
        if (
            held >= limits.replays_per_client
            or (free <= 0 and victim is None)
            or (held and free <= replay_reserve(limits))
        ):
            self.refusals[REPLAY_LIMITED] += 1
            raise ApiError(
                429,
                REPLAY_LIMITED,
                "too many block replays (/ws?from=) at once from your network or on this "
                "node; retry later, or follow live without from",
            )
        if victim is not None:
            self._release(victim)
            victim.preempt()
        self._taken += 1
        slot = ReplaySlot(client, self._taken)
        self._replays.setdefault(client, []).append(slot)
        try:
            yield slot
        finally:
            if not slot.preempted:
                self._release(slot)

    def _victim(self) -> ReplaySlot | None:
        """The oldest replay of the group holding the most, if it holds more than one:
        the slot held longest goes, and its client resumes from where it was closed."""
        most = max((len(slots) for slots in self._replays.values()), default=0)
        if most <= 1:
            return None
        return min(
            (slots[0] for slots in self._replays.values() if len(slots) == most),
            key=lambda slot: slot.order,
        )

    def _release(self, slot: ReplaySlot) -> None:
        slots = self._replays[slot.client]
        slots.remove(slot)
        if not slots:
            del self._replays[slot.client]


class ReplaySlot:
    """One replay in progress. Preempted, its slot is no longer counted, and the replay
    must close (1013, with where to resume): `on_preempt` is called once, when set."""

    __slots__ = ("client", "on_preempt", "order", "preempted")

    def __init__(self, client: str, order: int) -> None:
        self.client = client
        self.order = order
        self.preempted = False
        self.on_preempt: Callable[[], None] | None = None

    def preempt(self) -> None:
        self.preempted = True
        if self.on_preempt is not None:
            self.on_preempt()


def parse_trusted_clients(specs: tuple[object, ...]) -> tuple[Network, ...]:
    """`api_trusted_clients` as networks; ValueError names what is refused: the shapes
    `parse_proxies` refuses, more than MAX_TRUSTED_NETWORKS networks, or one of more than
    MAX_TRUSTED_ADDRESSES addresses (each would be a budget of its own: list the clients
    you know, by address)."""
    if len(specs) > MAX_TRUSTED_NETWORKS:
        raise ValueError(f"more than {MAX_TRUSTED_NETWORKS} networks")
    networks = parse_proxies(specs)
    for network in networks:
        if network.num_addresses > MAX_TRUSTED_ADDRESSES:
            raise ValueError(
                f"{str(network)!r} holds more than {MAX_TRUSTED_ADDRESSES} addresses, each of "
                "which would have a budget of its own: list your known clients by address"
            )
    return networks


def replay_reserve(limits: ReadLimits) -> int:
    """The node's replay slots kept for groups that hold none: a quarter (2 of 8; none
    below 4 slots, where taking the oldest replay of a group holding two is the rule)."""
    return limits.replays_per_node // 4


def _refill(bucket: _Bucket, now: float, rate: int, cap: int) -> None:
    bucket.tokens = min(cap, bucket.tokens + (now - bucket.stamp) * rate)
    bucket.stamp = now
