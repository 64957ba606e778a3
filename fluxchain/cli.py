"""`fluxchain`: the node's command line — init, run, agent, devnet, genesis."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from fluxchain.agent.agent import Agent
from fluxchain.agent.docker import DockerRuntime
from fluxchain.agent.process import ProcessRuntime
from fluxchain.agent.runtime import Runtime
from fluxchain.agent.syncthing import Syncthing, resolve_ipv4
from fluxchain.agent.volumes import VolumeKeeper
from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import FluxError, Reason
from fluxchain.core.genesis import Genesis, genesis_supply
from fluxchain.core.params import COIN
from fluxchain.gateway.haproxy import ProxySettings
from fluxchain.gateway.proxy import ProxyError
from fluxchain.gateway.routes import DOMAIN, split_address
from fluxchain.gateway.service import Gateway, GatewayConfig, is_ip
from fluxchain.genesis_builder import devnet_params, mainnet_params, new_devnet_genesis
from fluxchain.node import supervisor
from fluxchain.node.agent_link import load_or_create_token
from fluxchain.node.devnet import create_devnet, existing_members, run_devnet, workload_host
from fluxchain.node.home import Home, NodeConfig, init_home
from fluxchain.node.node import Node
from fluxchain.node.profiling import LOOP_TURNS_ENV, PROFILE_ENV, loop_turns, profiled
from wallet.hd import INSECURE_TEST_MNEMONIC, check_mnemonic, derive_key, node_key_path


def _fail(exc: FluxError) -> None:
    click.echo(f"error [{exc.reason}]: {exc.message}", err=True)
    sys.exit(1)


@click.group()
@click.version_option(package_name="fluxchain")
def main() -> None:
    """fluxchain: a full node for a chain that runs a decentralized cloud."""


@main.group()
def genesis() -> None:
    """Create and inspect genesis files."""


@genesis.command("new")
@click.option(
    "--validators",
    "-n",
    type=click.IntRange(1, 100),
    default=4,
    show_default=True,
    help="Number of Stratus validator nodes.",
)
@click.option("--chain-id", default="flux-devnet", show_default=True)
@click.option(
    "--mnemonic",
    envvar="FLUX_GENESIS_MNEMONIC",
    default=None,
    help="Mnemonic the keys derive from (env FLUX_GENESIS_MNEMONIC). "
    "Default: the published BIP39 test mnemonic — insecure, devnets only.",
)
@click.option(
    "--shape",
    type=click.Choice(["devnet", "mainnet"]),
    default="devnet",
    show_default=True,
    help="devnet: 1 s blocks, short windows; mainnet: the public Flux network's values.",
)
@click.option("--time-ms", type=click.IntRange(0), default=0, help="Genesis time, ms since epoch.")
@click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    metavar="HOST:PORT",
    help="Validator i's API endpoint, once per validator in order (uptime checkers probe "
    "http://HOST:PORT/health). Default: 127.0.0.1:26700+i.",
)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
def genesis_new(
    validators: int,
    chain_id: str,
    mnemonic: str | None,
    shape: str,
    time_ms: int,
    endpoints: tuple[str, ...],
    out: Path,
) -> None:
    """Write a genesis file for N validators with funded dev accounts.

    \b
    Examples:
      fluxchain genesis new -n 4 --out genesis.json
      fluxchain genesis new -n 2 --endpoint node0:26700 --endpoint node1:26700 -o genesis.json
    """
    try:
        words = check_mnemonic(mnemonic) if mnemonic else INSECURE_TEST_MNEMONIC
        params = devnet_params(chain_id) if shape == "devnet" else mainnet_params(chain_id, "flux")
        doc = new_devnet_genesis(
            validators,
            chain_id=chain_id,
            mnemonic=words,
            genesis_time_ms=time_ms,
            endpoints=endpoints or None,
            params=params,
        )
    except FluxError as exc:
        _fail(exc)
        return
    doc.save(out)
    click.echo(f"wrote {out}: chain {chain_id}, {validators} validators, hash {doc.hash().hex()}")
    if words == INSECURE_TEST_MNEMONIC:
        click.echo(
            "warning: keys derive from the public test mnemonic; never use them with value",
            err=True,
        )


@genesis.command("show")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def genesis_show(path: Path, as_json: bool) -> None:
    """Validate a genesis file and print its hash and totals."""
    try:
        doc = Genesis.load(path)
    except FluxError as exc:
        _fail(exc)
        return
    summary = {
        "chain_id": doc.chain_id,
        "hash": doc.hash().hex(),
        "validators": len(doc.validator_set().validators),
        "nodes": len(doc.nodes),
        "accounts": len(doc.balances),
        "supply_flux": genesis_supply(doc) // COIN,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            click.echo(f"{key:12} {value}")


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"


def setup_logging(level: str) -> None:
    """key=value lines on stderr; quiet (warning) unless the config says otherwise."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@main.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for the node's config, keys and data.",
)
@click.option(
    "--genesis",
    "genesis_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The chain's genesis file.",
)
@click.option(
    "--key",
    "key_hex",
    default=None,
    envvar="FLUX_NODE_KEY",
    help="Node key secret (64 hex chars, env FLUX_NODE_KEY); default: a new one.",
)
@click.option(
    "--dev-key",
    "dev_key_index",
    type=click.IntRange(0),
    default=None,
    help="Use node key I derived from the genesis's published test mnemonic "
    "(validator I of a devnet genesis). Devnets only: anyone can derive it.",
)
@click.option("--p2p-host", default="127.0.0.1", show_default=True, help="p2p listen address.")
@click.option("--p2p-port", type=click.IntRange(0, 65535), default=26600, show_default=True)
@click.option(
    "--api-host",
    default="127.0.0.1",
    show_default=True,
    help="API listen address (0.0.0.0 inside a container; POST /txs is open).",
)
@click.option("--api-port", type=click.IntRange(0, 65535), default=26700, show_default=True)
@click.option(
    "--api-trusted-proxy",
    "api_trusted_proxies",
    multiple=True,
    metavar="CIDR",
    help="Network of a reverse proxy in front of the API (repeatable): on its connections "
    "the client is the one its X-Forwarded-For names; nobody else's header is read.",
)
@click.option(
    "--p2p-advertise",
    default="",
    metavar="HOST:PORT",
    help="Address peers dial to reach this node, when not --p2p-host:--p2p-port "
    "(listening on 0.0.0.0, behind NAT). Default: the listen address.",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    help="[node_key_hex@]host:port of a peer to stay connected to; with the key, no other "
    "node is accepted at that address.",
)
@click.option(
    "--seeds",
    default="",
    metavar="[KEY@]HOST:PORT,...",
    help="Comma-separated nodes of an existing network to learn the others from; with the "
    "network's --genesis file, one seed is enough to join. Give each as node_key_hex@host:port "
    "(the key its `fluxchain init` printed) so that whoever else answers there is refused.",
)
@click.option(
    "--seed-mode",
    is_flag=True,
    default=False,
    help="Run as a seed: answer peer exchange and hang up, keep no peer (CometBFT's seed mode).",
)
@click.option("--moniker", default="fluxnode", show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
@click.option(
    "--agent/--no-agent",
    default=False,
    show_default=True,
    help="A node daemon (`fluxchain agent`) runs this node's apps; the node is healthy only "
    "while it reports. Also writes the agent token, so node and agent never race for it.",
)
@click.option(
    "--agent-runtime",
    type=click.Choice(["docker", "process"]),
    default="docker",
    show_default=True,
)
@click.option(
    "--agent-bind",
    default=NodeConfig().agent_bind,
    show_default=True,
    help="Host address the apps' ports are published on.",
)
@click.option(
    "--trust-height",
    type=click.IntRange(0),
    default=0,
    help="State sync: the height of a block you trust (0: replay from genesis).",
)
@click.option(
    "--trust-hash",
    default="",
    help="State sync: that block's hash in hex (from a node or explorer you trust).",
)
@click.option(
    "--snapshot-interval",
    type=click.IntRange(0),
    default=NodeConfig().snapshot_interval,
    show_default=True,
    help="Take a state snapshot every this many blocks, for peers to state-sync from (0: never).",
)
@click.option(
    "--reports-from-loopback",
    is_flag=True,
    help="Ask hosting nodes registered at loopback addresses for their app reports (a "
    "devnet on one machine; never on a public network).",
)
@click.option(
    "--reports-from-private",
    is_flag=True,
    help="Ask hosting nodes registered at private (RFC 1918, fc00::/7, 100.64/10) addresses "
    "for their app reports (a network inside one LAN or container network).",
)
def init(
    home: Path,
    genesis_file: Path,
    key_hex: str | None,
    dev_key_index: int | None,
    p2p_host: str,
    p2p_port: int,
    api_host: str,
    api_port: int,
    api_trusted_proxies: tuple[str, ...],
    p2p_advertise: str,
    peers: tuple[str, ...],
    seeds: str,
    seed_mode: bool,
    moniker: str,
    log_level: str,
    agent: bool,
    agent_runtime: str,
    agent_bind: str,
    trust_height: int,
    trust_hash: str,
    snapshot_interval: int,
    reports_from_loopback: bool,
    reports_from_private: bool,
) -> None:
    """Create a node home: config.toml, genesis.json, node_key.json (0600).

    \b
    Examples:
      fluxchain init --home ~/.fluxnode --genesis genesis.json --peer 10.0.0.2:26600
      fluxchain init --home /data/node1 --genesis genesis.json --dev-key 1 \\
          --p2p-host 0.0.0.0 --api-host 0.0.0.0 --peer node0:26600
      fluxchain init --home ~/.fluxnode --genesis genesis.json --p2p-host 0.0.0.0 \\
          --p2p-advertise 203.0.113.7:26600 --seeds NODE_KEY_HEX@198.51.100.2:26600
      fluxchain init --home ~/.fluxnode --genesis genesis.json --peer 10.0.0.2:26600 \\
          --trust-height 20000 --trust-hash 5c1f…   (state sync: docs/storage.md)
    """
    if key_hex and dev_key_index is not None:
        click.echo("error [bad_field]: give --key or --dev-key, not both", err=True)
        sys.exit(1)
    try:
        doc = Genesis.load(genesis_file)
        key = SigningKey(bytes.fromhex(key_hex)) if key_hex else None
        if dev_key_index is not None:
            key = _dev_node_key(doc, dev_key_index)
        config = NodeConfig(
            moniker=moniker,
            p2p_host=p2p_host,
            p2p_port=p2p_port,
            persistent_peers=peers,
            seeds=tuple(a.strip() for a in seeds.split(",") if a.strip()),
            p2p_advertise=p2p_advertise,
            api_host=api_host,
            api_port=api_port,
            api_trusted_proxies=api_trusted_proxies,
            log_level=log_level,
            agent=agent,
            agent_runtime=agent_runtime,
            agent_bind=agent_bind,
            snapshot_interval=snapshot_interval,
            trust_height=trust_height,
            trust_hash=trust_hash.lower(),
            seed_mode=seed_mode,
            reports_from_loopback=reports_from_loopback,
            reports_from_private=reports_from_private,
        )
        NodeConfig.from_toml(config.to_toml())  # the checks `run` makes, before writing
        init_home(home, doc, config, key)
        if agent:
            load_or_create_token(home)
    except ValueError:
        click.echo("error [bad_field]: --key must be 64 hex characters", err=True)
        sys.exit(1)
    except FluxError as exc:
        _fail(exc)
        return
    node_key = Home(home).node_key().public_key.hex()
    click.echo(f"initialised {home} for chain {doc.chain_id}; node key {node_key}")


def _dev_node_key(doc: Genesis, index: int) -> SigningKey:
    """Node key `index` of a devnet genesis, from the test mnemonic it publishes."""
    if not doc.insecure_dev_mnemonic:
        raise FluxError(
            Reason.BAD_FIELD,
            "--dev-key needs a devnet genesis that publishes its insecure_dev_mnemonic",
        )
    return derive_key(doc.insecure_dev_mnemonic, node_key_path(index))


@main.command()
@click.option(
    "--home",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="A directory made by `fluxchain init`.",
)
@click.option(
    "--seed-mode",
    is_flag=True,
    default=False,
    help="Run as a seed this time (as seed_mode = true in config.toml does).",
)
def run(home: Path, seed_mode: bool) -> None:
    """Run a node until SIGINT/SIGTERM; a restart resumes where it stopped.

    \b
    Examples:
      fluxchain run --home ~/.fluxnode
      fluxchain run --home ~/.fluxseed --seed-mode   (answer peer exchange only)
    """
    try:
        node_home = Home(home)
        setup_logging(node_home.config().log_level)
        node = Node(node_home)
        if seed_mode:
            node.config = dataclasses.replace(node.config, seed_mode=True)
    except FluxError as exc:
        _fail(exc)
        return
    try:
        with (
            profiled(os.environ.get(PROFILE_ENV)),  # docs/performance.md, opt-in
            loop_turns(os.environ.get(LOOP_TURNS_ENV)),
        ):
            asyncio.run(node.run())
    except FluxError as exc:  # a StoreError: the disk failed or holds damaged data
        _fail(exc)


@main.command()
@click.option(
    "--home",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The home of the node this agent serves (its config, key and token).",
)
@click.option(
    "--runtime",
    type=click.Choice(["docker", "process"]),
    default=None,
    help="Overrides config.toml's agent_runtime: docker, or process (devnets and tests).",
)
@click.option(
    "--bind",
    default=None,
    help="Overrides config.toml's agent_bind: the address workloads publish their ports on.",
)
@click.option(
    "--node-url",
    default=None,
    help="The node's API as this agent reaches it (another container: http://node0:26700). "
    "Default: from config.toml, 127.0.0.1 when the API listens on every interface.",
)
@click.option(
    "--volumes-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the Docker runtime keeps apps' declared volumes (default: <home>/agent/"
    "volumes). An agent in a container: a host directory mounted at this same path.",
)
@click.option(
    "--sync-bind",
    default=None,
    help="The address (or a name resolving to it) its Syncthing listens on for the other "
    "hosts of its apps. Default: --bind. In a container: its address on the nodes' network.",
)
def agent(
    home: Path,
    runtime: str | None,
    bind: str | None,
    node_url: str | None,
    volumes_dir: Path | None,
    sync_bind: str | None,
) -> None:
    """Run the node daemon: keep the apps the chain assigns this node running.

    It follows the node's confirmed blocks through the node's API, starts and stops the
    node's workloads on Docker (or as local processes) and reports them to the node,
    whose /health fails without it when config.toml says `agent = true`.

    \b
    Example:
      fluxchain agent --home ~/.fluxnode --runtime docker
    """
    try:
        node_home = Home(home)
        config = node_home.config()
        setup_logging(config.log_level)
        daemon = build_agent(
            node_home,
            config,
            runtime,
            bind,
            node_url,
            volumes_dir=volumes_dir,
            sync_bind=_sync_address(sync_bind),
        )
    except FluxError as exc:
        _fail(exc)
        return
    asyncio.run(_run_until_signalled(daemon))


def _sync_address(sync_bind: str | None) -> str | None:
    if sync_bind is None:
        return None
    try:
        return resolve_ipv4(sync_bind)
    except OSError as exc:
        raise click.BadParameter(
            f"{sync_bind!r} does not resolve: {exc}", param_hint="--sync-bind"
        ) from None


def build_agent(
    home: Home,
    config: NodeConfig,
    runtime: str | None,
    bind: str | None,
    node_url: str | None = None,
    *,
    volumes_dir: Path | None = None,
    sync_bind: str | None = None,
) -> Agent:
    """The agent of the node in `home`, on the runtime its config (or the caller) names;
    `volumes_dir` and `sync_bind` place the Docker runtime's volumes and its Syncthing when
    the agent runs in a container (docs/containers.md)."""
    bind = bind or config.agent_bind
    directory = home.path / "agent"
    directory.mkdir(exist_ok=True)
    node_signing_key = home.node_key()
    node_key = node_signing_key.public_key.hex()
    chosen: Runtime
    if (runtime or config.agent_runtime) == "docker":
        chosen = DockerRuntime(config.docker_url, node_key[:12], bind, directory, volumes_dir)
    else:
        chosen = ProcessRuntime(directory / "process", bind)
    api_host = "127.0.0.1" if config.api_host in ("0.0.0.0", "::") else config.api_host
    # started on first need: a node hosting no replicated volume runs no Syncthing
    volumes = VolumeKeeper(Syncthing(directory / "syncthing", sync_bind or bind), chosen, node_key)
    return Agent(
        node_url or f"http://{api_host}:{config.api_port}",
        load_or_create_token(home.path),
        node_key,
        chosen,
        directory / "state.json",
        bind,
        volumes=volumes,
        node_secret=node_signing_key.secret,  # opens the app secrets sealed to this node
    )


async def _run_until_signalled(daemon: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await daemon.run(stop)


@main.command()
@click.option(
    "--node",
    "node_urls",
    multiple=True,
    default=["http://127.0.0.1:26700"],
    show_default=True,
    help="The API of a node whose confirmed blocks the gateway follows (your own); repeat "
    "it to name others it moves to while the first does not answer.",
)
@click.option(
    "--domain",
    required=True,
    help="Every app answers at <app>.<domain> (point a wildcard DNS record here).",
)
@click.option("--bind", "bind_host", default="127.0.0.1", show_default=True)
@click.option("--http-port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".gateway"),
    show_default=True,
    help="HAProxy's config, sockets and log, and the gateway's status.json.",
)
@click.option(
    "--loopback-is-one-host",
    is_flag=True,
    help="Devnets on one machine: a node whose endpoint is on loopback may publish apps on "
    "any loopback address (docs/ingress.md).",
)
@click.option(
    "--no-private-hosts",
    is_flag=True,
    help="Never route to a node's private address (10/8, 172.16/12, 192.168/16, 100.64/10, "
    "fc00::/7): for a gateway inside a private network it must not expose (docs/ingress.md).",
)
@click.option(
    "--reach",
    "reach",
    multiple=True,
    metavar="ENDPOINT=IP:PORT",
    help="Reach the node registered with ENDPOINT (host:port) at IP:PORT instead, and "
    "accept its apps only on that IP's host: for a gateway outside the network whose "
    "names the nodes registered (the compose devnet, docs/ingress.md). Repeatable.",
)
@click.option("--haproxy", "haproxy_bin", default="haproxy", show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def gateway(
    node_urls: tuple[str, ...],
    domain: str,
    bind_host: str,
    http_port: int,
    state_dir: Path,
    loopback_is_one_host: bool,
    no_private_hosts: bool,
    reach: tuple[str, ...],
    haproxy_bin: str,
    log_level: str,
) -> None:
    """Run an ingress: HAProxy routing <app>.<domain> to the instances the chain placed.

    \b
    Example:
      fluxchain gateway --node http://127.0.0.1:26700 --domain apps.example.org \\
          --bind 0.0.0.0 --http-port 80 --state /var/lib/fluxgateway
    """
    domain = domain.lower().strip(".")
    if not DOMAIN.fullmatch(domain):
        raise click.BadParameter(f"{domain!r} is not a DNS name", param_hint="--domain")
    reach_map = {}
    for entry in reach:
        endpoint, _, address = entry.partition("=")
        where = split_address(address)
        if split_address(endpoint) is None or where is None or not is_ip(where[0]):
            raise click.BadParameter(
                f"{entry!r} is not ENDPOINT=IP:PORT (an IP literal: no name to resolve)",
                param_hint="--reach",
            )
        reach_map[endpoint.lower()] = address
    setup_logging(log_level)
    config = GatewayConfig(
        node_urls,
        domain,
        ProxySettings(bind_host, http_port, state_dir.resolve()),
        loopback_is_one_host=loopback_is_one_host,
        private_is_routable=not no_private_hosts,
        haproxy=haproxy_bin,
        reach=reach_map,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Gateway(config).run(stop)

    try:
        asyncio.run(serve())
    except (ProxyError, FileNotFoundError) as exc:
        click.echo(f"error [gateway]: {exc}", err=True)
        sys.exit(1)


@main.group()
def devnet() -> None:
    """A local devnet of validator processes on 127.0.0.1."""


@devnet.command("up")
@click.option("--nodes", "-n", type=click.IntRange(1, 20), default=4, show_default=True)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".devnet"),
    show_default=True,
    help="Directory for the devnet (reused if it exists).",
)
@click.option("--p2p-base", type=click.IntRange(1024, 65000), default=26600, show_default=True)
@click.option("--api-base", type=click.IntRange(1024, 65000), default=26700, show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--agents/--no-agents",
    default=True,
    show_default=True,
    help="Run each node's agent on the process runtime, so deployed apps really run "
    "(as local processes: devnet apps run commands on this machine).",
)
@click.option(
    "--gateway-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="The gateway's HTTP port (with agents; docs/ingress.md). Default: API base + 80.",
)
def devnet_up(
    nodes: int,
    home: Path,
    p2p_base: int,
    api_base: int,
    log_level: str,
    agents: bool,
    gateway_port: int,
) -> None:
    """Start N validators from a fresh genesis (or resume the devnet in --home); Ctrl-C stops.

    \b
    Example:
      fluxchain devnet up --nodes 4 --home .devnet
    """
    if (home / "devnet.json").exists():
        members = existing_members(home)
        click.echo(f"resuming the devnet in {home}")
    else:
        _, members = create_devnet(
            home,
            nodes,
            p2p_base=p2p_base,
            api_base=api_base,
            log_level=log_level,
            agents=agents,
            gateway_port=gateway_port,
        )
    table = Table(title=f"fluxchain devnet ({len(members)} validators) — Ctrl-C to stop")
    for column in ("node", "API", "p2p", "apps answer on", "home / logs"):
        table.add_column(column)
    for m in members:
        with_agent = Home(m.home).config().agent
        table.add_row(
            f"node{m.index}",
            m.api,
            m.p2p,
            workload_host(m.index) if with_agent else "(no agent)",
            f"{m.home}/node.log" + (", agent.log" if with_agent else ""),
        )
    console = Console()
    console.print(table)
    console.print(f"accounts and keys: {home}/devnet.json (published test mnemonic: devnets only)")
    console.print(
        "a node that dies stays down while the others run on; from another terminal: "
        f"fluxchain devnet start|stop|kill NODE --home {home} (and: devnet status)"
    )
    try:
        status = run_devnet(home, members)
    except supervisor.ControlError as exc:  # another launcher already runs this devnet
        raise click.ClickException(str(exc)) from None
    sys.exit(status)


DEVNET_HOME = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".devnet"),
    show_default=True,
    help="The directory of the running devnet.",
)


