"""Owner operations between a node and its agent: the control channel, the public
report, what a lying host's report becomes, the follow rate, and that a command only
ever touches the named app's workloads."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSServerHandshakeError, web
from aiohttp.test_utils import TestClient, TestServer

from fluxchain.agent.agent import Agent, OperateError
from fluxchain.agent.process import ProcessRuntime
from fluxchain.agent.runtime import LOG_CHUNK
from fluxchain.agent.volumes import VolumeKeeper
from fluxchain.agent.workloads import Workload
from fluxchain.api.server import create_app
from fluxchain.core.owner_request import AgentCallError
from fluxchain.node.agent_link import AgentControl, AgentLink
from fluxchain.node.app_reports import (
    MAX_FETCHES,
    ReportGatherer,
    ReportHosts,
    fetch_report,
    parse_report,
)
from fluxchain.node.service import NodeService
from tests.agent.test_agent_link import report
from tests.agent.test_workloads import assignment, spec
from tests.support.chain import open_chain
from tests.support.ports import lease_ports
from tests.support.wait import wait_until_async

NODE_ID = bytes(range(20))
DEVNET = ReportHosts(loopback=True)  # the test's hosts listen on 127.0.0.1


def workload(key: str, app: str, instance: int = 0) -> Workload:
    return Workload(
        key=key,
        app=app,
        instance=instance,
        component=key.partition("_")[0],
        image="unused",
        command=("true",),
        environment=(),
        ports=(),
        data_path="",
        cpu_tenths=1,
        ram_mb=64,
        disk_gb=1,
    )


def test_control_channel_takes_only_this_nodes_agent_and_routes_its_answers(
    tmp_path: Path,
) -> None:
    """A process without the agent token cannot hold the channel (so cannot receive the
    owners' commands); the agent that holds it answers each call by its id."""
    service = NodeService(open_chain(tmp_path / "home"), agent=AgentLink("secret", expected=True))

    async def scenario() -> None:
        client = TestClient(TestServer(create_app(service)))
        await client.start_server()
        try:
            with pytest.raises(WSServerHandshakeError) as refused:
                await client.ws_connect("/agent/control", headers={"Authorization": "Bearer x"})
            assert refused.value.status == 401
            with pytest.raises(AgentCallError) as info:
                _ = [item async for item in service.agent_call({"method": "stats"})]
            assert info.value.reason == "agent_unavailable"

            agent = await client.ws_connect(
                "/agent/control", headers={"Authorization": "Bearer secret"}
            )
            await wait_until_async(lambda: service.agent.control.connected, 5, "agent connected")

            async def answer() -> None:
                command = json.loads((await agent.receive()).data)
                assert command["method"] == "stats" and command["app"] == "web1"
                await agent.send_json({"id": command["id"], "item": {"running": True}})
                await agent.send_json({"id": command["id"], "done": True})
                failing = json.loads((await agent.receive()).data)
                error = {"reason": "not_hosted", "message": "no such instance"}
                await agent.send_json({"id": failing["id"], "done": True, "error": error})

            answering = asyncio.create_task(answer())
            items = [i async for i in service.agent_call({"method": "stats", "app": "web1"})]
            assert items == [{"running": True}]
            with pytest.raises(AgentCallError) as info:
                _ = [i async for i in service.agent_call({"method": "restart", "app": "web1"})]
            assert info.value.reason == "not_hosted"
            await answering
            await agent.close()
        finally:
            await client.close()

    asyncio.run(scenario())


def test_agent_leaving_mid_call_ends_it_with_a_reason() -> None:
    control = AgentControl()

    class Socket:
        """An agent that takes a command and leaves before answering it."""

        def __init__(self) -> None:
            self.closed = False
            self.got_command = asyncio.Event()

        async def send_json(self, body: Any) -> None:
            self.got_command.set()

        def __aiter__(self) -> Socket:
            return self

        async def __anext__(self) -> Any:
            await self.got_command.wait()
            raise StopAsyncIteration  # the agent left

    async def scenario() -> None:
        serving = asyncio.create_task(control.serve(Socket()))
        await wait_until_async(lambda: control.connected, 5, "the agent connected")
        with pytest.raises(AgentCallError) as info:
            _ = [i async for i in control.call({"method": "logs"})]
        assert info.value.reason == "agent_gone"
        await serving

    asyncio.run(scenario())


def test_public_agent_report_names_one_app_and_no_host_paths() -> None:
    link = AgentLink("secret", expected=True)
    workloads = report()["workloads"] + [
        {
            **report()["workloads"][0],
            "app": "other",
            "message": "secret of another app",
        },
        {
            **report()["workloads"][0],
            "component": "db",
            "state": "failed",
            "message": "cannot run '/home/op/.flux/agent/process/db_web1/run.sh': No such file",
        },
    ]
    assert link.accept("secret", report(workloads=workloads))
    public = link.app_report("web1")
    assert [w["component"] for w in public["workloads"]] == ["web", "db"]
    text = json.dumps(public)
    assert "/home/op" not in text and "another app" not in text and "<path>" in text


def test_a_lying_hosts_report_is_taken_field_by_field() -> None:
    """A host answering for another node, or with garbage, counts as unreachable; what
    it may say is bounded and scrubbed."""
    own = {"node_id": NODE_ID.hex(), "report_age_s": 1.0, "problem": None, "workloads": []}
    assert parse_report(json.dumps({**own, "node_id": "00" * 20}).encode(), NODE_ID) == (
        None,
        "answered as another node",
    )
    assert parse_report(b"[1, 2]", NODE_ID) == (None, "malformed answer")
    assert parse_report(b"\xff", NODE_ID) == (None, "malformed answer")
    lie = {
        "instance": 0,
        "component": "x" * 500,
        "state": "<script>",
        "message": "at /etc/shadow",
        "reason": "r" * 500,
    }
    answer, error = parse_report(json.dumps({**own, "workloads": [lie]}).encode(), NODE_ID)
    assert error == "" and answer is not None
    (seen,) = answer["workloads"]
    assert seen["state"] == "unknown" and len(seen["component"]) == 64
    assert "/etc/shadow" not in seen["message"] and len(seen["reason"]) == 64


def test_log_flood_is_skipped_at_the_follow_rate(tmp_path: Path) -> None:
    """A workload writing far faster than the follow rate: its follower gets a note of
    what was skipped and at most LOG_CHUNK bytes a poll, never the whole flood."""
    runtime = ProcessRuntime(tmp_path, "127.0.0.1")
    log = tmp_path / "web_app1.log"
    log.write_bytes(b"first line\n")

    async def scenario() -> list[bytes]:
        follower = runtime.logs("web_app1", 10, True)
        got = [await anext(follower)]
        with log.open("ab") as f:
            f.write(b"x" * (4 * 1024 * 1024))
        got.append(await anext(follower))
        got.append(await anext(follower))
        await follower.aclose()
        return got

    tail, note, chunk = asyncio.run(scenario())
    assert tail == b"first line\n"
    assert b"skipped" in note and len(chunk) <= LOG_CHUNK


def test_a_command_touches_only_the_named_apps_workloads(tmp_path: Path) -> None:
    """Logs asked for app `mine` read its workload's log file, never another app's on
    the same node; a command for an instance this agent does not run is refused."""
    runtime = ProcessRuntime(tmp_path / "process", "127.0.0.1")
    (tmp_path / "process").mkdir()
    (tmp_path / "process" / "web_mine.log").write_bytes(b"mine\n")
    (tmp_path / "process" / "web_theirs.log").write_bytes(b"theirs\n")
    agent = Agent("http://127.0.0.1:1", "t", "key", runtime, tmp_path / "state.json", "127.0.0.1")
    agent.desired = {
        "web_mine": workload("web_mine", "mine"),
        "web_theirs": workload("web_theirs", "theirs"),
    }

    async def run(command: dict[str, Any]) -> list[dict[str, Any]]:
        return [item async for item in agent.operate(command)]

    command = {"method": "logs", "app": "mine", "instances": [0], "tail": 10, "follow": False}
    items = asyncio.run(run(command))
    assert [i["data"] for i in items] == ["mine\n"]
    with pytest.raises(OperateError) as info:
        asyncio.run(run({**command, "instances": [1]}))
    assert info.value.reason == "not_hosted"


def test_instance_reports_come_from_each_host_and_name_the_unreachable() -> None:
    """`/apps/{name}`'s per-instance reports: this node's own agent read directly, another
    host asked at its endpoint (once per cache period), a dead host listed unreachable."""
    own_id, live_id, dead_id = bytes([1] * 20), bytes([2] * 20), bytes([3] * 20)
    asked: list[str] = []

    async def host_report(request: web.Request) -> web.Response:
        asked.append(request.path)
        body = {
            "node_id": live_id.hex(),
            "report_age_s": 0.5,
            "problem": None,
            "workloads": [{**report()["workloads"][0], "instance": 1}],
        }
        return web.json_response(body)

    def own_report(app: str) -> dict[str, Any]:
        return {
            "report_age_s": 0.1,
            "problem": None,
            "workloads": [{"instance": 0, "state": "running"}],
        }

    async def scenario() -> None:
        host = web.Application()
        host.router.add_get("/agent/apps/{name}", host_report)
        server = TestServer(host)
        await server.start_server()
        dead = lease_ports(1)
        try:
            gatherer = ReportGatherer(lambda: own_id, own_report, hosts=DEVNET)

            def view() -> dict[str, Any]:
                return {
                    "name": "web1",
                    "instances": [
                        {"index": 0, "node_id": own_id.hex(), "endpoint": "unused:1"},
                        {
                            "index": 1,
                            "node_id": live_id.hex(),
                            "endpoint": f"{server.host}:{server.port}",
                        },
                        {
                            "index": 2,
                            "node_id": dead_id.hex(),
                            "endpoint": f"127.0.0.1:{dead.ports[0]}",
                        },
                    ],
                }

            first = view()
            await gatherer.add_reports(first)
            own, live, gone = (i["agent"] for i in first["instances"])
            assert own["reachable"] and own["components"] == [{"instance": 0, "state": "running"}]
            assert live["reachable"] and live["components"][0]["state"] == "running"
            assert not gone["reachable"] and first["unreachable"] == [dead_id.hex()]
            await gatherer.add_reports(view())
            assert asked == ["/agent/apps/web1"]  # the second page came from the cache
        finally:
            dead.release()
            await server.close()

    asyncio.run(scenario())


def test_reading_many_app_pages_cannot_flood_the_hosts() -> None:
    """Pages naming many hosts, asked at once: the node keeps at most MAX_FETCHES
    requests in flight to the hosts."""
    in_flight = [0, 0]  # now, most
    release = asyncio.Event()

    async def slow_host(request: web.Request) -> web.Response:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await release.wait()
        in_flight[0] -= 1
        return web.json_response({}, status=404)

    async def scenario() -> None:
        host = web.Application()
        host.router.add_get("/agent/apps/{name}", slow_host)
        server = TestServer(host)
        await server.start_server()
        try:
            gatherer = ReportGatherer(lambda: None, lambda app: {}, hosts=DEVNET)
            endpoint = f"{server.host}:{server.port}"
            views = [
                {
                    "name": f"app{a}",
                    "instances": [
                        {"index": i, "node_id": bytes([a, i] * 10).hex(), "endpoint": endpoint}
                        for i in range(10)
                    ],
                }
                for a in range(5)
            ]
            pages = asyncio.gather(*(gatherer.add_reports(view) for view in views))
            await wait_until_async(lambda: in_flight[0] == MAX_FETCHES, 5, "fetches in flight")
            release.set()
            await pages
            assert in_flight[1] == MAX_FETCHES
            assert all(len(view["unreachable"]) == 10 for view in views)  # all answered 404
        finally:
            await server.close()

    asyncio.run(scenario())


def test_a_lying_hosts_huge_number_breaks_the_app_page() -> None:
    """A hosting node answers `GET /agent/apps/{name}` with a JSON integer too large for a
    float in `report_age_s` (or as a workload's `instance`). `parse_report` is meant to
    take a lying host's answer field by field and refuse anything malformed; instead
    `float()` raises OverflowError, which it does not catch: it escapes
    `ReportGatherer.add_reports` and every `/apps/{name}` (and dashboard) page of the app
    fails, with nothing cached, for as long as the host answers so. Should: the answer is
    refused as malformed (None, "malformed answer") and the page shows the host
    unreachable."""
    node_id = bytes(range(20))
    huge = "1" + "0" * 400
    for body in (
        f'{{"node_id": "{node_id.hex()}", "workloads": [], "report_age_s": {huge}}}',
        json.dumps({"node_id": node_id.hex(), "workloads": [{"instance": 1e308 * 10}]}),
        f'{{"node_id": "{node_id.hex()}", "workloads": [{{"instance": 0, "component": "w",'
        f' "state": "running", "restarts": {huge}.5}}]}}',
    ):
        answer, error = parse_report(body.encode(), node_id)
        assert answer is None and error == "malformed answer", body[:80]


@pytest.mark.parametrize(
    "endpoint",
    [
        "169.254.169.254:80",
        "0.0.0.0:16127",
        "[::]:16127",
        "224.0.0.1:80",
        "[fe80::1]:80",
        "[::ffff:169.254.169.254]:80",
    ],
)
def test_a_host_endpoint_aimed_at_the_metadata_service_is_not_fetched(endpoint: str) -> None:
    """A node operator registers its endpoint at the cloud's metadata service (or an
    address of no machine): every node's `/apps/{name}` would GET it for the operator.
    Refused before any connection, as that host's error."""
    answer = asyncio.run(fetch_report(NODE_ID, endpoint, "myapp"))
    assert answer == (None, "unroutable endpoint")


def _restart_held(tmp_path: Path, held: Workload, volumes: Any = None) -> tuple[Any, bool]:
    """An owner `restart` of `held` (assigned here, but which the agent must not run), then
    whether its process runs; the process is removed afterwards whatever happened."""
    runtime = ProcessRuntime(tmp_path / "process", "127.0.0.1")
    (tmp_path / "process").mkdir()
    agent = Agent(
        "http://127.0.0.1:1",
        "t",
        "key",
        runtime,
        tmp_path / "state.json",
        "127.0.0.1",
        volumes=volumes,
    )
    agent.desired = {held.key: held}
    command = {"method": "restart", "app": held.app, "instances": [0], "tail": 0, "follow": False}

    async def scenario() -> tuple[Any, bool]:
        try:
            items = [item async for item in agent.operate(command)]
            seen = (await runtime.observe()).get(held.key)
            return items, seen is not None and seen.running
        finally:
            await runtime.remove(held.key, keep_data=False)

    return asyncio.run(scenario())


def test_an_owner_restart_starts_a_workload_held_for_its_unsealed_secrets(
    tmp_path: Path,
) -> None:
    """Attack: an app with sealed secrets is held on a host until a key is sealed to it
    (docs/apps.md: "the app never runs without its secrets"; a database must not
    initialise without its password). Its owner's `flux-wallet app restart` (every
    instance on every host, e.g. during a failover) reaches this host's agent, whose
    `_restart` checks only the disk-quota hold: the process runtime removes and starts
    the workload, which runs with none of its secret variables. Should: a restart or
    redeploy of a workload the agent holds (unsealable secrets) is refused with the
    hold's reason (e.g. `secret_unsealable`) and nothing starts."""
    held = replace(
        workload("web_mine", "mine"),
        command=("sleep", "30"),
        secrets_problem="no key is sealed to this node yet (a host or the owner seals it)",
    )
    items, running = _restart_held(tmp_path, held)
    assert not running, f"the held workload runs without its secrets: {items}"
    assert len(items) == 1 and "error" in items[0], items


class _IdleSyncthing:
    """A Syncthing that never started: the keeper's state is set by the test."""

    running = False
    device_id = ""
    address = ""


def test_an_owner_restart_starts_a_volume_standby(tmp_path: Path) -> None:
    """Attack: an app with a replicated volume runs on its primary only; each standby
    keeps a `receiveonly` copy and its workload is held (reported `standby`), as is a new
    primary still pulling its copy. The owner's restart (all instances) reaches a
    standby's agent: `_restart` starts the component there, so two instances of a
    single-writer app run at once, and on a primary still pulling, a running workload
    makes the next volume pass switch its folder to `sendonly` (`sends = primary and
    running`) on an incomplete copy, which the app then serves as its data. Should: a
    restart of a standby or pulling workload is refused (`standby`/`volume_pulling`),
    nothing starts."""
    keeper = VolumeKeeper(_IdleSyncthing(), ProcessRuntime(tmp_path, "h"), "key")  # type: ignore[arg-type]
    held = replace(workload("store_mine", "mine"), command=("sleep", "30"))
    keeper.standby = {held.key}
    items, running = _restart_held(tmp_path, held, volumes=keeper)
    assert not running, f"the standby's workload runs: {items}"
    assert len(items) == 1 and "error" in items[0], items


# A handful of live followers per app is what an owner watching its app needs.
FOLLOWERS_NEEDED = 8


def test_an_owner_opens_unbounded_concurrent_log_follows(tmp_path: Path) -> None:
    """Attack: an app's owner signs many `logs --follow` requests (each its own nonce: up
    to 1,000 live per signer, each good for 5 minutes) and holds them all open. Every
    one costs the agent a pump per workload polling the log file every 0.5 s and sending
    up to 128 KiB/s down the control channel, and the node a stream: an app that floods
    its log has its one write read, encoded and relayed a thousand times (128 MB/s) on a
    host it shares with other apps. The follow rate bounds one stream, nothing bounds
    how many. Should: at most a handful of follows per app at once (FOLLOWERS_NEEDED
    here); the next is refused `busy` until one ends."""
    runtime = ProcessRuntime(tmp_path / "process", "127.0.0.1")
    (tmp_path / "process").mkdir()
    (tmp_path / "process" / "web_mine.log").write_bytes(b"started\n")
    agent = Agent("http://127.0.0.1:1", "t", "key", runtime, tmp_path / "state.json", "127.0.0.1")
    agent.desired = {"web_mine": workload("web_mine", "mine")}
    command = {"method": "logs", "app": "mine", "instances": [0], "tail": 1, "follow": True}

    async def scenario() -> int:
        followers = [agent.operate(command) for _ in range(10 * FOLLOWERS_NEEDED)]
        following = 0
        try:
            for follower in followers:
                try:
                    first = await asyncio.wait_for(anext(follower), 5)
                except OperateError:
                    continue
                assert first["data"] == "started\n"
                following += 1
        finally:
            for follower in followers:
                await follower.aclose()
        return following

    following = asyncio.run(scenario())
    assert following <= FOLLOWERS_NEEDED, f"{following} follows of one app run at once"


class _SlowPullRuntime(ProcessRuntime):
    """The Docker runtime's shape where it matters here: a redeploy first pulls the image
    (up to PULL_TIMEOUT_S, 10 minutes, from a registry the app's owner names and runs);
    this pull lasts until `registry_answers` is set. Starts are recorded, not run."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "127.0.0.1")
        self.registry_answers = asyncio.Event()
        self.started: list[str] = []

    async def redeploy(self, workload: Workload) -> None:
        await self.registry_answers.wait()

    async def start(self, workload: Workload) -> None:
        self.started.append(workload.key)


class _AssignmentsApi:
    """The agent's node answering that app `theirs` was just placed here."""

    def __init__(self) -> None:
        self.assigned = [assignment(spec("theirs"), 0)]

    async def assignments(self, node_key: str) -> tuple[int, list[dict[str, Any]]]:
        return 7, self.assigned

    async def app_secrets(self, name: str) -> None:
        return None


def test_an_owner_redeploy_from_a_slow_registry_freezes_every_other_app_on_the_host(
    tmp_path: Path,
) -> None:
    """Attack: an app owner points its image at a registry it runs, which answers a pull
    as slowly as the runtime allows (PULL_TIMEOUT_S, 10 minutes), and sends a signed
    `redeploy`. The agent pulls under its single runtime lock, the one every converge
    pass takes: meanwhile no other app on the host starts, restarts after a crash, or
    takes an instance moved here by a failover; redeploys sent back to back (1,000 live
    requests per signer) keep the host frozen. Should: an owner operation locks only the
    named app's own workloads (or pulls before taking the lock), so a converge pass for
    another app goes on."""
    runtime = _SlowPullRuntime(tmp_path / "process")
    (tmp_path / "process").mkdir()
    agent = Agent(
        "http://127.0.0.1:1",
        "t",
        "key",
        runtime,
        tmp_path / "state.json",
        "127.0.0.1",
        tick_s=0.05,
    )
    agent.desired = {"web_mine": workload("web_mine", "mine")}
    command = {"method": "redeploy", "app": "mine", "instances": [0], "tail": 0, "follow": False}
    api: Any = _AssignmentsApi()  # the NodeApi calls a converge pass makes

    async def scenario() -> None:
        async def owner_redeploys() -> list[dict[str, Any]]:
            return [item async for item in agent.operate(command)]

        redeploy = asyncio.create_task(owner_redeploys())
        converging = asyncio.create_task(agent._converge_loop(api))
        try:
            await wait_until_async(
                lambda: "c0_theirs" in runtime.started,
                10,
                "another app's new instance to start while the owner's image is pulled",
            )
        finally:
            runtime.registry_answers.set()
            converging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await converging
            await redeploy

    asyncio.run(scenario())


def test_a_second_redeploy_of_a_workload_being_redeployed_is_busy(tmp_path: Path) -> None:
    """Attack: with the runtime lock no longer held across a redeploy's pull, an owner
    sends a second redeploy of the same workload while the first still pulls: both would
    remove and start it at once (two copies, or one removed under the other). Should: the
    second is refused `busy`, nothing else happens to the workload, and the first one
    completes."""
    runtime = _SlowPullRuntime(tmp_path / "process")
    (tmp_path / "process").mkdir()
    agent = Agent("http://127.0.0.1:1", "t", "key", runtime, tmp_path / "state.json", "127.0.0.1")
    agent.desired = {"web_mine": workload("web_mine", "mine")}
    command = {"method": "redeploy", "app": "mine", "instances": [0], "tail": 0, "follow": False}

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async def redeploy() -> list[dict[str, Any]]:
            return [item async for item in agent.operate(command)]

        first = asyncio.create_task(redeploy())
        await wait_until_async(lambda: "web_mine" in agent._operating, 5, "the first pull")
        second = await redeploy()
        runtime.registry_answers.set()
        return await first, second

    first, second = asyncio.run(scenario())
    assert [item.get("done") for item in first] == ["redeploy"], first
    assert [item["error"]["reason"] for item in second] == ["busy"], second


class _FailingOnceRuntime(ProcessRuntime):
    """A runtime whose first `observe` raises what no handler expects (a bug, a value a
    library chokes on); starts are recorded, not run."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "127.0.0.1")
        self.failed = False
        self.started: list[str] = []

    async def observe(self) -> dict[str, Any]:
        if not self.failed:
            self.failed = True
            raise ValueError("embedded null byte")
        return await super().observe()

    async def start(self, workload: Workload) -> None:
        self.started.append(workload.key)


def test_a_converge_pass_that_raises_anything_does_not_end_the_agents_converge_loop(
    tmp_path: Path,
) -> None:
    """Attack: any input that makes one converge pass raise an exception nobody expected
    (before: only node, runtime and spec errors were caught) ended the agent's converge
    task for good, while the report loop still told the node all was well. Should: the
    pass is reported as the runtime's error and the next pass runs and starts the apps."""
    runtime = _FailingOnceRuntime(tmp_path / "process")
    (tmp_path / "process").mkdir()
    agent = Agent(
        "http://127.0.0.1:1",
        "t",
        "key",
        runtime,
        tmp_path / "state.json",
        "127.0.0.1",
        tick_s=0.05,
    )
    api: Any = _AssignmentsApi()

    async def scenario() -> None:
        converging = asyncio.create_task(agent._converge_loop(api))
        try:
            await wait_until_async(
                lambda: "c0_theirs" in runtime.started, 10, "the app started by a later pass"
            )
        finally:
            converging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await converging

    asyncio.run(scenario())
    assert runtime.failed and agent.errors["converge"] == ""
