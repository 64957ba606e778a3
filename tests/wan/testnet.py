"""A WAN testnet on one machine: every node in its own network namespace, three regions.

    python -m tests.wan.testnet up [--validators 16] [--full-nodes 3] [--root DIR]
    python -m tests.wan.testnet down          # remove what a crashed run left behind

Layout (every name starts with PREFIX, so a crashed run's leftovers are found and removed
at the next start):

    host ns: nothing but the namespaces (no link, address or route: see below)
    wan ns fxw-wan: br-eu, br-us, br-as (one bridge per region), fxwtun (TUN), ip_forward
    node ns fxw-v00 … fxw-v15, fxw-f00 …, fxw-s00 … (a seed per region): eth0 = 10.R.0.2/24
        on its region's bridge, gateway 10.R.0.1 (an address of that bridge); R = 32*region
        + k, so every node is in its own /16 (as on the Internet: p2p's per-group rules
        apply unchanged) and a region is a /11 (EU 10.32/11, US 10.64/11, AS 10.96/11)

Traffic between two regions is routed in the wan namespace by `ip rule iif br-X to
<region Y>/11 lookup 100`, whose default route is the TUN that tests/wan/delay.py reads:
it delays (half the region pair's RTT, ± jitter), drops 0.5 % and writes each packet
back. Traffic inside a region stays in the kernel (bridged or routed, no delay). Each
node's egress is shaped by a TBF qdisc (bandwidth). The harness reaches the node APIs from
the wan namespace (one thread of it enters the namespace, `WanTestnet.in_wan`), without
delay (a client next to each node). The host namespace gets no route or address: routes
for 10.32/11.. in it would shadow, for the length of a run, any real network of the host
in those ranges (a VPC, a VPN, a container network).

Every node is initialised with `fluxchain init --genesis FILE --seeds KEY@ONE_ADDRESS` (the
validators with --dev-key i; the full nodes as on a real host, listening on 0.0.0.0 with
--p2p-advertise): it knows one seed, peer exchange does the rest. The seeds, one per region,
run in seed mode (`init --seed-mode`): they answer peer exchange and hang up, keep no peer
and follow no chain; each is given the next region's seed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from fluxchain.core.crypto import SigningKey
from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from tests.support.wait import NodeStatus, describe_nodes, status_from_api, wait_until
from wallet.hd import derive_key, node_key_path

ROOT: Final = Path(__file__).resolve().parents[2]
PREFIX: Final = "fxw-"  # namespaces and host links of this testnet
WAN_NS: Final = PREFIX + "wan"
TUN: Final = "fxwtun"
CLONE_NEWNET: Final = 0x40000000  # setns(2): the namespace is a network namespace
TUN_TABLE: Final = 100
P2P_PORT: Final = 26600
API_PORT: Final = 26700
REGIONS: Final = ("eu", "us", "as")  # region r is 10.(32*(r+1)).0.0/11
# Round-trip times between regions (the issue's: EU-US 90 ms, EU-AS 160 ms, US-AS 130 ms)
RTT_MS: Final = {(1, 2): 90, (1, 3): 160, (2, 3): 130}
JITTER_MS: Final = 5.0  # one-way, uniform ±
LOSS_PCT: Final = 0.5
BANDWIDTH: Final = "100mbit"  # each node's uplink (TBF)
SEED_KEY_INDEX: Final = 1000  # the seeds' node keys: devnet key paths no validator uses
# The testnet's proposal budget (params.max_block_bytes, from its genesis). A proposal
# travels as tx ids (compact proposals: 32 bytes a tx, peers fetch the few they miss), so
# the budget no longer bounds what a proposer's uplink carries but how many txs a block
# holds: 1 MiB is 1,000 txs of 1 KB, twice the 500 tx/s target in blocks of a second, so
# a slow height's backlog drains in the next. At 512 KiB a block held 510 such txs: at
# 500 tx/s every late block left a backlog that drained at a few txs a block (p99 7.3 s).
WAN_BLOCK_BYTES: Final = 1024 * 1024


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (ip, tc) and return it; raise with its stderr when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check)


def enter_netns(ns: str) -> None:
    """Move the calling thread (only it: setns(2) acts per thread) into the network
    namespace `ns`; its sockets from then on are the namespace's."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{ns}", "rb") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {ns}: {os.strerror(errno)}")


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WanNode:
    """One node of the testnet: where it lives and what it is."""

    name: str  # v00 (validator 0), f00 (full node 0) or s00 (the seed of region 1)
    region: int  # 1..3
    slot: int  # its /16 inside the region
    validator_index: int | None  # its dev key index; None for a full node or a seed
    home: Path
    seed_mode: bool = False  # s00..: a seed (`--seed-mode`), which follows no chain

    @property
    def ns(self) -> str:
        return PREFIX + self.name

    @property
    def ip(self) -> str:
        return f"10.{32 * self.region + self.slot}.0.2"

    @property
    def gateway(self) -> str:
        return f"10.{32 * self.region + self.slot}.0.1"

    @property
    def p2p(self) -> str:
        return f"{self.ip}:{P2P_PORT}"

    @property
    def api(self) -> str:
        return f"http://{self.ip}:{API_PORT}"

    @property
    def bridge(self) -> str:
        return "br-" + REGIONS[self.region - 1]

    @property
    def wan_link(self) -> str:
        return "n" + self.name  # its veth's end in the wan namespace


