"""The routing table as a pure function: a route exists only for an instance the chain
placed on a node, at the address that node's own agent reports on its own host."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxchain.core import apps, views
from fluxchain.core.appspec import Port, validate
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import AppCancel, AppRegister, AppUpdate, check_endpoint
from fluxchain.gateway.haproxy import ProxySettings, render_config, render_hosts_map
from fluxchain.gateway.proxy import (
    POOL_SLOTS,
    assign_slots,
    grow_pool,
    layout,
    physical_table,
    plan_pool,
)
from fluxchain.gateway.routes import (
    Backend,
    Placed,
    PlacedApp,
    Refused,
    RouteTable,
    Server,
    Workload,
    build_table,
    placed_app_from_json,
    workloads_from_json,
)
from fluxchain.gateway.service import reached
from fluxchain.gateway.specports import PortSpec, SpecShapeError, Transport, ports_of
from p2p.netgroup import routable
from tests.support.chain import app_spec, owner_key
from tests.support.state import StateRunner, component, key_of, make_params, spec

DOMAIN = "apps.example.org"
N1, N2, N3 = "aa" * 20, "bb" * 20, "cc" * 20
ENDPOINTS = {N1: "10.0.0.1:26700", N2: "10.0.0.2:26700", N3: "10.0.0.3:26700"}


def app_json(name: str, height: int, nodes: list[str], ports: list[Any], **extra: Any) -> Any:
    components = [{"name": "web", "ports": ports, "container_ports": [80] * len(ports)}]
    components += extra.get("more", [])
    return {
        "name": name,
        "registered_height": height,
        "wanted": len(nodes),
        **({"domains": extra["domains"]} if "domains" in extra else {}),
        "spec": {"name": name, "components": components},
        "instances": [
            {"index": i, "node_id": n, "endpoint": ENDPOINTS[n]} for i, n in enumerate(nodes)
        ],
    }


def running(app: str, instance: int, *ports: str, component: str = "web") -> Workload:
    return Workload(app, instance, component, "running", ports)


def hello() -> PlacedApp:
    return placed_app_from_json(app_json("hello", 5, [N1, N2], [31000]))


def test_a_route_needs_the_chains_placement_and_the_hosts_own_report() -> None:
    reports = {N1: [running("hello", 0, "10.0.0.1:31000")]}  # N2 has not reported yet
    table = build_table([hello()], reports, DOMAIN)
    assert table.hosts == (("hello.apps.example.org", "app_hello_web_0"),)
    (backend,) = table.backends
    assert backend.mode == "http" and backend.slots == 2 + 2
    assert [s.address for s in backend.servers] == ["10.0.0.1:31000"]
    assert table.refusals == ()
    reports[N2] = [running("hello", 1, "10.0.0.2:31000")]
    both = build_table([hello()], reports, DOMAIN)
    assert [s.address for s in both.backends[0].servers] == ["10.0.0.1:31000", "10.0.0.2:31000"]
    assert both.shape() == table.shape()  # membership only: no reload needed


def test_a_workload_that_is_not_running_gets_no_route() -> None:
    reports = {N1: [Workload("hello", 0, "web", "backoff", ("10.0.0.1:31000",))]}
    assert build_table([hello()], reports, DOMAIN).backends[0].servers == ()


def test_a_node_claiming_an_instance_placed_elsewhere_is_ignored() -> None:
    """The attack: N3 (not a host of hello) and N1 (host of instance 0) both say they run
    instance 1, which the chain placed on N2."""
    reports = {
        N1: [running("hello", 0, "10.0.0.1:31000"), running("hello", 1, "10.0.0.1:31000")],
        N3: [running("hello", 1, "10.0.0.3:31000")],
    }
    table = build_table([hello()], reports, DOMAIN)
    assert [s.address for s in table.backends[0].servers] == ["10.0.0.1:31000"]
    assert [(r.reason, r.detail) for r in table.refusals] == [
        (Refused.NOT_PLACED, f"node {N1} instance 1"),
        (Refused.NOT_PLACED, f"node {N3} instance 1"),
    ]


def test_a_host_pointing_the_gateway_at_another_machine_is_refused() -> None:
    """The attack: N1 reports its instance at N2's address (or any third host's)."""
    reports = {N1: [running("hello", 0, "10.0.0.2:31000")]}
    table = build_table([hello()], reports, DOMAIN)
    assert table.backends[0].servers == ()
    assert table.refusals[0].reason is Refused.FOREIGN_HOST


def test_a_port_other_than_the_specs_is_refused() -> None:
    reports = {N1: [running("hello", 0, "10.0.0.1:22")]}
    table = build_table([hello()], reports, DOMAIN)
    assert table.backends[0].servers == ()
    assert table.refusals[0].reason is Refused.WRONG_PORT


def test_loopback_counts_as_one_host_only_when_the_operator_says_so() -> None:
    local = {N1: "127.0.0.1:26700", N2: "127.0.0.1:26701"}
    item = app_json("hello", 5, [N1, N2], [31000])
    for i in item["instances"]:
        i["endpoint"] = local[i["node_id"]]
    app = placed_app_from_json(item)
    reports = {N1: [running("hello", 0, "127.0.1.2:31000")]}
    strict = build_table([app], reports, DOMAIN)
    assert strict.backends[0].servers == () and strict.refusals[0].reason is Refused.FOREIGN_HOST
    devnet = build_table([app], reports, DOMAIN, loopback_is_one_host=True)
    assert [s.address for s in devnet.backends[0].servers] == ["127.0.1.2:31000"]
    # a public endpoint never matches a loopback report, flag or not
    public = build_table(
        [hello()], {N1: [running("hello", 0, "127.0.0.1:31000")]}, DOMAIN, loopback_is_one_host=True
    )
    assert public.backends[0].servers == ()


def test_a_spec_domain_under_the_gateway_domain_cannot_take_another_apps_name() -> None:
    """The attack: `evil`, registered first, claims hello.apps.example.org (and the bare
    gateway domain); `hello` keeps its name, `evil` keeps only what is its own."""
    records = [
        {"host": 31001, "domains": ["hello.apps.example.org", "apps.example.org"]},
        {"host": 31002, "domains": ["www.evil.apps.example.org", "evil.example.com"]},
    ]
    evil = placed_app_from_json(app_json("evil", 1, [N3], [31000, *records]))
    table = build_table([evil, hello()], {}, DOMAIN)
    hosts = dict(table.hosts)
    assert hosts["hello.apps.example.org"] == "app_hello_web_0"
    assert "apps.example.org" not in hosts
    assert hosts["www.evil.apps.example.org"] == "app_evil_web_2"
    assert hosts["evil.example.com"] == "app_evil_web_2"
    assert hosts["evil.apps.example.org"] == "app_evil_web_0"
    assert {(r.reason, r.detail) for r in table.refusals} == {
        (Refused.DOMAIN_UNDER_GATEWAY, "hello.apps.example.org"),
        (Refused.DOMAIN_UNDER_GATEWAY, "apps.example.org"),
    }


def test_domains_and_tcp_ports_are_first_come_first_served() -> None:
    first = placed_app_from_json(
        app_json("alpha", 1, [N1], [31000, {"host": 5432, "domains": ["db.example.com"]}, 6379])
    )
    second = placed_app_from_json(
        app_json("beta", 2, [N2], [31000, {"host": 5433, "domains": ["db.example.com"]}, 6379])
    )
    table = build_table([second, first], {}, DOMAIN, reserved_ports=frozenset({8080}))
    assert dict(table.hosts)["db.example.com"] == "app_alpha_web_1"
    assert table.tcp_ports == ((6379, "app_alpha_web_2"),)
    assert {r.reason for r in table.refusals} == {Refused.DOMAIN_TAKEN, Refused.TCP_PORT_TAKEN}


def test_a_domain_the_chain_gave_to_a_newer_app_is_not_routed_to_the_older_one() -> None:
    """An app kept past its expiry by a backlog still names the domain in its spec, and was
    registered first; the chain's `domains` (what it owns now) decides, not the spec."""
    old = placed_app_from_json(
        app_json("old", 1, [N1], [{"host": 31000, "domains": ["shop.example.com"]}], domains=[])
    )
    new = placed_app_from_json(
        app_json(
            "new",
            9,
            [N2],
            [{"host": 31000, "domains": ["shop.example.com"]}],
            domains=["shop.example.com"],
        )
    )
    table = build_table([old, new], {}, DOMAIN)
    assert dict(table.hosts)["shop.example.com"] == "app_new_web_0"
    assert (Refused.DOMAIN_TAKEN, "old") in {(r.reason, r.app) for r in table.refusals}


