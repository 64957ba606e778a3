"""Held txs counted by where they came from, so that a bound pushes out a flooder's own.

Used by the parked set (`admission.TxAdmission`) and the extra-txs store
(`extra_txs.ExtraTxs`): past its count bound each pushes out the oldest tx of the origin
holding the most txs, past its byte bound the oldest of the origin holding the most bytes
(rev20b: else a peer's few large txs push out many small ones), so a peer flooding junk
(unfunded senders sign for free) pushes out its own txs, not other peers'; this node's own
go only when they are all that is held.

This node's API clients count as one origin against the peers (`API`), so that no number
of clients pushes out a peer's txs while they hold fewer than it, and apart among
themselves, by the address group of the client a tx came from (`client_origin`, api21;
the socket's peer, or the client a reverse proxy the operator trusts names, api/forwarded.py):
a client flooding pushes out its own, not another client's.
"""

from __future__ import annotations

import heapq
import ipaddress
from typing import Final

from p2p.netgroup import embedded_ipv4

# Where a held tx came from: a peer's id, a client's (`client_origin`: API and its
# address group), or None for this node itself (its duties).
Origin = str | None
# What every client origin starts with (a peer's id is a hex node id: never); alone, the
# origin of a client whose address is not known (a tool's, a test's).
API: Final = "api"
# Address groups as Bitcoin Core's `netgroup` draws them (an IPv4 /16, an IPv6 /32, an
# address embedded in IPv6 as its IPv4): holding addresses in many of them is what costs
# an attacker, not addresses (a cloud account's elastic IPs share a few /16s, a host's
# IPv6 /64 or a customer's /48 one /32). Hurricane Electric hands out free /48s from one
# /32 to anyone, so its users are told apart by /36, as in Bitcoin Core.
_IPV4_BITS: Final = 16
_IPV6_BITS: Final = 32
_HE_NET: Final = ipaddress.IPv6Network("2001:470::/32")
_HE_NET_BITS: Final = 36
# Clients on this node's host (its wallet, or a reverse proxy, which makes every client
# one), and those on a network the internet does not route (a LAN, a container bridge:
# addresses anyone there picks for free): a group each.
LOCAL: Final = f"{API}/local"
PRIVATE: Final = f"{API}/private"


def client_origin(host: str | None) -> str:
    """The origin of the txs a client at `host` (the socket's peer address, or the client
    a trusted reverse proxy names: api/forwarded.py) posts: API and its address group."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return API  # not an IP socket (a Unix socket, a test's transport)
    bits = _IPV4_BITS
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
        else:
            bits = _HE_NET_BITS if ip in _HE_NET else _IPV6_BITS
    if ip.is_loopback:
        return LOCAL
    if not ip.is_global:
        return PRIVATE
    return f"{API}/{ipaddress.ip_network((ip, bits), strict=False)}"


def is_own(origin: Origin) -> bool:
    """Whether a tx of `origin` came to this node first (its duties or its clients): its
    sender is answered, not a peer."""
    return origin is None or origin.startswith(API)


# Stale heap entries allowed past the live origins before the heap is rebuilt: each add
# and remove leaves one, so a rebuild (linear) comes after as many operations (amortized
# O(1)) and the heap never grows past a small multiple of the origins.
_SLACK: Final = 64


class ByOrigin:
    """The ids of held txs by origin, oldest first, with each origin's count and bytes;
    `victim` in O(log n) amortized. Client origins are one, API, against the others, and
    apart among themselves (the module's doc); at either level the origins are never
    more than the txs.

    The peer origins holding the most (txs, or bytes for `victim(by_bytes=True)`) are
    found on a heap of (-weight, arrival, origin) entries, one pushed at each change of an
    origin's weight; an entry whose weight or arrival is no longer the origin's is stale
    and dropped when it comes to the top. An origin's arrival orders ties as the plain
    rule (`max` over the origins in the order they came, an emptied one coming again
    last) does: the first to come wins.
    """

    def __init__(self, *, clients_apart: bool = True) -> None:
        # Client origins count here as one, API, and apart in `_clients`: the victim of an
        # API that holds the most is the oldest of the client group holding the most.
        self._clients = ByOrigin(clients_apart=False) if clients_apart else None
        self._of: dict[Origin, dict[bytes, int]] = {}  # origin -> id -> its bytes
        self._bytes: dict[Origin, int] = {}
        self.total_bytes = 0  # over every origin: what a byte bound is checked against
        self._arrival: dict[Origin, int] = {}
        self._arrivals = 0
        self._heap: list[tuple[int, int, str]] = []  # by count
        self._bytes_heap: list[tuple[int, int, str]] = []

    def add(self, origin: Origin, tx_id: bytes, size: int = 0) -> None:
        """Hold `tx_id` (of `size` bytes) for `origin`."""
        if self._clients is not None and origin is not None and origin.startswith(API):
            self._clients.add(origin, tx_id, size)
            origin = API
        of_origin = self._of.get(origin)
        if of_origin is None:
            of_origin = self._of[origin] = {}
            self._bytes[origin] = 0
            self._arrival[origin] = self._arrivals
            self._arrivals += 1
        of_origin[tx_id] = size
        self._bytes[origin] += size
        self.total_bytes += size
        self._note(origin)

    def remove(self, origin: Origin, tx_id: bytes) -> None:
        if self._clients is not None and origin is not None and origin.startswith(API):
            self._clients.remove(origin, tx_id)
            origin = API
        of_origin = self._of[origin]
        size = of_origin.pop(tx_id)
        self._bytes[origin] -= size
        self.total_bytes -= size
        if not of_origin:
            del self._of[origin]
            del self._bytes[origin]
            del self._arrival[origin]
        else:
            self._note(origin)

    def victim(self, *, by_bytes: bool = False) -> bytes:
        """The id to push out: the oldest of the origin holding the most txs (or bytes),
        this node's own only if it holds them all (some tx must be held)."""
        heap = self._bytes_heap if by_bytes else self._heap
        of, arrival = self._of, self._arrival
        while heap:
            minus_weight, at, origin = heap[0]
            held = of.get(origin)
            weight = None if held is None else self._bytes[origin] if by_bytes else len(held)
            if held is not None and weight == -minus_weight and arrival[origin] == at:
                if origin == API and self._clients is not None:
                    return self._clients.victim(by_bytes=by_bytes)
                return next(iter(held))
            heapq.heappop(heap)
        return next(iter(of[None]))

    def _note(self, origin: Origin) -> None:
        """`origin`'s weights changed: if a peer's, its entries go on the heaps."""
        if origin is None:
            return
        at = self._arrival[origin]
        self._push(self._heap, (-len(self._of[origin]), at, origin), by_bytes=False)
        self._push(self._bytes_heap, (-self._bytes[origin], at, origin), by_bytes=True)

    def _push(
        self, heap: list[tuple[int, int, str]], entry: tuple[int, int, str], *, by_bytes: bool
    ) -> None:
        heapq.heappush(heap, entry)
        if len(heap) > 2 * len(self._of) + _SLACK:
            arrival, of, size = self._arrival, self._of, self._bytes
            heap[:] = [
                (-(size[o] if by_bytes else len(of[o])), arrival[o], o) for o in of if o is not None
            ]
            heapq.heapify(heap)