def node_key(node: WanNode, mnemonic: str) -> SigningKey:
    """A validator's or seed's node key, from the devnet mnemonic (a seed's at index
    SEED_KEY_INDEX + its region, past any validator's); full nodes make their own."""
    index = node.validator_index if node.validator_index is not None else None
    if node.seed_mode:
        index = SEED_KEY_INDEX + node.region
    assert index is not None, f"{node.name} makes its own key at init"
    return derive_key(mnemonic, node_key_path(index))


def cleanup() -> list[str]:
    """Remove every namespace and host link named PREFIX…, killing what runs inside.

    Returns what was removed. The processes killed are the ones a previous run of this
    harness started in its own namespaces (`ip netns pids` names them). The host link
    is one an older version of the harness made."""
    removed = []
    listed = sh("ip", "netns", "list", check=False).stdout.split("\n")
    for line in listed:
        ns = line.split(" ")[0]
        if not ns.startswith(PREFIX):
            continue
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "delete", ns, check=False)
        removed.append(ns)
    old_host_link = PREFIX + "host"
    if sh("ip", "link", "show", old_host_link, check=False).returncode == 0:
        sh("ip", "link", "delete", old_host_link, check=False)
        removed.append(old_host_link)
    return removed


class WanTestnet:
    """Validators and full nodes in namespaces, the WAN between them, their processes."""

    def __init__(
        self,
        root: Path,
        validators: int = 16,
        full_nodes: int = 3,
        seed: int = 1,
        log_level: str = "info",
        delay_priority: bool = True,
    ) -> None:
        self.root = root
        # The delay process runs ahead of the nodes for the CPU (tests/wan/delay.py
        # take_priority); False only to measure what that changes.
        self.delay_priority = delay_priority
        self.seed = seed
        self.log_level = log_level  # "warning" under load: info logs each gossip send
        self.nodes: list[WanNode] = []
        per_region = [0, 0, 0]
        for i in range(validators + full_nodes):
            region = i % 3 + 1
            per_region[region - 1] += 1
            validator = i if i < validators else None
            name = f"v{i:02d}" if validator is not None else f"f{i - validators:02d}"
            self.nodes.append(WanNode(name, region, per_region[region - 1], validator, root / name))
        self.validators = [n for n in self.nodes if n.validator_index is not None]
        # One seed per region, in seed mode: not part of `nodes` (the chain's nodes),
        # since a seed keeps no peer and follows no chain.
        self.seeds = [
            WanNode(f"s{r - 1:02d}", r, per_region[r - 1] + 1, None, root / f"s{r - 1:02d}", True)
            for r in range(1, len(REGIONS) + 1)
        ]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.delay: subprocess.Popen[bytes] | None = None
        self.genesis_file = root / "genesis.json"
        # The one thread that talks to the nodes' APIs, from inside the wan namespace.
        self._wan_thread: ThreadPoolExecutor | None = None

    # -- the network -------------------------------------------------------------------

    def create_network(self) -> None:
        """Namespaces, bridges, veths, addresses, routes, the TUN and its delay process."""
        cleanup()
        sh("ip", "netns", "add", WAN_NS)
        wan = ("ip", "-n", WAN_NS)
        sh(*wan, "link", "set", "lo", "up")
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0"):  # fmt: skip
            in_ns(WAN_NS, "sysctl", "-q", "-w", key)
        for r, region in enumerate(REGIONS, start=1):
            bridge = "br-" + region
            sh(*wan, "link", "add", bridge, "type", "bridge")
            sh(*wan, "link", "set", bridge, "up")
            for other in range(1, len(REGIONS) + 1):
                if other != r:  # to another region: through the delay process
                    sh(*wan, "rule", "add", "iif", bridge, "to", f"10.{32 * other}.0.0/11",
                       "lookup", str(TUN_TABLE), "priority", "100")  # fmt: skip
        sh(*wan, "tuntap", "add", "dev", TUN, "mode", "tun")
        # a deep queue: a burst waits for the delay process instead of being dropped on
        # top of the configured loss
        sh(*wan, "link", "set", TUN, "txqueuelen", "10000", "up")
        in_ns(WAN_NS, "sysctl", "-q", "-w", f"net.ipv4.conf.{TUN}.rp_filter=0")
        sh(*wan, "route", "add", "default", "dev", TUN, "table", str(TUN_TABLE))
        for node in [*self.nodes, *self.seeds]:
            self._create_node_ns(node)
        self._start_delay()

    def _create_node_ns(self, node: WanNode) -> None:
        sh("ip", "netns", "add", node.ns)
        sh("ip", "-n", WAN_NS, "link", "add", node.wan_link, "type", "veth", "peer", "name",
           "eth0", "netns", node.ns)  # fmt: skip
        sh("ip", "-n", WAN_NS, "link", "set", node.wan_link, "master", node.bridge, "up")
        sh("ip", "-n", WAN_NS, "addr", "add", f"{node.gateway}/24", "dev", node.bridge)
        ns = ("ip", "-n", node.ns)
        sh(*ns, "link", "set", "lo", "up")
        sh(*ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        sh(*ns, "link", "set", "eth0", "up")
        sh(*ns, "route", "add", "default", "via", node.gateway)
        sh("tc", "-n", node.ns, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", BANDWIDTH,
           "burst", "256kb", "latency", "50ms")  # fmt: skip

    def _start_delay(self) -> None:
        pairs = json.dumps({f"{a}-{b}": rtt for (a, b), rtt in RTT_MS.items()})
        log = (self.root / "wan-delay.log").open("ab")
        command = ["ip", "netns", "exec", WAN_NS, sys.executable, "-P", "-m", "tests.wan.delay",
                   "--tun", TUN, "--pairs", pairs, "--jitter-ms", str(JITTER_MS),
                   "--loss-pct", str(LOSS_PCT), "--seed", str(self.seed),
                   "--priority" if self.delay_priority else "--no-priority"]  # fmt: skip
        self.delay = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wait_until(
            lambda: "ready" in (self.root / "wan-delay.log").read_text(),
            10,
            "the wan delay process attached to its TUN",
        )

    # -- the chain ---------------------------------------------------------------------

    def seed_of(self, node: WanNode) -> WanNode:
        """The one address a node is given: its region's seed; each seed is given the
        next region's."""
        if node.seed_mode:
            return self.seeds[node.region % len(self.seeds)]
        return self.seeds[node.region - 1]

    def create_chain(self) -> None:
        """The genesis (validators' endpoints at their namespace addresses), then every
        home by `fluxchain init --genesis … --seeds …`, as an operator would: the seeds
        first (`--seed-mode`), whose node keys the others are given."""
        self.root.mkdir(parents=True, exist_ok=True)
        genesis = new_devnet_genesis(
            len(self.validators),
            chain_id="flux-wan",
            genesis_time_ms=int(time.time() * 1000),
            endpoints=[f"{n.ip}:{API_PORT}" for n in self.validators],
            params=replace(devnet_params("flux-wan"), max_block_bytes=WAN_BLOCK_BYTES),
        )
        genesis.save(self.genesis_file)
        assert genesis.insecure_dev_mnemonic, "a devnet genesis publishes its mnemonic"
        mnemonic = genesis.insecure_dev_mnemonic
        for node in [*self.seeds, *self.nodes]:
            # The seed by its node key: whoever else answers at its address is refused.
            seed = self.seed_of(node)
            if node.validator_index is not None:
                role = ["--dev-key", str(node.validator_index), "--p2p-host", node.ip,
                        "--api-host", node.ip]  # fmt: skip
            else:  # as on a real host: listen on every address, advertise the public one
                role = ["--p2p-host", "0.0.0.0", "--p2p-advertise", node.p2p,
                        "--api-host", "0.0.0.0"]  # fmt: skip
            if node.seed_mode:
                role += ["--seed-mode", "--key", node_key(node, mnemonic).secret.hex()]
            seed_key = node_key(seed, mnemonic).public_key.hex()
            self.cli("init", "--home", str(node.home), "--genesis", str(self.genesis_file),
                     *role, "--p2p-port", str(P2P_PORT), "--api-port", str(API_PORT),
                     "--seeds", f"{seed_key}@{seed.p2p}", "--moniker", node.name,
                     "--log-level", self.log_level)  # fmt: skip

    @staticmethod
    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-P", "-m", "fluxchain.cli", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"fluxchain {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, node: WanNode) -> None:
        """`fluxchain run` inside the node's namespace (its own session: signals reach
        the node and its verifier processes, not the harness)."""
        log = (node.home / "node.log").open("ab")
        command = ["ip", "netns", "exec", node.ns, sys.executable, "-P", "-m", "fluxchain.cli",
                   "run", "--home", str(node.home)]  # fmt: skip
        self.procs[node.name] = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    def up(self) -> None:
        """Everything, from nothing: network, chain, every node started."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.create_network()
        self.create_chain()
        for node in [*self.seeds, *self.nodes]:
            self.start(node)

    def kill(self, node: WanNode) -> None:
        """SIGKILL the node and its verifier processes (a crash, a power cut)."""
        proc = self.procs.pop(node.name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, node: WanNode, timeout: float = 15.0) -> None:
        proc = self.procs.pop(node.name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)  # a paused node must be able to stop
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def down(self) -> None:
        """Stop every process, then remove every namespace and link (always safe to call)."""
        for node in [*self.nodes, *self.seeds]:
            self.stop(node)
        if self._wan_thread is not None:
            self._wan_thread.shutdown(wait=True)
            self._wan_thread = None
        if self.delay is not None and self.delay.poll() is None:
            self.delay.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.delay.wait(5)
        cleanup()

    # -- perturbations (the real network) -----------------------------------------------

    def cut(self, node: WanNode) -> None:
        """The node's link down, inside its namespace."""
        sh("ip", "-n", node.ns, "link", "set", "eth0", "down")

    def restore(self, node: WanNode) -> None:
        """Link up again; link down removed its routes, so the default route comes back."""
        sh("ip", "-n", node.ns, "link", "set", "eth0", "up")
        sh("ip", "-n", node.ns, "route", "replace", "default", "via", node.gateway)

    def partition(self, side: list[WanNode]) -> None:
        """Nothing passes between `side` and the other nodes: each node gets a blackhole
        route for every address across (its packets to them vanish, so nothing comes
        back either), as when a cable between two halves of the Internet is cut."""
        for node in self.nodes:
            for other in self._across(node, side):
                sh("ip", "-n", node.ns, "route", "add", "blackhole", f"{other.ip}/32")

    def heal(self, side: list[WanNode]) -> None:
        for node in self.nodes:
            for other in self._across(node, side):
                sh("ip", "-n", node.ns, "route", "del", "blackhole", f"{other.ip}/32", check=False)

    def _across(self, node: WanNode, side: list[WanNode]) -> list[WanNode]:
        mine = node in side
        return [other for other in self.nodes if (other in side) != mine]

    def pause(self, node: WanNode) -> None:
        os.killpg(self.procs[node.name].pid, signal.SIGSTOP)

    def resume(self, node: WanNode) -> None:
        os.killpg(self.procs[node.name].pid, signal.SIGCONT)

    # -- the API -----------------------------------------------------------------------

    def in_wan(self, work: Callable[[], T]) -> T:
        """Run `work` in the harness's thread inside the wan namespace, where every
        node's address is on a bridge (the host namespace has no route to them)."""
        if self._wan_thread is None:
            self._wan_thread = ThreadPoolExecutor(
                max_workers=1, initializer=enter_netns, initargs=(WAN_NS,)
            )
        return self._wan_thread.submit(work).result()

    def get(self, node: WanNode, path: str, timeout: float = 3.0) -> Any:
        def fetch() -> Any:
            with urllib.request.urlopen(node.api + path, timeout=timeout) as response:
                return json.loads(response.read())

        return self.in_wan(fetch)

    def try_get(self, node: WanNode, path: str) -> Any:
        try:
            return self.get(node, path)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def height(self, node: WanNode) -> int:
        status = self.try_get(node, "/status")
        return -1 if status is None else int(status["height"])

    def heights(self) -> dict[str, int]:
        return {n.name: self.height(n) for n in self.nodes}

    def headers(self, node: WanNode, upto: int) -> list[str]:
        """Header hashes of heights 1..upto, over the API (100 a request)."""
        hashes: dict[int, str] = {}
        before = upto + 1
        while before > 1:
            page = self.get(node, f"/blocks?before={before}&limit=100", timeout=10)["headers"]
            if not page:
                break
            for header in page:
                hashes[int(header["height"])] = str(header["hash"])
            before = min(hashes)
        return [hashes.get(h, "") for h in range(1, upto + 1)]

    def wait_all_at(self, height: int, timeout: float, nodes: list[WanNode] | None = None) -> float:
        chosen = self.nodes if nodes is None else nodes
        return wait_until(
            lambda: all(self.height(n) >= height for n in chosen),
            timeout,
            f"{[n.name for n in chosen]} at height >= {height}",
            nodes=self,
        )

    def node_statuses(self) -> list[NodeStatus]:
        out = []
        for node in self.nodes:
            proc = self.procs.get(node.name)
            up = proc is not None and proc.poll() is None
            status = status_from_api(node.name, up, self.try_get(node, "/status"))
            out.append(replace(status, logs=(node.home / "node.log",)))
        return out

    def describe(self) -> str:
        return describe_nodes(self)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--validators", type=int, default=16)
    parser.add_argument("--full-nodes", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT / ".testnet-wan")
    parser.add_argument("--seed", type=int, default=1, help="jitter and loss of the WAN")
    args = parser.parse_args()
    pid_file = args.root / "testnet.pid"
    if args.command == "down":
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)  # the `up` that runs it
            wait_until(lambda: not pid_file.exists(), 30, "the testnet's `up` to stop")
        removed = cleanup()
        print(f"removed {', '.join(removed) or 'nothing'}")
        return
    if (args.root / "genesis.json").exists():
        raise SystemExit(f"{args.root} holds a testnet already: remove it (rm -rf) first")
    net = WanTestnet(args.root, args.validators, args.full_nodes, args.seed)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(os.getpid()))
        net.up()
        for node in [*net.seeds, *net.nodes]:
            role = "validator" if node.validator_index is not None else "full node"
            role = "seed" if node.seed_mode else role
            seed = net.seed_of(node).p2p
            print(f"{node.name} {role:9} {REGIONS[node.region - 1]} ns {node.ns} "
                  f"p2p {node.p2p} API {node.api} seed {seed}")  # fmt: skip
        print(f"WAN RTT ms {RTT_MS} jitter ±{JITTER_MS} ms loss {LOSS_PCT} % uplink {BANDWIDTH}")
        print("Ctrl-C (or `make testnet-wan-down`) removes everything", flush=True)
        reported = -1
        while not stopping:
            heights = [h for h in net.heights().values() if h >= 0]
            if heights and min(heights) != reported and len(heights) == len(net.nodes):
                reported = min(heights)
                print(f"heights {min(heights)}..{max(heights)} on {len(heights)} nodes", flush=True)
            time.sleep(2)
    finally:
        net.down()
        pid_file.unlink(missing_ok=True)
        print("testnet removed", flush=True)


if __name__ == "__main__":
    main()