def test_the_gateways_own_port_is_never_an_apps_tcp_port() -> None:
    app = placed_app_from_json(app_json("alpha", 1, [N1], [31000, 8080]))
    table = build_table([app], {}, DOMAIN, reserved_ports=frozenset({8080}))
    assert table.tcp_ports == ()
    assert table.refusals[0].reason is Refused.TCP_PORT_TAKEN


def test_udp_ports_are_relayed_by_port_and_first_come() -> None:
    first = placed_app_from_json(
        app_json("game", 1, [N1], [31000, {"host": 27015, "protocol": "udp"}])
    )
    later = placed_app_from_json(
        app_json("dns", 2, [N2], [31000, {"host": 27015, "protocol": "both"}])
    )
    reports = {N1: [running("game", 0, "10.0.0.1:31000", "10.0.0.1:27015")]}
    table = build_table([later, first], reports, DOMAIN)
    assert table.udp_ports == ((27015, "app_game_web_1_udp"),)
    udp = next(b for b in table.backends if b.mode == "udp")
    assert [s.address for s in udp.servers] == ["10.0.0.1:27015"]
    assert table.tcp_ports == ((27015, "app_dns_web_1"),)  # "both": its TCP half still routes
    assert [(r.reason, r.app) for r in table.refusals] == [(Refused.UDP_PORT_TAKEN, "dns")]
    assert all(b.mode != "udp" for b in table.proxied())  # HAProxy never sees UDP


