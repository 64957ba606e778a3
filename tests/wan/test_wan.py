"""The chain over a real (emulated) WAN: perturbations of links, partitions, processes.

16 validators and 3 full nodes, each in its own network namespace, spread over three
regions 90/130/160 ms apart with jitter and 0.5 % loss (tests/wan/testnet.py). Each node
was given one seed: its region's, a node in seed mode. After each perturbation the chain
must have kept committing where more than 2/3 of the power could talk, every node must
be back at the head within 20 s of the perturbation's end, and every node must hold the
same headers.

Runs as `make test-wan` (needs root for `ip netns`); `FLUX_WAN_SEED=<n>` replays the
WAN's jitter and loss of a printed seed.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from functools import partial

import pytest

from fluxchain.node.home import Home
from tests.support.wait import wait_until
from tests.wan.testnet import WanNode, WanTestnet

VALIDATORS = 16
FULL_NODES = 3
RECOVERY_S = 20.0  # every node back at the head this long after a perturbation ends
START_S = 120.0  # 19 nodes starting on a shared 2-core machine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WanTestnet]:
    if os.geteuid() != 0:
        pytest.fail("the WAN testnet needs root (ip netns, veth, TUN): run `make test-wan` as root")
    seed = int(os.environ.get("FLUX_WAN_SEED", random.randrange(1 << 31)))
    print(f"WAN seed {seed} (FLUX_WAN_SEED={seed} replays it)")
    testnet = WanTestnet(tmp_path_factory.mktemp("wan"), VALIDATORS, FULL_NODES, seed)
    try:
        testnet.up()
        testnet.wait_all_at(3, START_S)
        yield testnet
    finally:
        testnet.down()


def head(net: WanTestnet, nodes: list[WanNode] | None = None) -> int:
    """The highest height any of `nodes` (default: all) reports."""
    return max(net.height(n) for n in (net.nodes if nodes is None else nodes))


def wait_advance(net: WanTestnet, nodes: list[WanNode], blocks: int, timeout: float) -> None:
    """Until every one of `nodes` is `blocks` above where the highest of them is now."""
    target = head(net, nodes) + blocks
    net.wait_all_at(target, timeout, nodes)


def assert_recovers(net: WanTestnet, ended_at: float) -> None:
    """Every node at the head that was current when the perturbation ended, in time."""
    target = head(net)
    remaining = RECOVERY_S - (time.monotonic() - ended_at)
    net.wait_all_at(target, max(remaining, 0.1))


def assert_same_headers(net: WanTestnet) -> None:
    """Every node holds the same header hashes at every height they all have."""
    upto = min(net.height(n) for n in net.nodes)
    assert upto > 0, net.describe()
    reference = net.headers(net.nodes[0], upto)
    assert all(reference), f"node {net.nodes[0].name} lacks headers below {upto}"
    for node in net.nodes[1:]:
        hashes = net.headers(node, upto)
        forks = [h + 1 for h, (a, b) in enumerate(zip(reference, hashes, strict=True)) if a != b]
        assert not forks, f"{node.name} differs from {net.nodes[0].name} at heights {forks[:5]}"


def hold(started: float, seconds: float, what: str) -> None:
    """Keep a perturbation in place until `seconds` after `started` (its length is what
    the scenario specifies, so this is the one wait on the clock)."""
    wait_until(lambda: time.monotonic() - started >= seconds, seconds + 1, what)


def others(net: WanTestnet, *excluded: WanNode) -> list[WanNode]:
    return [n for n in net.nodes if n not in excluded]


def _holds_no_peer(net: WanTestnet, node: WanNode) -> bool:
    return (net.try_get(node, "/status") or {}).get("peers") == 0


def test_nodes_given_one_seed_find_the_whole_network(net: WanTestnet) -> None:
    """Each node's config names one seed and no peer; peer exchange found the rest. The
    seeds run in seed mode: they answered and hung up, and hold no node's slot."""
    for node in net.nodes:
        config = Home(node.home).config()
        assert len(config.seeds) == 1 and not config.persistent_peers, node.name
        assert net.seed_of(node).seed_mode and not config.seed_mode, node.name
    wait_until(
        lambda: all((net.try_get(n, "/status") or {}).get("peers", 0) > 3 for n in net.nodes),
        60,
        "every node connected to more peers than its seed",
        nodes=net,
    )
    full = [n for n in net.nodes if n.validator_index is None]
    for node in full:  # bound to 0.0.0.0, they advertise the address given to init
        log = (node.home / "node.log").read_text(errors="replace")
        assert "event=p2p_listening node=" in log and f"address={node.p2p} " in log, node.name
    wait_advance(net, full, 2, 30)  # the full nodes follow the head across the WAN
    assert_same_headers(net)
    for seed in net.seeds:
        assert Home(seed.home).config().seed_mode, seed.name
        # A node may be in the middle of asking it for addresses: it hangs up at once.
        wait_until(
            partial(_holds_no_peer, net, seed),
            10,
            f"{seed.name} holding no peer",
            nodes=net,
        )
        # Its only links were to the seed it was given, which answered and hung up too.
        lines = (seed.home / "node.log").read_text(errors="replace").splitlines()
        linked = {line.split("address=")[-1] for line in lines if "event=peer_connected" in line}
        assert linked <= {net.seed_of(seed).p2p}, f"{seed.name} linked to {linked}"


