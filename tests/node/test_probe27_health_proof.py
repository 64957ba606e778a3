"""probe27: an uptime probe proves which node answered.

Attack: an operator registers nodes (collateral staked) whose endpoint is another node's
API (an honest stranger's, one of its own machines, a checker's own). Before: a probe
counted "up" any `{"healthy": true}` at the endpoint, so every checker saw the borrowed
node healthy and the chain paid for machines nobody ran. Now /health carries its node id
and its node key's signature for the epoch (`uptime.health_digest`), and a probe counts
the target up only on the target's own proof for an epoch it accepts.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from fluxchain.api.server import create_app
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.records import META, Meta
from fluxchain.core.tx import Benchmark, Tx, UptimeAttest, decode_tx
from fluxchain.core.uptime import HEALTH_GRACE_BLOCKS, health_digest, health_nonces
from fluxchain.gateway.service import first_allowed_address
from fluxchain.node import app_reports
from fluxchain.node.app_reports import ReportHosts, pin_endpoint
from fluxchain.node.duties import Duties, HealthCheck, probe_health
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, node_hot_key, open_chain

DEVNET = ReportHosts(loopback=True)  # a devnet's checker probes loopback (fix27p2)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"127.0.0.1:{runner.addresses[0][1]}"


@asynccontextmanager
async def _node_apis(chain: Chain, count: int) -> AsyncIterator[list[tuple[NodeService, str]]]:
    """The APIs of genesis nodes 0..count-1, each a service with its own node key."""
    served: list[tuple[web.AppRunner, NodeService, str]] = []
    try:
        for i in range(count):
            service = NodeService(chain, node_key=node_hot_key(i))
            runner, endpoint = await _serve(create_app(service))
            served.append((runner, service, endpoint))
        yield [(service, endpoint) for _, service, endpoint in served]
    finally:
        for runner, _, _ in served:
            await runner.cleanup()


def _check(chain: Chain, i: int) -> HealthCheck:
    """What a checker expects of genesis node i's /health, by the committed state."""
    state = chain.state
    node = get_node_by_key(state, node_hot_key(i).public_key)
    assert node is not None
    nonces = health_nonces(state, chain.params)
    return HealthCheck(chain.params.chain_id, node.node_id, node.node_key, nonces)