@pytest.mark.parametrize(
    "name", ["hello\n    server x 1.2.3.4:80", "Hello", "a_b", "-x", "x" * 70, ""]
)
def test_a_name_that_could_inject_haproxy_config_is_refused(name: str) -> None:
    """The attack: a followed node (or a bug) hands over an app name with config in it."""
    with pytest.raises(SpecShapeError):
        placed_app_from_json(app_json(name, 1, [N1], [31000]))


def test_a_followed_node_answering_an_infinite_height_is_a_bad_spec_not_a_crash() -> None:
    """A followed node (or a bug) answers `"registered_height": Infinity` (json.loads admits
    it): int() raised OverflowError, which left the gateway's pass. It is a malformed entry
    (`bad_spec` of that app) like any other."""
    entry = json.loads(
        json.dumps(app_json("alpha", 1, [N1], [31000])).replace(
            '"registered_height": 1', '"registered_height": Infinity'
        )
    )
    assert entry["registered_height"] == float("inf")
    with pytest.raises(SpecShapeError):
        placed_app_from_json(entry)


def test_a_domain_that_could_inject_haproxy_config_is_refused() -> None:
    app = placed_app_from_json(
        app_json("alpha", 1, [N1], [31000, {"host": 31001, "domains": ["a.com use_backend x"]}])
    )
    table = build_table([app], {}, DOMAIN)
    assert "a.com use_backend x" not in dict(table.hosts)
    assert table.refusals[0].reason is Refused.BAD_DOMAIN


def test_spec_ports_read_both_shapes() -> None:
    legacy = {"components": [{"name": "web", "ports": [31000, 31001], "container_ports": [80, 81]}]}
    records = {
        "components": [
            {
                "name": "web",
                "ports": [
                    {
                        "host": 31000,
                        "container": 80,
                        "protocol": "both",
                        "domains": ["Shop.Example.com"],
                    },
                ],
            }
        ]
    }
    assert ports_of(legacy) == [
        PortSpec("web", 0, 31000, Transport.TCP, ()),
        PortSpec("web", 1, 31001, Transport.TCP, ()),
    ]
    assert ports_of(records) == [PortSpec("web", 0, 31000, Transport.BOTH, ("shop.example.com",))]
    with pytest.raises(SpecShapeError):
        ports_of({"components": [{"name": "web", "ports": [70000]}]})


def test_the_chains_own_spec_json_is_read() -> None:
    """What the node's API serves (`AppSpec.to_json`), whatever shape the spec has now."""
    spec = app_spec(owner_key(0), "shop")
    ports = ports_of(spec.to_json("tflux"))
    assert [(p.component, p.index, p.host_port) for p in ports] == [("web", 0, 31000)]
    assert ports[0].transport is Transport.TCP and ports[0].domains == ()


def test_slots_keep_servers_in_place_and_list_only_changes() -> None:
    a, b, c = (Server(f"10.0.0.{i}", 31000, "n", i) for i in (1, 2, 3))
    table = build_table([hello()], {}, DOMAIN)
    backend = table.backends[0]
    with_ab = RouteTable(
        (type(backend)(backend.name, "hello", "http", 4, (a, b)),), table.hosts, (), (), ()
    )
    with_bc = RouteTable(
        (type(backend)(backend.name, "hello", "http", 4, (b, c)),), table.hosts, (), (), ()
    )
    slots, changes = assign_slots(with_ab, {})
    assert slots[backend.name] == [a, b, None, None]
    slots, changes = assign_slots(with_bc, slots)
    assert slots[backend.name] == [c, b, None, None]  # b stays in s2; c takes a's freed s1
    assert changes == [(backend.name, "s1", c)]


