"""A local devnet: N validator processes on loopback from a fresh genesis.

`fluxchain devnet up --nodes N --home DIR` creates DIR/node0..N-1 (node i: p2p port
base+i, API port api_base+i, node key i of the devnet mnemonic), starts one
`fluxchain run` process per node and, unless --no-agents, one `fluxchain agent` on the
process runtime (node i's apps answer on 127.0.1.<i+1>), writes DIR/devnet.json (chain
id, each node's API and p2p address, the funded dev accounts and where their keys come
from) and runs them under a Supervisor (fluxchain/node/supervisor.py): a node that dies
is named and left down while the others run on, `fluxchain devnet start NODE` starts it
again, and Ctrl-C or SIGTERM stops them all, with the apps their agents ran.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxchain.agent.process import ProcessRuntime
from fluxchain.core.crypto import address_of, encode_address
from fluxchain.core.genesis import Genesis
from fluxchain.gateway.devnet import PORT_OFFSET, devnet_gateway, devnet_gateway_argv, gateway_log
from fluxchain.genesis_builder import DEV_ACCOUNT_BALANCE, DEV_ACCOUNTS, new_devnet_genesis
from fluxchain.node.home import Home, NodeConfig, init_home
from fluxchain.node.supervisor import Program, Supervisor
from p2p.netgroup import LOOPBACK_NETWORKS
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key, node_key_path


@dataclass(frozen=True, slots=True)
class DevnetNode:
    index: int
    home: Path
    p2p: str
    api: str


def create_devnet(
    root: Path,
    nodes: int,
    *,
    chain_id: str = "flux-devnet",
    p2p_base: int = 26600,
    api_base: int = 26700,
    log_level: str = "info",
    genesis_time_ms: int | None = None,
    agents: bool = True,
    gateway_port: int = 0,
) -> tuple[Genesis, list[DevnetNode]]:
    """Write genesis and N node homes under `root` (which must not hold a devnet yet)."""
    if (root / "devnet.json").exists():
        raise FileExistsError(f"{root} already holds a devnet; remove it or pick another --home")
    start = int(time.time() * 1000) if genesis_time_ms is None else genesis_time_ms
    genesis = new_devnet_genesis(
        nodes, chain_id=chain_id, genesis_time_ms=start, base_api_port=api_base
    )
    members = []
    for i in range(nodes):
        peers = tuple(f"127.0.0.1:{p2p_base + j}" for j in range(nodes) if j != i)
        config = NodeConfig(
            moniker=f"node{i}",
            p2p_port=p2p_base + i,
            persistent_peers=peers,
            p2p_uncapped_networks=LOOPBACK_NETWORKS,  # every node of it is 127.0.0.1
            api_port=api_base + i,
            log_level=log_level,
            agent=agents,
            agent_runtime="process",
            agent_bind=workload_host(i),
            reports_from_loopback=True,  # its hosts' endpoints are 127.0.0.1 too
        )
        home = root / f"node{i}"
        init_home(home, genesis, config, derive_key(INSECURE_TEST_MNEMONIC, node_key_path(i)))
        members.append(
            DevnetNode(i, home, f"127.0.0.1:{p2p_base + i}", f"http://127.0.0.1:{api_base + i}")
        )
    described = describe(genesis, members)
    if agents:  # the devnet's ingress: every app at <app>.apps.localhost (docs/ingress.md)
        described["gateway"] = devnet_gateway(root, gateway_port or api_base + PORT_OFFSET)
    (root / "devnet.json").write_text(json.dumps(described, indent=2) + "\n")
    return genesis, members


def workload_host(i: int) -> str:
    """Node i's apps publish on their own loopback address, as if on separate machines."""
    return f"127.0.1.{i + 1}"


def describe(genesis: Genesis, members: list[DevnetNode]) -> dict[str, Any]:
    hrp = genesis.params.address_hrp
    accounts = []
    for i in range(len(members) + DEV_ACCOUNTS):
        key = derive_key(INSECURE_TEST_MNEMONIC, account_path(i))
        accounts.append(
            {
                "index": i,
                "address": encode_address(address_of(key.public_key), hrp),
                "path": account_path(i),
                "balance": DEV_ACCOUNT_BALANCE,
                "role": "validator owner" if i < len(members) else "dev account",
            }
        )
    return {
        "chain_id": genesis.chain_id,
        "genesis_hash": genesis.hash().hex(),
        "mnemonic": INSECURE_TEST_MNEMONIC,
        "mnemonic_warning": "published test mnemonic: anyone can spend these keys",
        "nodes": [
            {
                "name": f"node{m.index}",
                "home": str(m.home),
                "api": m.api,
                "p2p": m.p2p,
                "apps_host": workload_host(m.index),
            }
            for m in members
        ],
        "accounts": accounts,
    }