def test_validator_link_cut_for_10s_catches_up(net: WanTestnet) -> None:
    """A validator whose link goes down for 10 s: the others commit on, it rejoins."""
    cut = net.validators[4]
    net.cut(cut)
    started = time.monotonic()
    try:
        wait_advance(net, others(net, cut), 3, 10)
        hold(started, 10, "the 10 s cut")
    finally:
        net.restore(cut)
    ended = time.monotonic()
    assert_recovers(net, ended)
    assert_same_headers(net)


def test_partition_one_third_two_thirds_for_30s(net: WanTestnet) -> None:
    """5 of 16 validators (and a full node) cut off from the rest for 30 s: the 11 (over
    2/3 of the power) commit on; the 5 cannot and do not fork; all agree after."""
    minority = [*net.validators[11:16], net.nodes[VALIDATORS]]
    majority = others(net, *minority)
    net.partition(minority)
    started = time.monotonic()
    try:
        minority_height = head(net, minority)
        wait_advance(net, majority, 5, 30)
        hold(started, 30, "the 30 s partition")
        # the minority may finish the block it was deciding, never more
        assert head(net, minority) <= minority_height + 1, net.describe()
    finally:
        net.heal(minority)
    assert_recovers(net, time.monotonic())
    assert_same_headers(net)


def test_paused_validator_for_10s_catches_up(net: WanTestnet) -> None:
    """SIGSTOP for 10 s (a frozen VM): the others commit on, it catches up after SIGCONT."""
    paused = net.validators[7]
    net.pause(paused)
    started = time.monotonic()
    try:
        wait_advance(net, others(net, paused), 3, 10)
        hold(started, 10, "the 10 s pause")
    finally:
        net.resume(paused)
    assert_recovers(net, time.monotonic())
    assert_same_headers(net)


def test_restarted_validator_catches_up(net: WanTestnet) -> None:
    """A validator stopped and started again resumes from its store and rejoins."""
    node = net.validators[2]
    net.stop(node)
    wait_advance(net, others(net, node), 2, 15)
    net.start(node)
    assert_recovers(net, time.monotonic())
    assert_same_headers(net)


def test_killed_validator_restarts_and_catches_up(net: WanTestnet) -> None:
    """A validator SIGKILLed mid-height (CometBFT e2e's `kill`) restarts from its store,
    WAL and signer record, and is back at the head in time."""
    node = net.validators[9]
    net.kill(node)
    wait_advance(net, others(net, node), 2, 15)
    net.start(node)
    assert_recovers(net, time.monotonic())
    assert_same_headers(net)


def test_no_node_crashed_or_logged_an_error(net: WanTestnet) -> None:
    """Every node process is still running, and no node logged an error of its own
    through the perturbations (aiohttp's server logs a peer that hangs up during the
    websocket upgrade as an error with a traceback: a p2p matter, reported apart)."""
    for node in net.nodes:
        proc = net.procs.get(node.name)
        assert proc is not None and proc.poll() is None, f"{node.name} is not running"
        lines = (node.home / "node.log").read_text(errors="replace").splitlines()
        errors = [line for line in lines if " ERROR " in line and " fluxchain." in line]
        assert not errors, f"{node.name}:\n" + "\n".join(errors[:20])
