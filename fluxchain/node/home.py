"""A node's home directory: config, genesis, node key, database, signer state.

HOME/config.toml        listen addresses, peers, API bind, log level (documented inline)
HOME/genesis.json       the chain this node belongs to
HOME/node_key.json      the node's hot key (0600); signs votes, confirms, attestations
HOME/data/              LevelDB: blocks, state, indexes (docs/storage.md)
HOME/signer.json        last signed (height, round, step): the double-sign guard
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fluxchain.api.budget import ReadLimits, parse_trusted_clients
from fluxchain.api.forwarded import parse_proxies
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import FluxError, Reason
from fluxchain.core.genesis import Genesis
from p2p.messages import parse_address, parse_peer_address
from p2p.netgroup import parse_networks

CONFIG: Final = "config.toml"
GENESIS: Final = "genesis.json"
NODE_KEY: Final = "node_key.json"
DATA: Final = "data"
SIGNER: Final = "signer.json"
# The ports this node's listeners bound, written once both listen: with port 0 in
# config.toml the OS picks them, so tests and the devnet launcher read them here instead
# of choosing free ports beforehand (a port freed for someone else to bind can be taken).
PORTS: Final = "ports.json"


_TOML_TYPES: Final = {bool: "true or false", int: "an integer", str: "a string", tuple: "a list"}


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Settings an operator may change between restarts (consensus rules live in genesis)."""

    moniker: str = "fluxnode"
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 26600
    # host:port of peers to keep connected; node_key_hex@host:port accepts only that
    # node there (a squatter or a man in the middle on the way is refused before AUTH)
    persistent_peers: tuple[str, ...] = ()
    # [node_key_hex@]host:port of nodes to learn the network from (peer exchange does
    # the rest); how a new node joins with nothing but the genesis file and one address
    seeds: tuple[str, ...] = ()
    # the host:port peers should dial, when it is not p2p_host:p2p_port (a node that
    # listens on 0.0.0.0, or behind NAT); "" advertises the listen address
    p2p_advertise: str = ""
    # CIDR networks exempt from the inbound caps per IP and subnet (p2p Limits); devnets
    # on one machine set loopback, public nodes leave it empty
    p2p_uncapped_networks: tuple[str, ...] = ()
    api_host: str = "127.0.0.1"
    api_port: int = 26700
    # CIDR networks of the reverse proxies in front of the API: on their connections the
    # client is the one X-Forwarded-For names (api/forwarded.py); from anyone else that
    # header is ignored. Empty: every client is its socket's address
    api_trusted_proxies: tuple[str, ...] = ()
    # The read budget of API clients off this host (api/budget.py): requests a second per
    # client address group and over all of them, and /ws?from= replays at once (each
    # bound refused 429; loopback clients and tx posts are exempt, /health and /metrics
    # skip the node-wide bound only)
    api_reads_per_client: int = 50
    api_reads_per_node: int = 500
    api_replays_per_client: int = 2
    api_replays_per_node: int = 8
    # Known clients (CIDR, a few addresses each: an explorer, a gateway behind NAT), each
    # judged by its own address, not its group, with a budget of its own (api/budget.py)
    api_trusted_clients: tuple[str, ...] = ()
    api_reads_per_trusted_client: int = 200
    log_level: str = "warning"
    bandwidth_mbit: int = 100  # the uplink the operator declares; it cannot be self-measured
    duties: bool = True  # send NODE_CONFIRM and UPTIME_ATTEST with the node key
    agent: bool = False  # a node daemon runs this node's workloads; healthy only while it reports
    agent_runtime: str = "docker"  # docker | process
    agent_bind: str = "0.0.0.0"  # host address the workloads' ports are published on
    docker_url: str = "unix:///var/run/docker.sock"
    # State sync (docs/storage.md "Snapshots and state sync"): take a snapshot of the
    # state every `snapshot_interval` blocks (0: never) and serve the `snapshot_keep`
    # newest; a new home given a trusted header (height and block hash) fetches the state
    # at that height from its peers instead of replaying every block from genesis.
    snapshot_interval: int = 1000
    snapshot_keep: int = 2
    trust_height: int = 0
    trust_hash: str = ""
    # Seed mode (docs/operations.md): answer every node's peer exchange and hang up; keep
    # no peer, follow no chain. What a network's public seeds run.
    seed_mode: bool = False
    # `/apps/{name}` asks each hosting node's agent at its registered endpoint: also at a
    # loopback / private address? Off on a public network, where an endpoint there would
    # aim every node at its own machine or LAN; `fluxchain devnet` turns loopback on (all
    # its nodes are 127.0.0.1), a devnet inside one container network private.
    reports_from_loopback: bool = False
    reports_from_private: bool = False

    def read_limits(self) -> ReadLimits:
        """The API's read budget this config sets."""
        return ReadLimits(
            per_client=self.api_reads_per_client,
            per_node=self.api_reads_per_node,
            replays_per_client=self.api_replays_per_client,
            replays_per_node=self.api_replays_per_node,
            trusted_clients=parse_trusted_clients(self.api_trusted_clients),
            per_trusted_client=self.api_reads_per_trusted_client,
        )

    def to_toml(self) -> str:
        peers = ", ".join(json.dumps(p) for p in self.persistent_peers)
        seeds = ", ".join(json.dumps(p) for p in self.seeds)
        uncapped = ", ".join(json.dumps(n) for n in self.p2p_uncapped_networks)
        proxies = ", ".join(json.dumps(n) for n in self.api_trusted_proxies)
        trusted = ", ".join(json.dumps(n) for n in self.api_trusted_clients)
        return (
            "# fluxchain node configuration (docs/operations.md)\n"
            f"moniker = {json.dumps(self.moniker)}\n\n"
            "# peer-to-peer listener, and peers to stay connected to (host:port)\n"
            f"p2p_host = {json.dumps(self.p2p_host)}\n"
            f"p2p_port = {self.p2p_port}\n"
            f"persistent_peers = [{peers}]\n"
            "# nodes to learn the others from when joining (host:port); peer exchange does\n"
            "# the rest\n"
            f"seeds = [{seeds}]\n"
            "# host:port peers dial to reach this node; empty: p2p_host:p2p_port\n"
            f"p2p_advertise = {json.dumps(self.p2p_advertise)}\n"
            "# inbound peers are capped per IP and per /24 subnet (eclipse defence); peers\n"
            "# from these CIDR networks are not (a devnet's 127.0.0.0/8; with it, a node on\n"
            "# loopback learns loopback peers). Empty when public\n"
            f"p2p_uncapped_networks = [{uncapped}]\n\n"
            "# HTTP API: 127.0.0.1 keeps it private; uptime checkers probe /health on the\n"
            "# endpoint registered on chain, so a public node serves it where they can reach it\n"
            f"api_host = {json.dumps(self.api_host)}\n"
            f"api_port = {self.api_port}\n"
            "# reverse proxies in front of the API (CIDR): their X-Forwarded-For names the\n"
            "# client; nobody else's is read. Empty: the socket's address is the client\n"
            f"api_trusted_proxies = [{proxies}]\n"
            "# read budget of clients off this host (429 rate_limited / replay_limited past\n"
            "# it): requests a second per client address group and over all of them, and\n"
            "# /ws?from= replays at once (docs/operations.md)\n"
            f"api_reads_per_client = {self.api_reads_per_client}\n"
            f"api_reads_per_node = {self.api_reads_per_node}\n"
            f"api_replays_per_client = {self.api_replays_per_client}\n"
            f"api_replays_per_node = {self.api_replays_per_node}\n"
            "# known clients (CIDR, at most 256 addresses each: an explorer, a gateway behind\n"
            "# NAT), each judged by its own address with its own budget, not its group's\n"
            f"api_trusted_clients = [{trusted}]\n"
            f"api_reads_per_trusted_client = {self.api_reads_per_trusted_client}\n\n"
            "# debug | info | warning | error\n"
            f"log_level = {json.dumps(self.log_level)}\n\n"
            "# declared uplink reported in NODE_CONFIRM (not measurable from inside the node)\n"
            f"bandwidth_mbit = {self.bandwidth_mbit}\n"
            "# send confirmations and uptime attestations with the node key\n"
            f"duties = {'true' if self.duties else 'false'}\n\n"
            "# the node daemon (`fluxchain agent`, docs/agent.md): with agent = true, /health\n"
            "# is unhealthy (and the node is reported down) while no agent reports to it\n"
            f"agent = {'true' if self.agent else 'false'}\n"
            "# docker (Docker Engine at docker_url) | process (local commands; tests, devnets)\n"
            f"agent_runtime = {json.dumps(self.agent_runtime)}\n"
            "# address the workloads' ports are published on\n"
            f"agent_bind = {json.dumps(self.agent_bind)}\n"
            f"docker_url = {json.dumps(self.docker_url)}\n\n"
            "# snapshots served to state-syncing peers: one every snapshot_interval blocks\n"
            "# (0: none), the snapshot_keep newest kept\n"
            f"snapshot_interval = {self.snapshot_interval}\n"
            f"snapshot_keep = {self.snapshot_keep}\n"
            "# state sync: a new home with a trusted header (height, block hash in hex) takes\n"
            "# the state at that height from its peers' snapshots (0: replay from genesis)\n"
            f"trust_height = {self.trust_height}\n"
            f"trust_hash = {json.dumps(self.trust_hash)}\n\n"
            "# seed mode: only answer peer exchange (a network's seeds), keep no peer\n"
            f"seed_mode = {'true' if self.seed_mode else 'false'}\n\n"
            "# /apps/{name} asks the hosting nodes' agents at their registered endpoints;\n"
            "# also at loopback (a devnet on one machine) / private (one LAN) addresses?\n"
            "# Keep both false on a public network (docs/apps.md)\n"
            f"reports_from_loopback = {'true' if self.reports_from_loopback else 'false'}\n"
            f"reports_from_private = {'true' if self.reports_from_private else 'false'}\n"
        )

    @classmethod
    def from_toml(cls, text: str) -> NodeConfig:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FluxError(Reason.BAD_FIELD, f"config.toml: {exc}") from None
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise FluxError(Reason.BAD_FIELD, f"config.toml: unknown keys {unknown}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            expected = type(cls.__dataclass_fields__[name].default)
            values[name] = tuple(value) if expected is tuple and type(value) is list else value
            if type(values[name]) is not expected:
                raise FluxError(
                    Reason.BAD_FIELD,
                    f"config.toml: {name} must be {_TOML_TYPES.get(expected, expected.__name__)}",
                )
        config = cls(**values)
        _check_addresses(config)
        for key, parse in (
            ("p2p_uncapped_networks", parse_networks),
            ("api_trusted_proxies", parse_proxies),
            ("api_trusted_clients", parse_trusted_clients),
        ):
            try:
                parse(getattr(config, key))
            except (ValueError, TypeError) as exc:
                raise FluxError(Reason.BAD_FIELD, f"config.toml: {key}: {exc}") from None
        _check_read_budget(config)
        for port in (config.p2p_port, config.api_port):
            if type(port) is not int or not 0 <= port < 65536:
                raise FluxError(Reason.BAD_FIELD, f"config.toml: port {port!r} is invalid")
        if config.agent_runtime not in ("docker", "process"):
            raise FluxError(
                Reason.BAD_FIELD, f"config.toml: agent_runtime {config.agent_runtime!r}"
            )
        _check_state_sync(config)
        if config.log_level not in ("debug", "info", "warning", "error"):
            raise FluxError(Reason.BAD_FIELD, f"config.toml: log_level {config.log_level!r}")
        return config


def _check_read_budget(config: NodeConfig) -> None:
    """Each bound of the API's read budget lets something through: 0 would refuse every
    client off this host (keep the API on 127.0.0.1 for that)."""
    for key in (
        "api_reads_per_client",
        "api_reads_per_node",
        "api_replays_per_client",
        "api_replays_per_node",
        "api_reads_per_trusted_client",
    ):
        if getattr(config, key) < 1:
            raise FluxError(Reason.BAD_FIELD, f"config.toml: {key} must be at least 1")


def _check_addresses(config: NodeConfig) -> None:
    """Every peer address of the config is canonical "[node_key_hex@]host:port", the
    advertised one "host:port"."""
    for key in ("persistent_peers", "seeds"):
        for address in getattr(config, key):
            _check_address(key, address, pinned=True)
    if config.p2p_advertise:
        _check_address("p2p_advertise", config.p2p_advertise, pinned=False)
    elif "%" in config.p2p_host:
        # With no p2p_advertise the HELLO carries p2p_host:p2p_port, and every peer refuses
        # a zoned address (`bad_field`): the node would start and never link.
        raise FluxError(
            Reason.BAD_FIELD,
            f"config.toml: p2p_host {config.p2p_host!r} has an IPv6 zone, which peers refuse "
            "in the address this node advertises; set p2p_advertise to a routed host:port",
        )


def _check_address(key: str, address: object, *, pinned: bool) -> None:
    """Refuse a peer address that is not canonical (a typo fails at start)."""
    form = "host:port or node_key_hex@host:port" if pinned else "host:port"
    try:
        if type(address) is not str:
            raise ValueError("not a string")
        if pinned:
            parse_peer_address(address)
        else:
            parse_address(address)
    except ValueError as exc:
        detail = f"config.toml: {key}: {address!r} is not {form} ({exc})"
        raise FluxError(Reason.BAD_FIELD, detail) from None


def _check_state_sync(config: NodeConfig) -> None:
    if config.snapshot_interval < 0 or config.snapshot_keep < 1:
        raise FluxError(Reason.BAD_FIELD, "config.toml: snapshot_interval >= 0, snapshot_keep >= 1")
    hash_ok = len(config.trust_hash) == 64 and all(
        c in "0123456789abcdef" for c in config.trust_hash
    )
    if config.trust_height < 0 or (config.trust_height > 0) != hash_ok:
        raise FluxError(
            Reason.BAD_FIELD, "config.toml: trust_height > 0 comes with trust_hash, 64 hex digits"
        )


class Home:
    """Paths and files of one node home."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def data(self) -> Path:
        return self.path / DATA

    @property
    def signer_file(self) -> Path:
        return self.path / SIGNER

    def exists(self) -> bool:
        return (self.path / CONFIG).exists()

    def config(self) -> NodeConfig:
        return NodeConfig.from_toml((self.path / CONFIG).read_text())

    def genesis(self) -> Genesis:
        return Genesis.load(self.path / GENESIS)

    def node_key(self) -> SigningKey:
        try:
            raw = json.loads((self.path / NODE_KEY).read_text())
            return SigningKey(bytes.fromhex(raw["secret"]))
        except (OSError, ValueError, KeyError) as exc:
            raise FluxError(Reason.BAD_FIELD, f"cannot read {NODE_KEY}: {exc}") from None

    def write_config(self, config: NodeConfig) -> None:
        _write_atomic(self.path / CONFIG, config.to_toml().encode(), 0o644)

    def write_ports(self, p2p_port: int, api_port: int) -> None:
        """Record the listening ports of this process (its pid tells readers it is current)."""
        body = {"pid": os.getpid(), "p2p": p2p_port, "api": api_port}
        _write_atomic(self.path / PORTS, json.dumps(body).encode(), 0o644)

    def bound_ports(self) -> BoundPorts | None:
        """What the last node started in this home bound, or None before it listened."""
        try:
            raw = json.loads((self.path / PORTS).read_text())
            return BoundPorts(int(raw["pid"]), int(raw["p2p"]), int(raw["api"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FluxError(Reason.BAD_FIELD, f"cannot read {PORTS}: {exc}") from None


@dataclass(frozen=True, slots=True)
class BoundPorts:
    """A node process and the ports its p2p and API listeners bound."""

    pid: int
    p2p: int
    api: int


def init_home(
    path: Path, genesis: Genesis, config: NodeConfig, key: SigningKey | None = None
) -> Home:
    """Create a home; refuse to overwrite one (a node key must never be replaced silently)."""
    home = Home(path)
    if home.exists() or (path / NODE_KEY).exists():
        raise FluxError(Reason.BAD_FIELD, f"{path} already holds a node home")
    path.mkdir(parents=True, exist_ok=True)
    key = key or SigningKey.generate()
    secret = {"secret": key.secret.hex(), "public_key": key.public_key.hex()}
    _write_atomic(path / NODE_KEY, json.dumps(secret).encode(), 0o600)
    genesis.save(path / GENESIS)
    home.write_config(config)
    return home


def _write_atomic(target: Path, data: bytes, mode: int) -> None:
    """Write-then-rename with fsync, so a crash leaves the old file or the new, never half."""
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