def test_the_rendered_config_is_valid_haproxy(tmp_path: Path) -> None:
    alpha = placed_app_from_json(
        app_json("alpha", 1, [N1, N2], [31000, {"host": 5432, "domains": ["db.example.com"]}, 6379])
    )
    reports = {N1: [running("alpha", 0, "10.0.0.1:31000", "10.0.0.1:5432", "10.0.0.1:6379")]}
    table = build_table([alpha], reports, DOMAIN)
    settings = ProxySettings("127.0.0.1", 18080, tmp_path)
    physical = physical_table(table, *grow_pool(table, (), {}))
    slots, _ = assign_slots(physical, {})
    settings.hosts_map.write_text(render_hosts_map(physical.hosts))
    settings.config_path.write_text(render_config(physical, slots, settings))
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(settings.config_path)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    text = settings.config_path.read_text()
    assert "server s1 10.0.0.1:31000 check" in text
    assert "retry-on all-retryable-errors" in text and "option redispatch" in text
    assert "bind 127.0.0.1:6379" in text


def _http_apps(*apps: tuple[str, int]) -> RouteTable:
    """HTTP backends of (app, slots), each named by `<app>.<DOMAIN>`."""
    backends = tuple(Backend(f"app_{a}_web_0", a, "http", n, ()) for a, n in apps)
    hosts = tuple(sorted((f"{a}.{DOMAIN}", f"app_{a}_web_0") for a, _ in apps))
    return RouteTable(backends, hosts, (), (), ())


def test_a_new_app_takes_a_free_pool_backend_and_no_layout_change() -> None:
    """Adding an app is a runtime change: the config's layout (what a reload changes)
    stays the same, the app lands on a free pool backend, and its host name maps there."""
    pool, held = grow_pool(_http_apps(("hello", 4)), (), {}, spare=2)
    assert pool == (("gw_http_1", POOL_SLOTS), ("gw_http_2", POOL_SLOTS), ("gw_http_3", POOL_SLOTS))
    before = physical_table(_http_apps(("hello", 4)), pool, held)
    both = _http_apps(("hello", 4), ("other", 3))
    assigned, unplaced = plan_pool(both, pool, held)
    assert unplaced == [] and assigned["app_hello_web_0"] == held["app_hello_web_0"]
    after = physical_table(both, pool, assigned)
    assert layout(after) == layout(before)  # no reload
    assert dict(after.hosts)[f"other.{DOMAIN}"] == assigned["app_other_web_0"]
    assert assigned["app_other_web_0"] != assigned["app_hello_web_0"]


def test_a_pool_backend_an_app_left_is_not_reused_in_the_same_pass() -> None:
    """Requests routed to the leaving app a moment ago may still be on their way to its
    backend: a newcomer of the same pass must not get it (it is free from the next pass)."""
    pool = (("gw_http_1", POOL_SLOTS),)
    held = {"app_gone_web_0": "gw_http_1"}
    assigned, unplaced = plan_pool(_http_apps(("new", 3)), pool, held)
    assert assigned == {} and [b.name for b in unplaced] == ["app_new_web_0"]
    assigned, unplaced = plan_pool(_http_apps(("new", 3)), pool, {})  # the next pass
    assert assigned == {"app_new_web_0": "gw_http_1"} and unplaced == []


def test_a_pool_that_runs_out_grows_keeping_every_backend_in_use_where_it_is() -> None:
    """The pool runs out: the new layout keeps the apps' backends (names and slots), gives
    an app bigger than a pool backend one of its own size, and adds free ones."""
    pool = (("gw_http_1", POOL_SLOTS), ("gw_http_2", POOL_SLOTS))
    held = {"app_a_web_0": "gw_http_2"}
    table = _http_apps(("a", 4), ("b", 4), ("big", POOL_SLOTS + 4))
    _, unplaced = plan_pool(table, pool, held)
    assert [b.name for b in unplaced] == ["app_big_web_0"]
    grown, placed = grow_pool(table, pool, held, spare=2)
    assert placed["app_a_web_0"] == "gw_http_2" and placed["app_b_web_0"] == "gw_http_1"
    assert placed["app_big_web_0"] == "gw_http_3"
    assert grown == (
        ("gw_http_1", POOL_SLOTS),
        ("gw_http_2", POOL_SLOTS),
        ("gw_http_3", POOL_SLOTS + 4),
        ("gw_http_4", POOL_SLOTS),
        ("gw_http_5", POOL_SLOTS),
    )


