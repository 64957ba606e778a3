"""A placement search passes over nodes on which another app publishes one of the app's
host ports without spending its budget on them (red23d #3), and stays bounded: it still
examines at most `search_limit` nodes, whatever squats where."""

from __future__ import annotations

from fluxchain.core import apps, placement
from fluxchain.core.appspec import Protocol, port_key
from fluxchain.core.placement.ranking import Search, build_node_index, node_index, search_limit
from fluxchain.core.placement.records import NodeLoad
from fluxchain.core.tx import AppCancel, AppRegister, AppUpdate
from tests.support.state import StateRunner, component, key_of, make_params, node_id_of, spec

NODES = 100
ALICE, MALLORY = key_of(1), key_of(2)


class CountingSearch(Search):
    """A search that counts the nodes it examines (reads the load record of)."""

    examined = 0

    def eligible(self, node_id: bytes) -> NodeLoad | None:
        CountingSearch.examined += 1
        return super().eligible(node_id)


def squat_all_but(chain: StateRunner, keep: int, port: int) -> list[bytes]:
    """Mallory publishes `port` on every active node but the last `keep` (pinned apps of
    one small instance each). Returns the nodes left free."""
    mallory = chain.fund(MALLORY)
    nodes = sorted(node_id_of(i) for i in range(NODES))
    squatted, free = nodes[: NODES - keep], nodes[NODES - keep :]
    tiny = component(name="squat", cpu=1, ram_mb=100, disk_gb=1, ports=(port,))
    for start in range(0, len(squatted), 50):
        pins = tuple(squatted[start : start + 50])
        squat = spec(
            mallory, f"squat{start}", components=(tiny,), instances=len(pins), pinned_nodes=pins
        )
        chain.apply(apps.process_app_register, chain.tx(MALLORY, AppRegister(squat)))
    return free


def test_a_search_finds_the_free_nodes_past_any_number_of_port_squatters() -> None:
    """97 of 100 nodes publish the app's host port for another app: the app's three
    instances go to the three free nodes, though 97 squatters exceed the budget (64)."""
    chain = StateRunner(make_params())
    for i in range(NODES):
        chain.add_node(i)
    free = squat_all_but(chain, 3, 31000)
    assert search_limit(NODES) < NODES - 3
    alice = chain.fund(ALICE)
    chain.apply(apps.process_app_register, chain.tx(ALICE, AppRegister(spec(alice, "shop"))))
    hosts = {node_id for _, node_id in placement.get_app_nodes(chain.state, "shop")}
    assert hosts == set(free)


def test_a_search_examines_at_most_its_budget_whatever_squats_where() -> None:
    """With every node free of the port but too small for the app, the search examines
    `search_limit` nodes and stops; with every node squatted, it examines none."""
    chain = StateRunner(make_params())
    for i in range(NODES):
        chain.add_node(i)
    alice = chain.fund(ALICE)
    huge = spec(alice, "huge", components=(component(cpu=10_000),))
    demand = placement.Demand.of(huge)
    CountingSearch.examined = 0
    assert CountingSearch(chain.state, "huge", demand, set()).best(3) == []
    assert CountingSearch.examined == search_limit(NODES)
    squat_all_but(chain, 0, 31000)
    CountingSearch.examined = 0
    assert CountingSearch(chain.state, "huge", demand, set()).best(3) == []
    assert CountingSearch.examined == 0


def test_the_port_index_equals_a_fresh_build_as_apps_come_and_go() -> None:
    """`by_port` follows every load record change (placements, cancels, a node leaving)
    exactly: it equals a build from the load records at every step."""
    chain = StateRunner(make_params())
    for i in range(12):
        chain.add_node(i)
    alice = chain.fund(ALICE)
    index = node_index(chain.state)
    app = spec(alice, "web", components=(component(ports=(31000, 31001)),), instances=5)
    chain.apply(apps.process_app_register, chain.tx(ALICE, AppRegister(app)))
    assert index.by_port and index.contents() == build_node_index(chain.state).contents()
    chain.apply(
        apps.process_app_update,
        chain.tx(ALICE, AppUpdate(spec(alice, "web", components=(component(),)))),
    )
    assert set(index.by_port) == {port_key(31000, Protocol.TCP)}
    assert index.contents() == build_node_index(chain.state).contents()
    chain.apply(apps.process_app_cancel, chain.tx(ALICE, AppCancel("web")))
    assert not index.by_port
    assert index.contents() == build_node_index(chain.state).contents()
