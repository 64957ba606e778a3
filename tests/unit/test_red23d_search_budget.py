"""red23d: an app's failover blocked by squatting its port on the nodes ranked above the
free ones (fresh-eyes review; failing test).

A placement search examines at most `search_limit` nodes, best-ranked first, eligible or
not (ranking.py: 64 here, 320 at 10,000 nodes), against apps no node can hold. The
ranking of app `a` is public (its name and every rank key are in the state), so a rival
registers cheap apps *pinned* to the nodes ranked just below the victim's hosts, each
publishing the victim's host port: every one of them becomes ineligible for the victim
(a port taken on a node excludes it). When a host of the victim goes down, its failover
examines the budget's worth of squatted nodes and gives up: the app stays under-placed
(reason `capacity`) in that block and in every refill after, while dozens of active nodes
have the room and the port free. At mainnet prices the squat costs about 0.0123 FLUX per
blocked node for `app_min_expire` (one port, 0.1 core, 100 MB, 1 GB) plus 0.01 per app:
~4 FLUX blocks any app's failover for 5,000 blocks at 10,000 nodes. The search bound must
not let a port squatter decide that a placeable app runs nowhere (e.g. a search that
resumes where its budget ran out, or a budget that port conflicts do not spend).
"""

from __future__ import annotations

from fluxchain.core import apps, placement
from fluxchain.core.appspec import Port
from fluxchain.core.crypto import address_of
from fluxchain.core.records import NodeStatus
from fluxchain.core.tx import AppRegister
from tests.support.state import StateRunner, component, key_of, make_params, node_id_of, spec

NODES = 100
ALICE, MALLORY = key_of(1), key_of(2)


def _ranked(chain: StateRunner, name: str) -> list[bytes]:
    """Every active node, best-ranked first for app `name` (ranking.py's order)."""
    scores = placement.compute_group_scores(name)
    loads = [placement.get_load(chain.state, node_id_of(i)) for i in range(NODES)]
    keyed = [
        (
            scores[placement.compute_group(load.rank_key)],
            placement.compute_node_score(name, load.rank_key),
            load.node_id,
        )
        for load in loads
        if load is not None
    ]
    return [node_id for *_, node_id in sorted(keyed, reverse=True)]


def test_red23d_port_squatters_on_the_next_ranked_nodes_block_an_apps_failover() -> None:
    chain = StateRunner(make_params())
    for i in range(NODES):
        chain.add_node(i)
    alice, mallory = chain.fund(ALICE), chain.fund(MALLORY)
    chain.apply(apps.process_app_register, chain.tx(ALICE, AppRegister(spec(alice, "shop"))))
    ranked = _ranked(chain, "shop")
    hosts = {node_id for _, node_id in placement.get_app_nodes(chain.state, "shop")}
    assert hosts == set(ranked[:3])
    budget = placement.ranking.search_limit(NODES)
    squatted = ranked[3 : 3 + budget]
    tiny = component(name="squat", cpu=1, ram_mb=100, disk_gb=1, ports=(Port(31000, 80),))
    squat = spec(
        mallory, "squat", components=(tiny,), instances=len(squatted), pinned_nodes=tuple(squatted)
    )
    chain.apply(apps.process_app_register, chain.tx(MALLORY, AppRegister(squat)))
    assert len(placement.get_app_nodes(chain.state, "squat")) == len(squatted)
    chain.end_block()

    chain.set_status(ranked[2], NodeStatus.DOWN)  # a host fails: its instance moves now
    chain.refill()
    chain.end_block()
    chain.end_block()
    free = [
        n
        for n in ranked[3 + budget :]
        if (load := placement.get_load(chain.state, n)) is not None
        and load.fits(placement.get_placement(chain.state, "shop").demand)  # type: ignore[union-attr]
    ]
    status = apps.get_app_status(chain.state, "shop")
    assert status is not None
    assert status["placed"] == 3, (
        f"shop runs {status['placed']} of 3 instances ({status['underplaced_reason']}) "
        f"while {len(free)} active nodes have its port and room free; "
        f"{address_of(MALLORY.public_key).hex()[:8]} squatted its port on the "
        f"{len(squatted)} nodes ranked next"
    )