def test_an_app_that_outgrows_its_pool_backend_stays_routed_until_the_reload() -> None:
    """An update to more instances than its backend has slots, with no free backend big
    enough: the app keeps its host name and backend (as many servers as fit) rather than
    answering 404 until the reload, and the reload gives it a backend of its size."""
    pool = (("gw_http_1", POOL_SLOTS),)
    held = {"app_a_web_0": "gw_http_1"}
    table = _http_apps(("a", POOL_SLOTS + 2))
    assigned, unplaced = plan_pool(table, pool, held)
    assert assigned == held and [b.name for b in unplaced] == ["app_a_web_0"]
    assert dict(physical_table(table, pool, assigned).hosts) == {f"a.{DOMAIN}": "gw_http_1"}
    grown, placed = grow_pool(table, pool, held, spare=1)
    assert placed == {"app_a_web_0": "gw_http_2"}
    assert grown == (("gw_http_1", POOL_SLOTS), ("gw_http_2", POOL_SLOTS + 2))  # 1 free


def test_an_older_app_cannot_take_a_younger_apps_tcp_port_by_an_update() -> None:
    """The attack: the gateway gives a TCP listen port to the app registered first, and an
    update keeps an app's registration height. So alice (registered before bob) waits for
    bob's database to be in use on every gateway at port 6379, then updates her spec to
    publish 6379 too: every gateway now hands bob's clients (and whatever they send: a
    password, queries) to alice's container. A port is first come by when it was claimed,
    not by when its app was first registered."""
    chain = StateRunner(make_params())
    for i in range(6):
        chain.add_node(i)
    alice, bob = key_of(1), key_of(2)
    for key in (alice, bob):
        chain.fund(key)
    owner_a, owner_b = address_of(alice.public_key), address_of(bob.public_key)
    chain.apply(
        apps.process_app_register,
        chain.tx(alice, AppRegister(spec(owner_a, "alice", components=(component(),)))),
    )
    chain.end_block()
    bob_web = component(ports=(31001, 6379))
    chain.apply(
        apps.process_app_register,
        chain.tx(bob, AppRegister(spec(owner_b, "bob", components=(bob_web,)))),
    )
    chain.end_block()
    table = build_table(_listed(chain, "alice", "bob"), {}, DOMAIN)
    assert table.tcp_ports == ((6379, "app_bob_web_1"),)
    # alice's update, long after bob has had the port
    alice_web = component(ports=(31000, 6379))
    chain.apply(
        apps.process_app_update,
        chain.tx(alice, AppUpdate(spec(owner_a, "alice", components=(alice_web,))), fee=COIN),
    )
    chain.end_block()
    table = build_table(_listed(chain, "alice", "bob"), {}, DOMAIN)
    assert table.tcp_ports == ((6379, "app_bob_web_1"),), (
        "an older app's update took the TCP port a younger app had held at every gateway"
    )


def _listed(chain: StateRunner, *names: str) -> list[PlacedApp]:
    """The apps as the gateway reads them from the node's `GET /apps`."""
    return [
        placed_app_from_json(views.app_json(chain.state, name, chain.params.address_hrp))
        for name in names
    ]


@pytest.mark.parametrize(
    "endpoint_host", ["127.0.0.1", "localhost", "0.0.0.0", "169.254.169.254", "[::1]"]
)
def test_a_node_registered_at_the_gateways_own_machine_cannot_point_the_gateway_there(
    endpoint_host: str,
) -> None:
    """The attack, on a real network (no `--loopback-is-one-host`): a node registers its
    endpoint at a loopback, unspecified or link-local address, which the chain accepts as
    host:port. Its `/agent` is then read from the gateway's own machine (an app the
    operator's node hosts there can answer it), and the report `<same host>:<the spec's
    port>` passes the same-host rule by plain equality: the gateway proxies the internet
    to a service on its own loopback (or the cloud metadata address) at any port the
    attacker's spec names. Only the devnet flag may make loopback routable."""
    item = app_json("evil", 5, [N1], [6379])
    item["instances"][0]["endpoint"] = f"{endpoint_host}:26700"
    host = endpoint_host.strip("[]")
    reported = f"[{host}]:6379" if ":" in host else f"{host}:6379"
    table = build_table([placed_app_from_json(item)], {N1: [running("evil", 0, reported)]}, DOMAIN)
    assert table.backends[0].servers == (), (
        f"the gateway routes to {table.backends[0].servers[0].address} on its own machine"
    )