async def _fake_health(body: dict[str, Any]) -> tuple[web.AppRunner, str]:
    async def health(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/health", health)
    return await _serve(app)


def test_probe27_a_node_registered_at_another_nodes_api_is_down(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")

    async def scene() -> None:
        async with _node_apis(chain, 2) as [(_, endpoint_a), (_, endpoint_b)]:
            # Node 1's checkers, had its operator registered node A's endpoint for it:
            borrowed, _ = await probe_health(endpoint_a, _check(chain, 1), DEVNET)
            honest_a, _ = await probe_health(endpoint_a, _check(chain, 0), DEVNET)
            honest_b, _ = await probe_health(endpoint_b, _check(chain, 1), DEVNET)
        assert not borrowed, "node 1 was reported up by another node's /health"
        assert honest_a and honest_b, "an honest node answering its own /health was down"

    try:
        asyncio.run(scene())
    finally:
        chain.close()


def test_probe27_a_healthy_answer_without_the_targets_proof_is_down(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    b = Builder(chain)
    while chain.state.get(META).epoch < 1:  # an epoch with a previous one
        b.commit()
    meta: Meta = chain.state.get(META)
    check = _check(chain, 1)
    key = node_hot_key(1)
    chain_id = chain.params.chain_id

    def proof(epoch: int, nonce: bytes, signer: Any = key, chain: str = chain_id) -> Any:
        digest = health_digest(chain, check.node_id, epoch, nonce)
        return {
            "node_id": check.node_id.hex(),
            "epoch": epoch,
            "signature": signer.sign(digest).hex(),
        }

    current = proof(meta.epoch, meta.next_seed)
    previous = proof(meta.epoch - 1, meta.epoch_seed)
    cases: dict[str, tuple[dict[str, Any], bool]] = {
        "its own proof": ({"healthy": True, "proof": current}, True),
        "no proof": ({"healthy": True}, False),
        "unhealthy with its proof": ({"healthy": False, "proof": current}, False),
        "signed by another key": (
            {"healthy": True, "proof": proof(meta.epoch, meta.next_seed, node_hot_key(0))},
            False,
        ),
        "another chain's": (
            {"healthy": True, "proof": proof(meta.epoch, meta.next_seed, chain="other")},
            False,
        ),
        "a bad signature": (
            {"healthy": True, "proof": {**current, "signature": "00" * 64}},
            False,
        ),
        "not hex": ({"healthy": True, "proof": {**current, "signature": "zz"}}, False),
        "another node's id": (
            {"healthy": True, "proof": {**current, "node_id": "11" * 32}},
            False,
        ),
        "the next epoch's": (
            {"healthy": True, "proof": proof(meta.epoch + 1, meta.next_seed)},
            False,
        ),
    }

    async def verdicts(cases: dict[str, tuple[dict[str, Any], bool]], check: HealthCheck) -> None:
        for name, (body, expected) in cases.items():
            runner, endpoint = await _fake_health(body)
            try:
                up, _ = await probe_health(endpoint, check, DEVNET)
            finally:
                await runner.cleanup()
            assert up is expected, f"a target answering {name} was reported up={up}"

    try:
        asyncio.run(verdicts(cases, check))
        # The previous epoch's proof: up within the epoch's first blocks (a target a block
        # behind its checker), down past them.
        into = meta.height - meta.epoch * chain.params.epoch_length
        late = {
            "last epoch's proof": ({"healthy": True, "proof": previous}, into < HEALTH_GRACE_BLOCKS)
        }
        asyncio.run(verdicts(late, check))
        while (
            chain.state.get(META).height - meta.epoch * chain.params.epoch_length
            < HEALTH_GRACE_BLOCKS
        ):
            b.commit()
        assert chain.state.get(META).epoch == meta.epoch, "epoch_length shorter than the grace"
        late = {"last epoch's proof past the grace": ({"healthy": True, "proof": previous}, False)}
        asyncio.run(verdicts(late, _check(chain, 1)))
    finally:
        chain.close()


def test_probe27_health_signs_each_proof_once(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    b = Builder(chain)
    service = NodeService(chain, node_key=node_hot_key(0))
    stranger = NodeService(chain)  # no node key: a node that is not a registered node
    try:
        first = service.health()["proof"]
        for _ in range(100):
            assert service.health()["proof"] == first
        assert service.health_signatures == 1
        assert "proof" not in stranger.health() and stranger.health_signatures == 0
        epoch = chain.state.get(META).epoch
        while chain.state.get(META).epoch == epoch:
            b.commit()
        for _ in range(100):
            assert service.health()["proof"]["epoch"] == epoch + 1
            assert service.health()["previous"] == first  # kept, not signed again
        assert service.health_signatures == 2, "a new epoch's proof is signed once"
        # Restarted in that epoch: the last epoch's proof is signed again, once (rev27x).
        restarted = NodeService(chain, node_key=node_hot_key(0))
        for _ in range(100):
            assert restarted.health()["previous"] == first
        assert restarted.health_signatures == 2, "at most two signatures per epoch"
    finally:
        chain.close()


def _fake_names(monkeypatch: Any, gate: threading.Event) -> None:
    """`hang.test` resolves only once `gate` is set; `node.test` is 127.0.0.1 at once."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hang.test":
            gate.wait(30)
            return real("127.0.0.1", *args, **kwargs)
        return real("127.0.0.1" if host == "node.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_probe27_report_lookups_that_hang_never_make_a_probe_time_out(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Report pages' name lookups fill their pool with names that hang: a target
    registered by name is still probed (its lookup runs on the probes' own threads)."""
    chain = open_chain(tmp_path / "home")
    gate = threading.Event()
    _fake_names(monkeypatch, gate)

    async def scene() -> None:
        hanging = [
            asyncio.create_task(pin_endpoint("hang.test:1", DEVNET))
            for _ in range(app_reports.MAX_LOOKUPS)
        ]
        async with _node_apis(chain, 1) as [(_, endpoint)]:
            port = endpoint.rsplit(":", 1)[1]
            up, _ = await probe_health(f"node.test:{port}", _check(chain, 0), DEVNET)
        gate.set()
        await asyncio.gather(*hanging)
        assert up, "a target registered by name was down while report lookups hung"

    try:
        asyncio.run(scene())
    finally:
        gate.set()
        chain.close()


def test_probe27_a_lookups_timeout_counts_from_its_start_not_its_queueing(
    monkeypatch: Any,
) -> None:
    gate = threading.Event()
    _fake_names(monkeypatch, gate)

    async def scene() -> None:
        with ThreadPoolExecutor(1) as one_thread:
            allowed = DEVNET.allows
            first = asyncio.create_task(
                first_allowed_address("hang.test", allowed, one_thread, timeout=0.2)
            )
            queued = asyncio.create_task(
                first_allowed_address("node.test", allowed, one_thread, timeout=0.2)
            )
            try:
                await first
                raise AssertionError("a lookup that hangs did not time out")
            except TimeoutError:
                pass
            # The queued lookup waited longer than its timeout for the thread, and only
            # now starts: it gets its whole timeout.
            gate.set()
            assert await queued == "127.0.0.1"

    try:
        asyncio.run(scene())
    finally:
        gate.set()


def test_probe27_a_target_already_in_the_next_epoch_is_up_for_a_checker_behind(
    tmp_path: Path,
) -> None:
    """A checker a block behind its target, at the epoch's end, probes a target that has
    committed the next epoch's first block: the target's answer keeps the proof it signed
    for the checker's epoch."""
    chain = open_chain(tmp_path / "home")
    b = Builder(chain)

    async def scene() -> None:
        async with _node_apis(chain, 1) as [(service, endpoint)]:
            epoch = chain.state.get(META).epoch
            assert (await probe_health(endpoint, _check(chain, 0), DEVNET))[0]
            while chain.state.get(META).height + 1 < (epoch + 1) * chain.params.epoch_length:
                b.commit()
            behind = _check(chain, 0)  # the checker, at the epoch's last block
            b.commit()  # the target commits the next epoch's first block
            assert chain.state.get(META).epoch == epoch + 1
            up, _ = await probe_health(endpoint, behind, DEVNET)
            assert up, "an honest target one block ahead of its checker was down"
            assert service.health_signatures == 2

    try:
        asyncio.run(scene())
    finally:
        chain.close()


def test_probe27_checkers_report_a_node_at_another_nodes_endpoint_down(tmp_path: Path) -> None:
    """The whole duty: nodes 0, 2, 3 serve their APIs; node 1 runs nothing, its registered
    endpoint answers with node 0's API. Each checker's UPTIME_ATTEST says node 1 down and
    the others up."""
    chain = open_chain(tmp_path / "home")
    running = [0, 2, 3]
    sent: list[UptimeAttest] = []

    def submit(raw: bytes) -> Tx:
        tx = decode_tx(raw, chain.params)
        assert isinstance(tx.payload, UptimeAttest)
        sent.append(tx.payload)
        return tx

    async def benchmark() -> Benchmark:
        raise AssertionError("no confirm in this scene")

    async def scene() -> None:
        async with _node_apis(chain, 4) as apis:
            state = chain.state
            served: dict[str, str] = {}  # registered endpoint -> where it answers
            for i in range(4):
                node = get_node_by_key(state, node_hot_key(i).public_key)
                assert node is not None
                served[node.endpoint] = apis[0 if i == 1 else i][1]

            async def probe(endpoint: str, check: HealthCheck) -> tuple[bool, int]:
                return await probe_health(served[endpoint], check, DEVNET)

            for i in running:
                key = node_hot_key(i)
                duties = Duties(
                    key,
                    chain.params,
                    lambda: chain.state,
                    lambda _: 0,
                    submit,
                    benchmark,
                    probe=probe,
                )
                await duties._attest()

    try:
        asyncio.run(scene())
        ids = {i: get_node_by_key(chain.state, node_hot_key(i).public_key) for i in range(4)}
        borrowed = ids[1]
        assert borrowed is not None and len(sent) == len(running)
        for attest in sent:
            verdicts = {report.target: report.up for report in attest.reports}
            assert verdicts[borrowed.node_id] is False, "the borrowed endpoint was reported up"
            honest = [v for target, v in verdicts.items() if target != borrowed.node_id]
            assert honest and all(honest), f"an honest node was reported down: {verdicts}"
    finally:
        chain.close()
