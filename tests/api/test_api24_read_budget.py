"""Brief api24 of the API under a flood of reads (api/budget.py): a client that keeps
asking keeps the node's event loop, the loop consensus runs on, busy. Each client group
draws from its own budget and all of them from the node's; past either a request is
refused 429 `rate_limited` with Retry-After, before its handler runs; `/ws?from=`
replays are bounded apart (429 `replay_limited` before the upgrade).

Clients off this host are made as the node makes them behind its reverse proxy: the
test server's peer (127.0.0.1) is trusted, and X-Forwarded-For names the client. The
budget's clock is frozen where a test counts tokens, so that no refill happens between
two requests however slow the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aiohttp import WSCloseCode, WSMsgType

from fluxchain.api.budget import RATE_LIMITED, REPLAY_LIMITED, ReadBudget, ReadLimits
from fluxchain.api.queries import ApiError
from fluxchain.core.errors import FluxError, Reason
from fluxchain.node.home import NodeConfig
from fluxchain.node.origins import client_origin
from p2p.netgroup import parse_networks
from tests.api.test_api import api, commit

LOOPBACK_PROXY = parse_networks(["127.0.0.0/8"])
ALICE = "81.2.69.142"  # a client group (81.2.0.0/16)
ALICE_NEIGHBOUR = "81.2.200.9"  # the same group
BOB = "93.184.216.34"  # another
# The headers of a WebSocket client's handshake (RFC 6455 4.1; the key is its example's).
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def frozen(limits: ReadLimits) -> ReadBudget:
    return ReadBudget(limits, clock=lambda: 0.0)


def test_api24_a_flooding_client_is_refused_its_reads_with_the_default_budget(
    tmp_path: Path,
) -> None:
    """With the production defaults, 1,000 reads at once from one client group are not
    all answered: some are refused 429 `rate_limited` with Retry-After; another group is
    still answered, and so is the node's own host (loopback)."""

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY) as (client, _service, _b):
            statuses = []
            for _ in range(1_000):
                answer = await client.get("/network/tiers", headers={"X-Forwarded-For": ALICE})
                statuses.append(answer.status)
                if answer.status == 429:
                    body = await answer.json()
                    assert body["error"]["reason"] == RATE_LIMITED
                    assert int(answer.headers["Retry-After"]) >= 1
                    break
            assert 429 in statuses, "1,000 reads from one client were all answered"
            other = await client.get("/network/tiers", headers={"X-Forwarded-For": BOB})
            assert other.status == 200
            assert (await client.get("/network/tiers")).status == 200  # loopback

    asyncio.run(run())


def test_api24_each_group_has_its_budget_and_the_node_one_over_all(tmp_path: Path) -> None:
    limits = ReadLimits(per_client=3, per_node=5, burst_s=1)
    budget = frozen(limits)

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            _service,
            _b,
        ):

            async def status(host: str, path: str = "/status") -> int:
                return (await client.get(path, headers={"X-Forwarded-For": host})).status

            assert [await status(ALICE), await status(ALICE_NEIGHBOUR)] == [200, 200]
            assert await status(ALICE) == 200
            refused = await client.get("/status", headers={"X-Forwarded-For": ALICE})
            assert refused.status == 429 and refused.headers["Retry-After"] == "1"
            assert (await refused.json())["error"]["reason"] == RATE_LIMITED
            assert await status(BOB) == 200
            # The node's 5 spent, 3 by Alice's group, 1 by Bob's, 1 by a third group's.
            assert await status("1.1.1.1") == 200
            # Short, the node refuses the groups over their share (5 over 3 groups), not
            # the next comer: Bob's (1 spent) and a new group (none) are answered, in
            # debt, and then Bob's (2 spent, over 5 / 4) is refused by the node's bound.
            assert [await status(BOB), await status("8.8.8.8")] == [200, 200]
            assert await status(BOB) == 429
            # Exempt: this host; other nodes' uptime checks skip the node-wide bucket.
            assert (await client.get("/status")).status == 200
            assert await status("9.9.9.9", "/health") in (200, 503)
            assert budget.refusals[RATE_LIMITED] == 2
            metrics = await (await client.get("/metrics")).text()
            assert 'fluxchain_api_reads_refused_total{reason="rate_limited"} 2.0' in metrics

    asyncio.run(run())