def programs(members: list[DevnetNode]) -> list[Program]:
    """What the devnet runs: each node's `fluxchain run`, and its agent when configured.

    Other devnet programs (a gateway beside the nodes) are added to this list: the
    supervisor keeps them the same way, under a group name of their own."""
    out = []
    for m in members:
        group = f"node{m.index}"
        out.append(Program(group, "run", node_argv(m.home, "run"), m.home / "node.log"))
        if Home(m.home).config().agent:
            out.append(Program(group, "agent", node_argv(m.home, "agent"), m.home / "agent.log"))
    return out


def node_argv(home: Path, command: str = "run") -> tuple[str, ...]:
    """`fluxchain run --home HOME` (or `agent`) with this interpreter.

    -P: never import from the current directory (a stray timeit.py there would win)."""
    return (sys.executable, "-P", "-m", "fluxchain.cli", command, "--home", str(home))


def start_node(home: Path, log_file: Path, command: str = "run") -> subprocess.Popen[bytes]:
    """Start `fluxchain run --home HOME` (or `agent`) alone, its output in `log_file`
    (benchmarks drive nodes this way; the devnet runs them under its Supervisor)."""
    with log_file.open("ab") as out:
        return subprocess.Popen(
            node_argv(home, command),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches the caller, not each node
        )


def run_devnet(root: Path, members: list[DevnetNode]) -> int:
    """Run every node under a Supervisor until Ctrl-C / SIGTERM; return an exit status.

    A node that dies is reported and left down while the others run on; `fluxchain
    devnet start NODE` starts it again (fluxchain/node/supervisor.py)."""
    announced: dict[int, int] = {}  # node index -> pid whose ports were printed

    def report_listening(supervisor: Supervisor) -> None:
        """Print each node's ports once its process listens (again after a restart)."""
        for program in supervisor.programs:
            if program.role != "run":
                continue
            index = int(program.group.removeprefix("node"))
            pid = supervisor.pid(program)
            ports = Home(members[index].home).bound_ports()
            if pid is None or ports is None or ports.pid != pid or announced.get(index) == pid:
                continue
            announced[index] = pid
            print(
                f"{program.group} listening: p2p 127.0.0.1:{ports.p2p}, "
                f"API http://127.0.0.1:{ports.api}",
                flush=True,
            )

    def say(line: str) -> None:
        print(line, flush=True)

    devnet_programs = programs(members)
    gateway = devnet_gateway_argv(root, [m.api for m in members])
    if gateway is not None:
        devnet_programs.append(Program("gateway", "gateway", gateway, gateway_log(root)))
    supervisor = Supervisor(root, devnet_programs, say=say, on_tick=report_listening)
    try:
        return supervisor.run()
    finally:
        stopped = stop_workloads([m.home for m in members])
        if stopped:
            print(f"stopped {stopped} app workload(s); the agents start them again on resume")


def stop_workloads(homes: list[Path]) -> int:
    """Stop the process-runtime workloads of these nodes' agents (after the agents).

    An agent leaves its workloads running when it stops, as containers outlive a Docker
    client; a devnet that Ctrl-C stops should leave nothing behind, and its agents adopt
    or restart what the chain still assigns when the devnet resumes."""

    async def stop_all() -> int:
        count = 0
        for home in homes:
            config = Home(home).config()
            if not config.agent or config.agent_runtime != "process":
                continue
            runtime = ProcessRuntime(home / "agent" / "process", config.agent_bind)
            for key in await runtime.observe():
                await runtime.remove(key, keep_data=True)
                count += 1
        return count

    return asyncio.run(stop_all())


def existing_members(root: Path) -> list[DevnetNode]:
    """The nodes of a devnet created earlier under `root`."""
    described = json.loads((root / "devnet.json").read_text())
    out = []
    for i, n in enumerate(described["nodes"]):
        home = Path(n["home"])
        Home(home).config()  # fails clearly if the home is damaged
        out.append(DevnetNode(i, home, n["p2p"], n["api"]))
    return out
