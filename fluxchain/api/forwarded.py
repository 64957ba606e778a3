"""The address of an API client, through the reverse proxies the operator trusts.

The node tells its clients apart by address group (`node.origins.client_origin`): a
client's held txs push out its own group's, not another's. Behind a reverse proxy every
socket is the proxy's, so all clients would be one group. An operator who names the
proxy's network in `api_trusted_proxies` has the node read `X-Forwarded-For` on
connections from it, and only from it: any client writes that header, so one from
anywhere else is ignored.

The client is the right-most address of the header that is not a trusted proxy (each
proxy appends the address it was connected from; what lies left of the first untrusted
one was written by that client and proves nothing). An entry that is not an address
stops the walk at the last hop known to be true, as does a header longer than
`MAX_HOPS` entries: a confused or hostile chain of proxies never invents a client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from p2p.messages import parse_ip
from p2p.netgroup import IPAddress, Network

# Proxies a request may have passed through before the last one. Real chains are 1-3
# (a CDN, a load balancer, the host's proxy); the bound keeps a header of thousands of
# entries from costing a parse each.
MAX_HOPS: Final = 16


def parse_proxies(specs: Iterable[object]) -> tuple[Network, ...]:
    """The trusted proxies' networks from their CIDR strings; ValueError names an entry
    that would trust other than what it says: host bits set ("203.0.113.7/24", as `ip
    addr` prints an interface: the proxy, or its whole subnet?), every address ("/0": no
    header would be anyone's words any more), or an IPv4-mapped IPv6 form, which never
    matches (every address is compared as its IPv4)."""
    networks = []
    for spec in specs:
        if type(spec) is not str:
            raise ValueError(f"{spec!r} is not a network in CIDR notation")
        try:
            network = ipaddress.ip_network(spec)
        except ValueError:
            raise ValueError(
                f"{spec!r} is not a network in CIDR notation with no host bits set "
                "(a proxy's address alone, or its network's first address and prefix)"
            ) from None
        if network.prefixlen == 0:
            raise ValueError(f"{spec!r} trusts every address: any client could name any other")
        if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
            raise ValueError(f"{spec!r} is IPv4-mapped: write it as IPv4")
        networks.append(network)
    return tuple(networks)


def client_host(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]
) -> str | None:
    """The client's address: `peer` (the socket's), or, when `peer` is a trusted proxy,
    the right-most address of the `X-Forwarded-For` values that is not one."""
    if not trusted:
        return peer
    current = _address(peer)
    if current is None or not _within(current, trusted):
        return peer
    entries = [part for value in forwarded_for for part in value.split(",")]
    for entry in reversed(entries[-MAX_HOPS:]):
        hop = _address(entry)
        if hop is None:
            break  # not an address: nothing left of it is trusted either
        current = hop
        if not _within(hop, trusted):
            break
    return str(current)


def is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    """Whether `peer` (a socket's address) is one of the `trusted` proxies."""
    address = _address(peer)
    return address is not None and _within(address, trusted)


def _within(address: IPAddress, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def _address(text: str | None) -> IPAddress | None:
    """An IP from an X-Forwarded-For entry as proxies write them: bare, or with a port
    ("192.0.2.1:4711", "[2001:db8::1]:4711"); an IPv4-mapped IPv6 address as its IPv4."""
    if text is None:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    return parse_ip(text) if text else None
