"""Network groups: which addresses are "the same attacker" for caps and diversity.

An attacker can make node keys for free, and IP addresses cheaply inside one network
it rents; it is the number of distinct networks it holds that is expensive. So the p2p
layer counts and spreads peers by network, at two grains:

- `subnet_of` (IPv4 /24, IPv6 /48): the unit of the inbound caps. A /24 is what one
  hosting customer commonly gets; an IPv6 /48 is one site's allocation.
- `address_group` (IPv4 /16, IPv6 /32): the coarser unit of the peer book's buckets and
  of outbound diversity, as in Bitcoin Core's address manager: one provider's range is
  one group, so an attacker renting many /24s of one provider still lands in one group.

IPv4-mapped IPv6 addresses count as their IPv4 address everywhere. At the group grain
so do the IPv6 forms that carry an IPv4 host (`embedded_ipv4`: NAT64's well-known prefix
and the local-use one's /96 form, IPv4-translated, IPv4-compatible, 6to4, Teredo), as
Bitcoin Core's netgroup does: an IPv6-only node behind NAT64 reaches every IPv4 peer at
64:ff9b::/96, one IPv6 /32, and would count them all as one source (rev25p 2); and one
host reached both ways is one group, the loopback group `local` too (a label that
merges, and exempts nothing). The IPv6 address itself, never a tunnel's claimed IPv4, is
what the inbound caps' subnet (its /48: NAT64's and a Teredo server's clients are one
subnet, the stricter count) and the exempt networks read. A host name (a devnet's `node3:26600`) is
a group of its own: it cannot be placed in a network before it is resolved; a number
spelled as a name (`0x7f.1`) is the IPv4 it spells (`parse_address`). `Netgroups` adds
the operator's exempt networks (`uncapped_networks`): peers from them are not capped per
IP or subnet, and each of their addresses is a group of its own, because on a devnet
every node shares 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from p2p.messages import parse_address, parse_ip

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SUBNET_PREFIX_V4: Final = 24
SUBNET_PREFIX_V6: Final = 48
GROUP_PREFIX_V4: Final = 16
GROUP_PREFIX_V6: Final = 32
# What a devnet on one machine sets as its uncapped networks: every node is 127.0.0.1.
LOOPBACK_NETWORKS: Final = ("127.0.0.0/8", "::1/128")
# RFC 8215's local-use NAT64 prefix: a site's translator may use any prefix inside it,
# and RFC 6052 2.2 puts the IPv4 at bits 48-63 and 72-87 for a /48, ... up to the last 32
# bits for a /96, so only its /96 form (bits 48-95 zero, whose other readings all fall in
# 0.0.0.0/8, which no translator sends to) is read as a host; the rest cannot be judged.
LOCAL_USE_NAT64: Final = ipaddress.IPv6Network("64:ff9b:1::/48")
# IPv6 prefixes whose last 32 bits are an IPv4 address: NAT64's well-known prefix (RFC
# 6052), the local-use one's /96 form and SIIT's IPv4-translated addresses (RFC 6145).
_IPV4_IN_LOW_BITS: Final = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
)
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
# RFC 6598's shared address space (carrier-grade NAT, Alibaba's metadata service at
# 100.100.100.200): no host of the internet, which Python's `is_private` leaves out.
SHARED_ADDRESS_SPACE: Final = ipaddress.IPv4Network("100.64.0.0/10")
# A cloud's services for the machine it runs, at addresses no link-local or private rule
# catches, or where a private address is allowed (a node in a VPC learns private ones):
# Azure's wire server (a public IP reached only from inside Azure: goal state,
# certificates), Alibaba's metadata service, the IPv6 metadata services of AWS, Google
# Cloud and Oracle Cloud.
CLOUD_HOST_SERVICES: Final = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "168.63.129.16",
        "100.100.100.200",
        "fd00:ec2::254",
        "fd20:ce::254",
        "fd00:c1::a9fe:a9fe",
    )
)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, or None: IPv4-mapped, NAT64 (64:ff9b::/96
    and 64:ff9b:1::/96), IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96 but
    IPv6's own `::` and `::1`: RFC 4291 deprecated it, a stack with an automatic tunnel
    still reaches the IPv4), 6to4 (2002::/16, its bits 16-48) or Teredo (2001::/32, the
    client's, unobfuscated)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in network for network in _IPV4_IN_LOW_BITS) or (
        ip in _IPV4_COMPATIBLE and int(ip) > 1
    ):
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None if ip.teredo is None else ip.teredo[1]


def routable(host: str, *, loopback_is_one_host: bool, private_is_routable: bool = True) -> bool:
    """May this machine send traffic to `host`? An IP literal only (a name is judged once
    resolved), and never an address of this machine or its link: loopback (unless the
    caller's setup makes it the one host, the devnet), unspecified, link-local or
    multicast (169.254.169.254 is a cloud's metadata service) or another of a cloud's
    services for its machines (`CLOUD_HOST_SERVICES`), judged by the IPv4 an IPv6 form
    carries (`unwrapped`); no address in the local-use NAT64 prefix but its /96 form,
    whose IPv4 a site's translator may read elsewhere; and, when the caller says so, no
    private address either (RFC 1918, fc00::/7, and RFC 6598's shared 100.64.0.0/10).
    The gateway's servers and the addresses peers send (`LearnRule`) are judged by this
    one rule."""
    try:
        ip = unwrapped(ipaddress.ip_address(host))
    except ValueError:
        return False
    if ip in LOCAL_USE_NAT64:
        # Not its /96 form: a local translator's IPv4 we cannot read (rev25p2 1).
        return False
    if ip.is_unspecified or ip.is_link_local or ip.is_multicast or ip in CLOUD_HOST_SERVICES:
        return False
    if ip.is_loopback:
        return loopback_is_one_host
    return private_is_routable or not is_private(ip)


def is_private(ip: IPAddress) -> bool:
    """Whether `ip` is an address of a private network: what Python calls private (RFC
    1918, fc00::/7, ...) and RFC 6598's shared address space."""
    return ip.is_private or ip in SHARED_ADDRESS_SPACE


def is_loopback_name(host: str) -> bool:
    """Whether a host name is loopback by RFC 6761 (`localhost`, `*.localhost`), whatever
    a resolver would answer for it."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def unwrapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (`embedded_ipv4`: IPv4-mapped `::ffff:a.b.c.d`,
    NAT64, IPv4-translated, IPv4-compatible, 6to4, Teredo's client), which the kernel, a
    translator or a relay reaches: `::ffff:127.0.0.1` is this machine's loopback, and
    `64:ff9b::a9fe:a9fe` the metadata service to a NAT64 that translates it, whatever
    Python's IPv6 properties say of them."""
    if isinstance(ip, ipaddress.IPv6Address):
        return embedded_ipv4(ip) or ip
    return ip


@dataclass(slots=True)
class LearnRule:
    """Which addresses learned from peers this node may keep and dial (`routable`):
    loopback only if the node says it is on loopback itself (`of_node`), private only if
    it is on a private network, decided by its own address alone: the advertised one
    (the listen host when it advertises none; an unspecified one, 0.0.0.0 or ::, says
    nothing). As Bitcoin Core
    learns no unroutable address from peers, a public node learns none, whatever its
    configured peers are: a sentry's validator at 127.0.0.1 or 10.0.0.5 must not open its
    loopback and LAN to every stranger's PEERS. A peer may relay what it heard, so a
    refused address is dropped, not held against it; so is one at this node's own IP
    (`own`). Configured and inbound peers are the operator's or the socket's, never
    judged by this rule."""

    loopback: bool
    private: bool

    # This node's own non-loopback IPs (advertised, specific listen host): a learned
    # address there, any port, is the node's own services by a hairpin (its API, ssh),
    # as Bitcoin Core never connects to its own local addresses. Loopback is left out:
    # every node of a one-machine devnet shares it.
    own: frozenset[IPAddress] = frozenset()

    @classmethod
    def of_node(
        cls,
        listen_host: str,
        advertise_address: str | None,
        uncapped_networks: Iterable[str] = (),
    ) -> LearnRule:
        """The rule of a node listening on `listen_host`, advertising `advertise_address`
        ("host:port", or None), exempting `uncapped_networks` from the inbound caps.

        Loopback is learned on an explicit signal only: the node advertises a loopback
        address, or listens on loopback advertising nothing and its uncapped networks
        hold loopback (what every one-machine devnet sets: `flux devnet`, the test
        harnesses). The default config listens on 127.0.0.1 and advertises nothing; read
        as "on loopback", a production node that only dials out learned a stranger's
        `127.0.0.1:26700` and dialed its own API (fix27l)."""
        advertised = None
        if advertise_address:
            try:
                advertised = parse_address(advertise_address)[0]
            except ValueError:
                # Refused at config load (`home._check_addresses`); here it says nothing.
                return cls(loopback=False, private=False)
        own: set[IPAddress] = set()
        for text in (listen_host, advertised):
            parsed = parse_ip(text) if text else None
            mine = None if parsed is None else unwrapped(parsed)
            if mine is not None and not mine.is_unspecified and not mine.is_loopback:
                own.add(mine)
        host = advertised or listen_host
        # A name (a docker devnet's service name) or 0.0.0.0/:: says nothing of where the
        # node is: it learns neither loopback nor private addresses.
        parsed = parse_ip(host)
        ip = None if parsed is None else unwrapped(parsed)
        on_loopback = is_loopback_name(host) or (ip is not None and ip.is_loopback)
        one_host = any(
            ipaddress.ip_address(loopback) in network
            for network in parse_networks(uncapped_networks)
            for loopback in ("127.0.0.1", "::1")
        )
        return cls(
            loopback=on_loopback and (advertised is not None or one_host),
            private=ip is not None
            and not ip.is_unspecified
            and not ip.is_loopback
            and not ip.is_link_local
            and is_private(ip),
            own=frozenset(own),
        )

    def allows_ip(self, host: str) -> bool:
        """Whether a learned address's IP (or an IP its name resolves to) may be kept."""
        ip = parse_ip(host)
        if ip is None or unwrapped(ip) in self.own:
            return False
        return routable(
            str(ip), loopback_is_one_host=self.loopback, private_is_routable=self.private
        )

    def allows(self, address: str) -> bool:
        """Whether a learned "host:port" may enter the book: a name may (the IPs it resolves
        to are judged by `allows_ip` at its dial, before any byte is sent) unless it is
        loopback by RFC 6761 (`localhost`, `*.localhost`), an IP if `allows_ip`."""
        try:
            host, _port = parse_address(address)
        except ValueError:
            return False
        if is_loopback_name(host):
            return self.loopback
        return parse_ip(host) is None or self.allows_ip(host)


def _prefix(ip: IPAddress, v4: int, v6: int) -> str:
    bits = v4 if isinstance(ip, ipaddress.IPv4Address) else v6
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def subnet_of(host: str) -> str:
    """The inbound-cap subnet of an IP (/24 or /48); a host name is its own subnet."""
    ip = parse_ip(host)
    if ip is None:
        return "name:" + host.lower()
    return _prefix(ip, SUBNET_PREFIX_V4, SUBNET_PREFIX_V6)


def address_group(host: str) -> str:
    """The peer-book group of a host (/16 or /32); an IPv6 address that carries an IPv4
    one is grouped as that (`embedded_ipv4`); a host name is its own group."""
    ip = parse_ip(host)
    if ip is None:
        return "name:" + host.lower()
    if isinstance(ip, ipaddress.IPv6Address):
        ip = embedded_ipv4(ip) or ip
    if ip.is_loopback:
        return "local"
    return _prefix(ip, GROUP_PREFIX_V4, GROUP_PREFIX_V6)


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings ("127.0.0.0/8", "fd00::/8") as networks; ValueError names a bad one."""
    out = []
    for spec in specs:
        if type(spec) is not str:
            raise ValueError(f"{spec!r} is not a network in CIDR notation")
        try:
            out.append(ipaddress.ip_network(spec, strict=False))
        except ValueError:
            raise ValueError(f"{spec!r} is not a network in CIDR notation") from None
    return tuple(out)


class Netgroups:
    """Group functions that honour the operator's exempt (uncapped) networks."""

    __slots__ = ("_exempt",)

    def __init__(self, uncapped_networks: Iterable[str] = ()) -> None:
        self._exempt = parse_networks(uncapped_networks)

    def is_exempt(self, host: str) -> bool:
        """Whether `host` is an IP inside one of the uncapped networks."""
        ip = parse_ip(host)
        return ip is not None and any(ip in network for network in self._exempt)

    def source_group(self, host: str) -> str:
        """The group of the host a peer told us an address from: its socket IP (any
        family, bare: `64:ff9b::cb00:7107`, `fe80::1%eth0`) or a name; an exempt IP is a
        group of its own."""
        return f"exempt:{host}" if self.is_exempt(host) else address_group(host)

    def group(self, address: str) -> str:
        """The group of a dialable "host:port" (the whole address if it is exempt)."""
        host, port = parse_address(address)
        if self.is_exempt(host):
            return f"exempt:{host}:{port}"
        return address_group(host)