def test_a_node_registered_at_a_dns_name_cannot_have_the_gateway_resolve_it_elsewhere() -> None:
    """The attack: a node registers its endpoint as a DNS name it controls (the chain
    accepts host names) and its agent reports its instance at that same name, which passes
    the same-host rule by equality. The name goes into HAProxy's config as is, and HAProxy
    resolves it itself when it loads, apart from the lookup through which the gateway read
    the report: the attacker's DNS answers the gateway with its node and HAProxy with
    10.0.0.5 or 127.0.0.1 (a rebind), and the gateway serves the operator's internal
    network to the internet. A server must be the address the gateway checked."""
    item = app_json("evil", 5, [N1], [31000])
    item["instances"][0]["endpoint"] = "node1.attacker.example:26700"
    reports = {N1: [running("evil", 0, "node1.attacker.example:31000")]}
    table = build_table([placed_app_from_json(item)], reports, DOMAIN)
    for server in table.backends[0].servers:
        try:
            ipaddress.ip_address(server.host)
        except ValueError:
            raise AssertionError(
                f"server {server.address}: HAProxy resolves this name itself, to wherever "
                "the attacker's DNS points it then"
            ) from None


@pytest.mark.parametrize("domain", ["shop.xn--p1ai", "shop.xn--fiqs8s"])
def test_a_domain_the_chain_gave_an_app_is_routed_by_the_gateway(domain: str) -> None:
    """The chain accepts (and charges for) domains the gateway's own pattern refuses as
    `bad_domain`: an internationalized top-level domain in punycode (xn--p1ai, Russia's;
    xn--fiqs8s, China's). The owner holds the name on chain, no other app can take it,
    and no gateway routes it: the two rules must be one."""
    assert (
        validate(
            spec(
                address_of(key_of(1).public_key),
                components=(component(ports=(Port(31000, 80, domains=(domain,)),)),),
            ),
            make_params(),
        )
        == []
    )
    item = app_json("shop", 1, [N1], [{"host": 31000, "domains": [domain]}], domains=[domain])
    table = build_table([placed_app_from_json(item)], {}, DOMAIN)
    assert dict(table.hosts).get(domain) == "app_shop_web_0", table.refusals


@pytest.mark.parametrize(
    "component", ["web\n    server x 1.2.3.4:80", "web use_backend x", "Web", "web_0"]
)
def test_a_component_name_that_could_inject_haproxy_config_is_refused(component: str) -> None:
    """The followed node (or a bug) hands over a component name with HAProxy config in it:
    the app name and domains are checked again before anything is rendered, the component
    name, which also goes into every backend's name, was not. `hello`'s backend became
    `app_hello_web` followed by a server line pointing anywhere."""
    item = app_json("hello", 5, [N1], [31000])
    item["spec"]["components"][0]["name"] = component
    with pytest.raises(SpecShapeError):
        placed_app_from_json(item)


def test_a_gateway_told_so_never_routes_to_a_private_address() -> None:
    """A gateway inside a private network it must not expose (`--no-private-hosts`): a
    node registered at 10.0.0.5 that reports its instance there is refused, where a gateway
    of a network of private nodes (the default) routes it."""
    item = app_json("hello", 5, [N1], [31000])
    item["instances"][0]["endpoint"] = "10.0.0.5:26700"
    app = placed_app_from_json(item)
    reports = {N1: [running("hello", 0, "10.0.0.5:31000")]}
    assert [s.address for s in build_table([app], reports, DOMAIN).backends[0].servers] == [
        "10.0.0.5:31000"
    ]
    closed = build_table([app], reports, DOMAIN, private_is_routable=False)
    assert closed.backends[0].servers == ()
    assert [r.reason for r in closed.refusals] == [Refused.UNROUTABLE_HOST]


