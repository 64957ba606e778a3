"""Placement: eligibility, failover, refill, under-placement, indexes and network stats."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fluxchain.core import apps, nodes, placement
from fluxchain.core.appspec import Port, Protocol, port_key
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind
from fluxchain.core.params import Tier
from fluxchain.core.records import NodeStatus, node_key
from fluxchain.core.schema import new_state
from fluxchain.core.tx import AppCancel, AppRegister, AppUpdate, NodeUpdate
from tests.support.state import (
    StateRunner,
    check_invariants,
    component,
    geo,
    key_of,
    node_id_of,
    spec,
)

KEY = key_of(1)


def register(chain: StateRunner, name: str = "myapp", **changes: Any) -> None:
    owner = chain.fund(KEY)
    chain.apply(
        apps.process_app_register, chain.tx(KEY, AppRegister(spec(owner, name=name, **changes)))
    )


def nodes_of(chain: StateRunner, name: str = "myapp") -> set[bytes]:
    return {n for _, n in placement.get_app_nodes(chain.state, name)}


def test_scenario_ten_nodes_fail_one_by_one_then_return() -> None:
    """A user's 3-instance app on a 10-node network: each time one of its nodes fails,
    the app is back to 3 instances in that same block; with 2 nodes left it runs on 2
    and says so; when nodes come back it fills up again."""
    chain = StateRunner()
    for i in range(10):
        chain.add_node(i)
    register(chain)
    assert len(nodes_of(chain)) == 3
    failed: list[bytes] = []
    while len(failed) < 8:
        chain.end_block()
        victim = sorted(nodes_of(chain))[0]
        chain.set_status(victim, NodeStatus.DOWN, "down")
        failed.append(victim)
        alive = 10 - len(failed)
        events = chain.events()
        unassigned = [e for e in events if e.kind is EventKind.UNASSIGNED]
        assert [(e.fields[1], e.fields[3]) for e in unassigned] == [(victim, "down")]
        assert len(nodes_of(chain)) == min(3, alive)
        assert victim not in nodes_of(chain)
        if alive >= 3:
            assert [e.fields[2] for e in events if e.kind is EventKind.ASSIGNED] == [
                unassigned[0].fields[2]
            ]
        check_invariants(chain.state)
    # 2 nodes left: under-placed, reported in an event and in the status
    under = chain.events(EventKind.APP_UNDERPLACED)
    assert under and under[-1].fields == ("myapp", 2, 3, "no_eligible_nodes")
    status = apps.get_app_status(chain.state, "myapp")
    assert status is not None and status["status"] == "underplaced" and status["placed"] == 2
    assert placement.get_underplaced(chain.state) == ["myapp"]
    # a node returns: the app is whole again in that block (its end-of-block refill)
    chain.end_block()
    chain.set_status(failed[0], NodeStatus.CONFIRMED)
    chain.refill()
    assert len(nodes_of(chain)) == 3
    assert chain.events(EventKind.APP_PLACED)[-1].fields == ("myapp", 3)
    assert placement.get_underplaced(chain.state) == []
    check_invariants(chain.state)


def test_failover_moves_only_the_failed_nodes_instances() -> None:
    chain = StateRunner()
    for i in range(20):
        chain.add_node(i)
    for n in range(15):
        register(chain, name=f"app{n}", components=(component(ports=(31000 + n,)),))
    before = {f"app{n}": placement.get_app_nodes(chain.state, f"app{n}") for n in range(15)}
    victim = node_id_of(7)
    chain.set_status(victim, NodeStatus.DOWN)
    for name, where in before.items():
        after = placement.get_app_nodes(chain.state, name)
        for index, node_id in where:
            if node_id != victim:
                assert (index, node_id) in after
        assert len(after) == 3
    check_invariants(chain.state)


def test_placement_follows_the_rendezvous_rank() -> None:
    chain = StateRunner()
    for i in range(30):
        chain.add_node(i)
    register(chain)
    scores = placement.compute_group_scores("myapp")
    rank_keys = {
        chain.state.get(node_key(node_id_of(i))).rank_key: node_id_of(i) for i in range(30)
    }
    ranked = [
        rank_keys[r]
        for r in sorted(
            rank_keys,
            key=lambda r: (
                scores[placement.compute_group(r)],
                placement.compute_node_score("myapp", r),
            ),
            reverse=True,
        )
    ]
    assert nodes_of(chain) == set(ranked[:3])


def test_min_tier_and_reason() -> None:
    chain = StateRunner()
    for i in range(4):
        chain.add_node(i, tier=Tier.CUMULUS)
    chain.add_node(10, tier=Tier.STRATUS)
    register(chain, min_tier=Tier.NIMBUS)
    assert nodes_of(chain) == {node_id_of(10)}
    assert chain.events(EventKind.APP_UNDERPLACED)[-1].fields == ("myapp", 1, 3, "tier")
    chain.add_node(11, tier=Tier.NIMBUS)
    chain.refill()
    assert node_id_of(11) in nodes_of(chain)
    check_invariants(chain.state)


def test_geolocation_allow_and_deny() -> None:
    chain = StateRunner()
    places = [("DE", "EU"), ("FR", "EU"), ("US", "NA"), ("JP", "AS")]
    for i in range(16):
        country, continent = places[i % 4]
        chain.add_node(i, country=country, continent=continent)
    register(chain, name="eu", geolocation=geo("EU") + geo("EU_DE", allow=False))
    assert nodes_of(chain, "eu") <= {node_id_of(j) for j in range(1, 16, 4)}
    assert len(nodes_of(chain, "eu")) == 3
    notus = (component(ports=(31001,)),)
    register(chain, name="notus", geolocation=geo("NA", allow=False), components=notus)
    assert not nodes_of(chain, "notus") & {node_id_of(j) for j in range(2, 16, 4)}
    japan = (component(ports=(31002,)),)
    register(chain, name="japan", geolocation=geo("AS_JP"), instances=5, components=japan)
    assert len(nodes_of(chain, "japan")) == 4
    assert chain.events(EventKind.APP_UNDERPLACED)[-1].fields == ("japan", 4, 5, "geolocation")
    register(chain, name="oceania", geolocation=geo("OC"))
    assert chain.events(EventKind.APP_UNDERPLACED)[-1].fields == ("oceania", 0, 3, "geolocation")
    check_invariants(chain.state)


def test_capacity_is_respected_and_reported() -> None:
    chain = StateRunner()
    for i in range(3):
        chain.add_node(i)  # cumulus: 3 cores, 5,952 MB, 140 GB for apps
    big = (component(cpu=20, ram_mb=4_000, disk_gb=100, ports=()),)
    register(chain, name="first", components=big)
    assert len(nodes_of(chain, "first")) == 3
    register(chain, name="second", components=big)
    assert chain.events(EventKind.APP_UNDERPLACED)[-1].fields == ("second", 0, 3, "capacity")
    check_invariants(chain.state)
    # cancelling the first frees capacity: the second fills at the end of the block
    chain.apply(apps.process_app_cancel, chain.tx(KEY, AppCancel("first")))
    chain.end_block()
    assert len(nodes_of(chain, "second")) == 3
    check_invariants(chain.state)


def test_host_ports_do_not_collide_on_a_node() -> None:
    chain = StateRunner()
    for i in range(4):
        chain.add_node(i)
    register(chain, name="one")  # publishes 31000
    register(chain, name="two")  # publishes 31000 too: at most one per node
    assert len(nodes_of(chain, "two")) == 1
    assert not nodes_of(chain, "one") & nodes_of(chain, "two")
    check_invariants(chain.state)


def test_udp_and_tcp_on_the_same_port_coexist_on_one_node() -> None:
    """A tcp app and a udp app publishing the same number run side by side on the same
    three nodes; an app publishing that number over both conflicts with each."""
    chain = StateRunner()
    for i in range(3):
        chain.add_node(i)
    register(chain, name="web", components=(component(ports=(Port(31000, 80),)),))
    register(chain, name="dns", components=(component(ports=(Port(31000, 53, Protocol.UDP),)),))
    assert nodes_of(chain, "web") == nodes_of(chain, "dns") and len(nodes_of(chain, "dns")) == 3
    assert apps.get_app_status(chain.state, "dns")["status"] == "placed"  # type: ignore[index]
    both = (component(ports=(Port(31000, 53, Protocol.BOTH),)),)
    register(chain, name="both", components=both)
    assert nodes_of(chain, "both") == set()
    load = placement.get_load(chain.state, node_id_of(0))
    assert load is not None and load.ports == (
        port_key(31000, Protocol.TCP),
        port_key(31000, Protocol.UDP),
    )
    check_invariants(chain.state)


def test_an_update_from_tcp_to_both_keeps_its_instances_where_udp_is_free() -> None:
    """The update's own ports are released before the new ones are checked: 31000/tcp to
    31000/both stays put where 31000/udp is free, and moves off a node where it is not."""
    chain = StateRunner()
    for i in range(6):
        chain.add_node(i)
    register(chain, name="web", components=(component(ports=(Port(31000, 80),)),))
    before = nodes_of(chain, "web")
    taken = sorted(before)[0]
    free = sorted(set(map(node_id_of, range(6))) - before)  # three nodes
    register(
        chain,
        name="dns",
        components=(component(ports=(Port(31000, 53, Protocol.UDP),)),),
        pinned_nodes=(taken, *free[:2]),  # leaves free[2] for the instance that must move
    )
    assert taken in nodes_of(chain, "dns")
    owner = chain.fund(KEY)
    both = spec(owner, name="web", components=(component(ports=(Port(31000, 80, Protocol.BOTH),)),))
    chain.apply(apps.process_app_update, chain.tx(KEY, AppUpdate(both), fee=10**9))
    after = nodes_of(chain, "web")
    assert after == (before - {taken}) | {free[2]}
    check_invariants(chain.state)


def test_pinned_nodes() -> None:
    chain = StateRunner()
    for i in range(10):
        chain.add_node(i)
    pins = (node_id_of(2), node_id_of(5), node_id_of(8))
    register(chain, pinned_nodes=pins)
    assert nodes_of(chain) == set(pins)
    chain.set_status(node_id_of(5), NodeStatus.DOWN)
    assert nodes_of(chain) == {node_id_of(2), node_id_of(8)}
    assert chain.events(EventKind.APP_UNDERPLACED)[-1].fields[3] == "pinned"


def test_node_without_benchmark_hosts_nothing() -> None:
    chain = StateRunner()
    chain.add_node(0, bench=(1, 2_048, 80))  # all reserved for the system
    for i in range(1, 4):
        chain.add_node(i)
    register(chain)
    assert node_id_of(0) not in nodes_of(chain)


def test_indexes_answer_both_questions() -> None:
    chain = StateRunner()
    for i in range(6):
        chain.add_node(i)
    register(chain, name="a")
    register(chain, name="b", components=(component(ports=(31001,)),))
    for name in ("a", "b"):
        for index, node_id in placement.get_app_nodes(chain.state, name):
            assert (name, index) in placement.get_apps_on_node(chain.state, node_id)


def test_restart_rebuilds_the_cache_and_agrees() -> None:
    chain = StateRunner()
    for i in range(12):
        chain.add_node(i, country="DE" if i % 2 else "FR")
    for n in range(6):
        register(chain, name=f"app{n}", geolocation=geo("EU_DE") if n % 2 else ())
    chain.end_block()
    # a "restarted" node: a fresh State loaded from the committed encoding
    restarted = new_state()
    restarted.load(chain.state.encoded_items())
    other = StateRunner(params=chain.params, state=restarted)
    other.height = chain.height
    other.new_ctx()
    for c in (chain, other):
        c.set_status(node_id_of(3), NodeStatus.DOWN)
    assert chain.state.pending_changes() == other.state.pending_changes()
    assert [e.to_fields() for e in chain.events()] == [e.to_fields() for e in other.events()]


def test_network_stats() -> None:
    chain = StateRunner()
    chain.add_node(0, tier=Tier.CUMULUS, country="DE", owner=b"\x01" * 20)
    chain.add_node(1, tier=Tier.NIMBUS, country="FR", owner=b"\x01" * 20)
    chain.add_node(2, tier=Tier.STRATUS, country="US", continent="NA", owner=b"\x02" * 20)
    chain.add_node(3, status=NodeStatus.REGISTERED)
    stats = placement.network_stats(chain.state)
    assert stats["active_nodes"] == 3
    assert stats["nodes_by_tier"] == {"cumulus": 1, "nimbus": 1, "stratus": 1}
    assert stats["nodes_by_status"]["registered"] == 1
    assert stats["total_cores"] == 4 + 8 + 16
    assert stats["total_ram_mb"] == 8_000 + 32_000 + 64_000
    assert stats["countries"] == 3 and stats["operators"] == 2
    chain.set_status(node_id_of(2), NodeStatus.DOWN)
    stats = placement.network_stats(chain.state)
    assert stats["countries"] == 2 and stats["operators"] == 1 and stats["active_nodes"] == 2


def test_hooks_are_idempotent() -> None:
    chain = StateRunner()
    chain.add_node(0)
    placement.on_node_active(chain.ctx, node_id_of(0))
    assert placement.network_stats(chain.state)["active_nodes"] == 1
    placement.on_node_inactive(chain.ctx, node_id_of(9), "down")  # unknown node: no effect
    assert placement.network_stats(chain.state)["active_nodes"] == 1


def _relocate(chain: StateRunner, i: int, country: str, continent: str) -> None:
    """What NODE_UPDATE does to an active node that moves: off, new location, on again."""
    node_id = node_id_of(i)
    node = chain.state.get(node_key(node_id))
    placement.on_node_inactive(chain.ctx, node_id, "relocated")
    chain.state.put(node_key(node_id), replace(node, country=country, continent=continent))
    placement.on_node_active(chain.ctx, node_id)


def _restarted(chain: StateRunner) -> StateRunner:
    """A node that restarted: a fresh State loaded from the committed encoding."""
    state = new_state()
    state.load(chain.state.encoded_items())
    other = StateRunner(params=chain.params, state=state)
    other.height = chain.height
    other.new_ctx()
    return other


def _register_in_both(long_running: StateRunner, name: str, **changes: Any) -> list[Any]:
    """Register the same app on a long-running state, then on a restarted copy of it (in
    that order: the long-running process's history is what used to leak into the result);
    both must write the same changes and emit the same events."""
    restarted_from = _restarted(long_running)
    register(long_running, name=name, **changes)
    register(restarted_from, name=name, **changes)
    assert long_running.state.pending_changes() == restarted_from.state.pending_changes()
    events = [e.to_fields() for e in long_running.events()]
    assert events == [e.to_fields() for e in restarted_from.events()]
    return long_running.events(EventKind.APP_UNDERPLACED)


def test_relocated_nodes_cannot_split_the_underplacement_reason_on_restart() -> None:
    """Issue 18 (a): two Cumulus nodes leave DE for the US; an EU-only Nimbus app is then
    registered. A node that kept running used to record reason `tier`, one that restarted
    `geolocation`: different state roots, the restarted validator forks off."""
    chain = StateRunner()
    chain.add_node(0, tier=Tier.NIMBUS)
    chain.add_node(1)
    chain.add_node(2)
    chain.end_block()
    _relocate(chain, 1, "US", "NA")
    _relocate(chain, 2, "US", "NA")
    chain.end_block()
    underplaced = _register_in_both(chain, "euapp", geolocation=geo("EU"), min_tier=Tier.NIMBUS)
    # three active nodes, one of them Nimbus: tier is the first requirement that leaves
    # fewer nodes than the 3 instances
    assert underplaced[-1].fields == ("euapp", 1, 3, "tier")


def test_unconfirmed_registrations_cannot_split_the_underplacement_reason() -> None:
    """Issue 18 (b): 10 freshly registered (unconfirmed) EU nodes pushed the EU location
    pool past POOL_LIMIT for a restarted node only, which then walked every node and
    tallied another reason (`tier` instead of `geolocation`). Anyone can register nodes."""
    chain = StateRunner()
    for i in range(2_040):
        chain.add_node(i, country="DE", continent="EU")
    for i in range(2_040, 4_140):
        chain.add_node(i, country="US", continent="NA")
    chain.end_block()
    for i in range(4_140, 4_150):
        chain.add_node(i, country="DE", continent="EU", status=NodeStatus.REGISTERED)
    chain.end_block()
    underplaced = _register_in_both(chain, "euapp", geolocation=geo("EU"), min_tier=Tier.NIMBUS)
    assert underplaced[-1].fields == ("euapp", 0, 3, "tier")  # no Nimbus node at all


def test_node_index_equals_a_fresh_build_through_reverts_and_discards() -> None:
    """The node index is owned by the State and follows every change to the load records:
    a failed tx's writes undone, a proposal's writes discarded, a block committed."""
    chain = StateRunner()
    state = chain.state

    def agrees() -> bool:
        fresh = placement.build_node_index(state).contents()
        return placement.node_index(state).contents() == fresh

    for i in range(6):
        chain.add_node(i, country="DE" if i % 2 else "FR")
    assert agrees()
    chain.end_block()
    mark = state.snapshot()
    _relocate(chain, 1, "US", "NA")
    chain.set_status(node_id_of(2), NodeStatus.DOWN)
    chain.add_node(7, country="JP", continent="AS")
    assert agrees() and node_id_of(7) in placement.node_index(state).by_place["_JP"]
    state.revert(mark)
    assert agrees() and "_JP" not in placement.node_index(state).by_place
    _relocate(chain, 3, "US", "NA")
    state.discard()
    assert agrees() and "_US" not in placement.node_index(state).by_place
    _relocate(chain, 3, "US", "NA")
    chain.end_block()
    assert agrees() and placement.node_index(state).by_place["_US"] == {node_id_of(3)}
    assert placement.node_index(_restarted(chain).state).contents() == (
        placement.node_index(state).contents()
    )


def test_an_app_is_not_placed_on_a_node_whose_registered_api_port_it_publishes() -> None:
    """The attack: the banned list holds the default node ports only (26600..26799), but a
    node registers the port its API really answers on in its endpoint (here 30000, an
    operator's choice). An app publishing host port 30000 is placed on it all the same:
    on the node's next restart the app's container may hold the port first, and then the
    app answers where the chain, the gateways and the uptime checkers reach that node's
    API. The chain knows the port: a node is never given an app that publishes it."""
    chain = StateRunner()
    for i in range(6):
        # registered at its endpoint, then confirmed: placement snapshots the node then
        node = chain.add_node(i, status=NodeStatus.REGISTERED)
        port = 30000 if i < 3 else 26700
        chain.state.put(node_key(node.node_id), replace(node, endpoint=f"10.0.0.{i}:{port}"))
        chain.set_status(node.node_id, NodeStatus.CONFIRMED)
    register(chain, "squat", components=(component(ports=(30000,)),))
    assert not nodes_of(chain, "squat") & {node_id_of(i) for i in range(3)}, (
        "placed on a node whose API answers on the port the app publishes"
    )


def test_a_node_update_moving_its_api_port_is_followed_by_placement() -> None:
    """The same attack after a NODE_UPDATE: a confirmed node that moves its API to port
    30000 (same place, so nothing is re-placed) is never given an app publishing 30000."""
    owner = key_of(7)
    chain = StateRunner()
    for i in range(6):
        chain.add_node(i, owner=address_of(owner.public_key))
    chain.fund(owner)
    for i in range(3):
        node_id = node_id_of(i)
        update = NodeUpdate(node_id, f"10.0.0.{i}:30000", "DE", "EU", b"", b"", 0)
        chain.apply(nodes.process_node_update, chain.tx(owner, update))
        load = placement.get_load(chain.state, node_id)
        assert load is not None and load.api_port == 30000
    register(chain, "squat", components=(component(ports=(30000,)),))
    assert not nodes_of(chain, "squat") & {node_id_of(i) for i in range(3)}


def test_a_node_update_cannot_move_the_api_onto_a_port_a_hosted_app_publishes() -> None:
    """The other order: the app is placed first, then the node moves its API (same place,
    so the instance stays) to the port the app publishes. On the node's next restart the
    app could take the port and answer for its API. The update is refused, and the node
    may still move its API anywhere else."""
    owner = key_of(7)
    chain = StateRunner()
    for i in range(3):
        chain.add_node(i, owner=address_of(owner.public_key))
    chain.fund(owner)
    register(chain, "held", components=(component(ports=(30000,)),))
    host = sorted(nodes_of(chain, "held"))[0]
    node = chain.state.get(node_key(host))
    assert node is not None
    squat = NodeUpdate(host, "10.0.0.9:30000", node.country, node.continent, b"", b"", 0)
    with pytest.raises(TxError) as refused:
        chain.apply(nodes.process_node_update, chain.tx(owner, squat))
    assert refused.value.reason is Reason.ENDPOINT_PORT_TAKEN
    elsewhere = replace(squat, endpoint="10.0.0.9:30001")
    chain.apply(nodes.process_node_update, chain.tx(owner, elsewhere))
    load = placement.get_load(chain.state, host)
    assert load is not None and load.api_port == 30001