def _control(home: Path, command: str, node: str | None) -> dict[str, Any]:
    """One request to the running devnet's supervisor; a clear error when none runs."""
    try:
        return supervisor.request(home, command, node)
    except supervisor.ControlError as exc:
        raise click.ClickException(str(exc)) from None


@devnet.command("start")
@click.argument("node")
@DEVNET_HOME
def devnet_start(node: str, home: Path) -> None:
    """Start NODE (e.g. node3: its `run` and `agent`) again in the running devnet."""
    click.echo(_control(home, "start", node)["message"])


@devnet.command("stop")
@click.argument("node")
@DEVNET_HOME
def devnet_stop(node: str, home: Path) -> None:
    """Stop NODE's processes gracefully (SIGTERM); the rest of the devnet runs on."""
    click.echo(_control(home, "stop", node)["message"])


@devnet.command("kill")
@click.argument("node")
@DEVNET_HOME
def devnet_kill(node: str, home: Path) -> None:
    """SIGKILL NODE's `run` and `agent`, as if its machine died (its apps keep running)."""
    click.echo(_control(home, "kill", node)["message"])


@devnet.command("status")
@DEVNET_HOME
def devnet_status(home: Path) -> None:
    """Which processes of the running devnet run, with their pids."""
    groups = _control(home, "status", None)["groups"]
    for group, roles in groups.items():
        parts = [f"{role} {'pid ' + str(pid) if pid else 'down'}" for role, pid in roles.items()]
        click.echo(f"{group}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