def test_a_node_registered_by_name_is_reached_where_the_operator_says() -> None:
    """A gateway on the host beside the compose devnet: nodes registered `node1:26700`, a
    name only the compose network resolves, and publish apps on the host's 127.0.1.x.
    `--reach node1:26700=127.0.0.1:P` makes the gateway read node1 at its published API
    port; the same-host rule then applies to that address (loopback is one host there),
    so the apps route, and a report naming another machine is still refused."""
    compose = placed_app_from_json(app_json("hello", 5, [N1, N2], [31000]))
    compose = replace(
        compose,
        instances=tuple(
            replace(p, endpoint=f"node{i}:26700") for i, p in enumerate(compose.instances)
        ),
    )
    reports = {
        N1: [running("hello", 0, "127.0.1.1:31000")],
        N2: [running("hello", 1, "10.0.0.9:31000")],  # another machine
    }
    plain = build_table([compose], reports, DOMAIN, loopback_is_one_host=True)
    assert plain.backends[0].servers == ()  # `node0` is no address of 127.0.1.1
    reach = {"node0:26700": "127.0.0.1:41000", "node1:26700": "127.0.0.1:41001"}
    table = build_table([reached(compose, reach)], reports, DOMAIN, loopback_is_one_host=True)
    assert [s.address for s in table.backends[0].servers] == ["127.0.1.1:31000"]
    assert any(r.reason is Refused.FOREIGN_HOST for r in table.refusals)


@pytest.mark.parametrize(
    "mapped", ["::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0", "::ffff:7f00:2"]
)
def test_a_node_registered_at_an_ipv4_mapped_loopback_cannot_point_the_gateway_at_itself(
    mapped: str,
) -> None:
    """The attack: the loopback/link-local/unspecified rule (`routes.routable`) is checked
    with Python 3.11's ipaddress, for which `::ffff:127.0.0.1` (an IPv4-mapped IPv6
    address) is neither loopback nor link-local nor unspecified, only "private", which
    the default gateway routes. A node registers its endpoint `[::ffff:127.0.0.1]:P` (the
    chain's endpoint rule admits it); the gateway reads its `/agent` from its own machine
    (an app the attacker runs on the operator's node answers it, or a local service) and
    routes `<app>.<domain>` to `[::ffff:127.0.0.1]:<spec port>`, which the kernel delivers
    to 127.0.0.1: a service on the gateway's own loopback (or, for ::ffff:169.254.169.254,
    the cloud metadata service) is served to the internet. Same as the plain-IPv4 attack
    of test_routes.py, which is refused: so must this be."""
    check_endpoint(f"[{mapped}]:26700", "endpoint")  # the chain admits it
    assert not routable(mapped, loopback_is_one_host=False), f"{mapped} is routable"
    app = PlacedApp(
        "evil",
        5,
        1,
        (PortSpec("web", 0, 6379, Transport.TCP, ()),),
        (Placed(0, "aa" * 20, f"[{mapped}]:26700"),),
    )
    report = {"aa" * 20: [Workload("evil", 0, "web", "running", (f"[{mapped}]:6379",))]}
    table = build_table([app], report, "apps.example.org")
    servers = [s.address for b in table.backends for s in b.servers]
    assert servers == [], f"the gateway routes evil.apps.example.org to {servers}"


@pytest.mark.parametrize("port", ["1" * 5_000, "\u00b2", "\u00b9\u00b2\u00b3"])
def test_a_hosting_node_reporting_an_absurd_port_cannot_crash_the_gateway(port: str) -> None:
    """The attack: any hosting node's agent (anyone's, untrusted) reports its instance at
    `10.0.0.1:<5,000 digits>` or `10.0.0.1:²`. `split_address` accepts the port by
    `str.isdigit()` and then calls `int()`, which raises ValueError (Python's 4,300-digit
    limit; '²' is a digit to isdigit but not to int). build_table does not catch it, nor
    does the gateway's loop (it catches NodeUnreachableError, ProxyError, HaproxyApiError
    and OSError only), so the gateway exits and stops HAProxy: every app behind every
    gateway that reads this node's report is down, and stays down across restarts as
    long as the report says so. What should happen: the address is refused
    (`bad_address`) and every other route is built."""
    node = "aa" * 20
    app = PlacedApp(
        "hello",
        5,
        1,
        (PortSpec("web", 0, 31000, Transport.TCP, ()),),
        (Placed(0, node, "10.0.0.1:26700"),),
    )
    report = {node: [Workload("hello", 0, "web", "running", (f"10.0.0.1:{port}",))]}
    table = build_table([app], report, "apps.example.org")
    assert [r.reason for r in table.refusals] == [Refused.BAD_ADDRESS]
    assert table.hosts == (("hello.apps.example.org", "app_hello_web_0"),)