def test_api24_a_refusal_says_how_long_until_the_budget_pays(tmp_path: Path) -> None:
    """Retry-After is the wait for a token at the bucket's rate, at least 1 s."""
    now = [0.0]
    budget = ReadBudget(ReadLimits(per_client=1, per_node=100, burst_s=3), clock=lambda: now[0])
    for _ in range(3):
        budget.take("a")
    with pytest.raises(Exception) as refused:
        budget.take("a", cost=3)
    assert getattr(refused.value, "retry_after", None) == 3
    now[0] = 3.0
    budget.take("a", cost=3)  # refilled at 1 a second


def test_api24_x_forwarded_for_names_a_client_only_from_a_trusted_proxy(
    tmp_path: Path,
) -> None:
    """From an untrusted peer the header is ignored: a client cannot name another group to
    spend its budget (nor escape its own). An IPv6 form embedding 127.0.0.1 (6to4) named
    by a trusted proxy is not this host: it is budgeted like any other client."""
    budget = frozen(ReadLimits(per_client=1, per_node=100, burst_s=1))

    async def run() -> None:
        async with api(tmp_path, read_budget=budget) as (client, _service, _b):
            for _ in range(3):  # loopback (the header unread): exempt
                answer = await client.get("/status", headers={"X-Forwarded-For": ALICE})
                assert answer.status == 200
        async with api(tmp_path / "b", trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            _service,
            _b,
        ):
            sixtofour = "2002:7f00:1::1"
            assert client_origin(sixtofour).endswith("/local")  # the tx origins' view
            first = await client.get("/status", headers={"X-Forwarded-For": sixtofour})
            second = await client.get("/status", headers={"X-Forwarded-For": sixtofour})
            assert [first.status, second.status] == [200, 429]

    asyncio.run(run())


def test_api24_the_client_groups_kept_are_bounded() -> None:
    budget = frozen(ReadLimits(per_client=1, per_node=1_000, burst_s=1, max_clients=3))
    for i in range(10):
        budget.take(f"api/10.{i}.0.0/16")
    assert budget.clients == 3


def test_api24_replays_are_bounded_per_group_and_node_wide(tmp_path: Path) -> None:
    """A replay in progress holds its group's slot: the group's next replay is refused 429
    `replay_limited` before the upgrade; a live stream (no from) is not a replay; once a
    replay has caught up with the head its slot is free again."""
    budget = frozen(
        ReadLimits(per_client=1_000, per_node=1_000, replays_per_client=1, replays_per_node=2)
    )

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            service,
            b,
        ):
            for _ in range(3):
                commit(service, b)
            alice = {"X-Forwarded-For": ALICE}
            with budget.replay(client_origin(ALICE)):
                # A WebSocket client's request (a plain GET takes no slot: it is refused
                # the upgrade, rev25api2 1), answered as plain HTTP before the upgrade.
                refused = await client.get("/ws?from=1", headers=alice | UPGRADE)
                assert refused.status == 429
                assert (await refused.json())["error"]["reason"] == REPLAY_LIMITED
                live = await client.ws_connect("/ws", headers=alice)
                await live.close()
                with budget.replay(client_origin(BOB)):  # the node's two are held
                    other = await client.get(
                        "/ws?from=1", headers={"X-Forwarded-For": "8.8.8.8"} | UPGRADE
                    )
                    assert other.status == 429
            ws = await client.ws_connect("/ws?from=1", headers=alice)
            heights = [(await asyncio.wait_for(ws.receive_json(), 5))["height"] for _ in "abc"]
            assert heights == [1, 2, 3]
            commit(service, b)
            assert (await asyncio.wait_for(ws.receive_json(), 5))["height"] == 4
            assert budget.replays == 0  # caught up: live, no slot held
            await ws.close()
            assert budget.refusals[REPLAY_LIMITED] == 2

    asyncio.run(run())