def test_a_hosting_node_reporting_an_infinite_instance_cannot_crash_the_gateway() -> None:
    """The attack: a hosting node's `/agent` answers `{"workloads": [{"app": "x",
    "instance": Infinity, ...}]}`. Python's json.loads admits `Infinity`, and
    `workloads_from_json` calls int() on it, which raises OverflowError: it drops entries
    on KeyError, TypeError and ValueError only, so the error leaves the gateway's pass
    (which catches neither) and the gateway exits, taking HAProxy down with it. What
    should happen: the malformed entry is dropped, the others are read."""
    body = json.loads(
        '{"workloads": ['
        '{"app": "x", "instance": Infinity, "component": "web", "state": "running",'
        ' "ports": []},'
        '{"app": "hello", "instance": 0, "component": "web", "state": "running",'
        ' "ports": ["10.0.0.1:31000"]}]}'
    )
    assert workloads_from_json(body) == [
        Workload("hello", 0, "web", "running", ("10.0.0.1:31000",))
    ]


def test_a_released_apps_gateway_name_is_not_taken_by_another_owner_in_the_next_block() -> None:
    """The attack: every gateway serves app `shop` at `shop.<gateway domain>` from the app
    name alone (the wildcard DNS always points there: users' bookmarks, API clients and
    cookies scoped to that host). The owner forgets to extend and `shop` expires (or is
    cancelled to redeploy); in the very next block bob registers an app named `shop` and
    every gateway hands him the name, its users and their cookies. The chain holds a
    released spec domain for its last owner `domain_hold_blocks` blocks for exactly this
    reason ("its DNS still points at the gateways"), but not the app name that the gateway
    turns into a host name. What should happen: the name is held for its last owner as a
    domain is, so another owner's APP_REGISTER of it is refused in the meantime."""
    chain = StateRunner(make_params(domain_hold_blocks=10))
    for i in range(6):
        chain.add_node(i)
    alice, bob = key_of(1), key_of(2)
    for key in (alice, bob):
        chain.fund(key)
    owner_a, owner_b = address_of(alice.public_key), address_of(bob.public_key)
    chain.apply(
        apps.process_app_register,
        chain.tx(alice, AppRegister(spec(owner_a, "shop", components=(component(),)))),
    )
    chain.end_block()
    chain.apply(apps.process_app_cancel, chain.tx(alice, AppCancel("shop")))
    chain.end_block()
    sniped = chain.tx(bob, AppRegister(spec(owner_b, "shop", components=(component(),))))
    try:
        chain.apply(apps.process_app_register, sniped)
    except TxError:
        return  # refused: held for alice
    app = apps.get_app(chain.state, "shop")
    taken_by_bob = app is not None and app.spec.owner == owner_b
    assert not taken_by_bob, (
        "bob took `shop` (and shop.<gateway domain> on every gateway) one block after "
        "alice's app left"
    )


def test_a_hosting_nodes_report_cannot_flood_the_gateways_log_and_status() -> None:
    """The attack: a hosting node's agent (untrusted) answers a report of just under the
    1 MiB bound: its one placed instance at a 900 KB address, or 12,000 workloads of apps
    that are not placed on it. Each becomes a refusal whose detail (or app name) carries
    the attacker's text whole: 0.9 MB, or 12,000 refusals of 1.4 MB. The gateway logs
    every refusal on each pass whose refusals differ from the last (the attacker varies
    its report each second) and writes them all to status.json on every pass: about a
    megabyte a second of log and disk churn from one node, until the operator's disk is
    full. What should happen: what one report can make the gateway write is bounded (a
    detail is cut short, the unplaced workloads of one node are counted, not listed)."""
    node = "aa" * 20
    app = PlacedApp(
        "hello",
        5,
        1,
        (PortSpec("web", 0, 31000, Transport.TCP, ()),),
        (Placed(0, node, "10.0.0.1:26700"),),
    )
    long_address = [Workload("hello", 0, "web", "running", ("x" * 900_000 + ":31000",))]
    unplaced = [Workload(f"{'y' * 60}{i}", i, "web", "running", ()) for i in range(12_000)]
    for report in (long_address, unplaced):
        table = build_table([app], {node: report}, "apps.example.org")
        written = sum(len(r.detail) + len(r.app) for r in table.refusals)
        assert written <= 64 * 1024, (
            f"one node's report makes {len(table.refusals)} refusals of {written} bytes, "
            "logged and written to status.json"
        )