def test_api24_the_read_budget_is_set_in_config_toml() -> None:
    config = NodeConfig.from_toml(
        "api_reads_per_client = 7\napi_reads_per_node = 70\n"
        "api_replays_per_client = 1\napi_replays_per_node = 3\n"
    )
    limits = config.read_limits()
    assert (limits.per_client, limits.per_node) == (7, 70)
    assert (limits.replays_per_client, limits.replays_per_node) == (1, 3)
    assert NodeConfig.from_toml(NodeConfig().to_toml()).read_limits() == ReadLimits()
    with pytest.raises(FluxError) as refused:
        NodeConfig.from_toml("api_reads_per_node = 0\n")
    assert refused.value.reason == Reason.BAD_FIELD and "api_reads_per_node" in str(refused.value)


def test_api24_a_replay_past_its_time_is_closed_with_where_to_resume(tmp_path: Path) -> None:
    """A client that reads a replay slowly would hold its slot (and with a few groups the
    node's) for as long as it likes: past `replay_s` the replay is closed 1013 naming the
    height to resume from, and its slot is free."""
    budget = frozen(ReadLimits(per_client=1_000, per_node=1_000, replay_s=0.0))

    async def run() -> None:
        async with api(tmp_path, trusted_proxies=LOOPBACK_PROXY, read_budget=budget) as (
            client,
            service,
            b,
        ):
            for _ in range(40):  # more than a turn of the loop's worth (16 blocks)
                commit(service, b)
            ws = await client.ws_connect("/ws?from=1", headers={"X-Forwarded-For": ALICE})
            heights = []
            while (message := await asyncio.wait_for(ws.receive(), 5)).type == WSMsgType.TEXT:
                heights.append(message.json()["height"])
            assert message.type == WSMsgType.CLOSE and message.data == WSCloseCode.TRY_AGAIN_LATER
            assert heights == list(range(1, len(heights) + 1)) and len(heights) < 40
            assert message.extra == f"replay too slow; resume with from={len(heights) + 1}"
            assert budget.replays == 0

    asyncio.run(run())


def test_fix24api_groups_under_their_share_borrow_at_most_the_node_budget_again() -> None:
    """Short, the node-wide bucket answers groups under their fair share in debt, down to
    minus its capacity and no further: a hundred fresh groups at once get at most twice
    the node's burst, then every one is refused until it refills."""
    limits = ReadLimits(per_client=1, per_node=5, burst_s=1)
    budget = frozen(limits)
    answered = 0
    for i in range(100):
        try:
            budget.take(f"group-{i}")
            answered += 1
        except ApiError as refused:
            assert refused.reason == RATE_LIMITED and refused.retry_after == 2
    assert answered == 2 * limits.per_node * limits.burst_s


def test_groups_that_only_ask_health_do_not_shrink_the_fair_share() -> None:
    """Late review of session 24: the node-wide bucket's fair share was its size over
    every group kept, and other nodes' uptime checkers (`/health`, which spends no
    node-wide token) alone made thousands of groups: the share fell to about a token, a
    gateway reading once a second counted as over it, and the refill went first-come to
    a flood. The share is counted over the groups that used the node-wide bucket
    recently."""
    now = [0.0]
    limits = ReadLimits(per_client=50, per_node=500, burst_s=10)
    budget = ReadBudget(limits, clock=lambda: now[0])
    for i in range(4000):  # checkers' probes: their groups' buckets only
        budget.take(f"checker-{i}", node_wide=False)
    flooders = [f"flooder-{i}" for i in range(20)]
    refused = 0
    for second in range(60):
        now[0] = float(second)
        for flooder in flooders:  # each at its full 50/s, together twice the node's 500/s
            for _ in range(limits.per_client):
                with contextlib.suppress(ApiError):
                    budget.take(flooder)
        try:
            budget.take("gateway")  # one read a second
        except ApiError:
            refused += 1
    assert refused == 0, (
        f"a gateway reading once a second was refused {refused} of 60 times while twenty "
        "groups flooded: 4,000 groups that only asked /health diluted its fair share"
    )
