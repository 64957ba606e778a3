"""Placement: which confirmed node runs which instance of which app.

Rules this module keeps (docs/apps.md explains them with figures):

1. **Eligible** for an app: the node is active (CONFIRMED, so it has a load record), its
   tier is at least the app's `min_tier`, its location passes the geolocation rules, it
   is one of the pinned nodes when the app pins any, it has the free cpu, RAM and disk of
   one instance, none of the app's host ports is taken on it, and it does not already run
   an instance of the app (one instance per node per app).
2. **Ranking** (rendezvous hashing, two levels): nodes fall into `GROUPS` groups by the
   first byte of their rank key. For app `a`, a node with rank key `n` in group `g` ranks
   by the pair `(group_score(a, g), sha256(TAG_NODE ‖ a ‖ n))`, highest first, where the 64 group
   scores are 4-byte slices of SHA-256(TAG_GROUP ‖ a ‖ k) for k = 0..7 (plus g for ties). Missing
   instances go to the best-ranked eligible nodes. The pair order is a fixed function of
   (app, node), so every honest node computes the same placement, and the best nodes of
   an app can be found by visiting groups in rank order instead of hashing all nodes.
   The rank key, not the node id, because a node id is the hash of its register tx and
   can be ground to outrank every node for a chosen app; a rank key hashes the id with a
   mix of proposer reveals made after the id was fixed (core/nodes.py `compute_rank_key`).
   A node without one yet has no load record: it is not placed.
3. **Sticky and incremental**: an instance stays on its node while the node is active.
   When a node leaves CONFIRMED, exactly its instances are moved, in the same block
   (auto-failover). When capacity appears (a node joins; an app shrinks, moves, is
   cancelled or expires), the capacity version goes up, and at the end of the block the
   under-placed apps not yet retried at this version are retried, at most
   `params.app_refills_per_block` of them, in the round-robin order of the refill queue
   (the rest in the next blocks). Nothing recomputes the whole placement, and nothing
   scans every under-placed app.
4. **Under-placement is visible**: an app with fewer instances than it asked for has its
   own `W` record, its placement has a reason (`capacity`, `geolocation`, `tier`,
   `pinned`, `no_eligible_nodes`) and an APP_UNDERPLACED event says so; APP_PLACED when it
   is whole.
5. **Bounded records**: a node hosts at most `MAX_HOSTED` instances, and an app owes at
   most `MAX_ACCRUALS` nodes between two settlements (a stretch is merged into the node's
   earlier one): a node beyond either bound is not eligible, so no rule writes a record
   that the decoder would refuse on restart.
6. **Hosting is paid until `paid_until`** (the app's expiry): an app whose expiry is
   carried over to a later block (apps.py bounds that work per block) accrues nothing
   beyond it and gets no new instances.

Tables (one byte prefix):

    P  placement   app name            -> Placement (where app Y runs, with accruals)
    L  node load   node_id(20)         -> NodeLoad (what node X runs; capacity; exists
                                          exactly while the node is CONFIRMED and has
                                          its rank key)
    W  wanting     app name            -> Wanting: the app is under-placed; its live entry
                                          in the refill queue and the capacity version it
                                          was last tried at
    F  refill      (empty)             -> Refill: the capacity version and the number of
                                          under-placed apps
    T  totals      (empty)             -> NetworkTotals of active nodes
    C  countries   country code        -> Count of active nodes there
    O  operators   owner address(20)   -> Count of active nodes of that owner

The reason is a function of the state where the placement last changed: the first of
pins, tier, geolocation that leaves fewer active nodes than instances, else `capacity`
(`compute_shortfall_reason`); never of how the search went.

One index is derived, not stored: `NodeIndex`, the active nodes by group and by place,
which the search walks instead of every node. It is owned by the State (a watcher of the
L table, see state.py), equals `build_node_index(state)` at every instant (the
differential tests check it after every block), and holds exactly the nodes with a load
record, so a node that restarted, synced from genesis or ran for a month walks the same
sets. Which sets are walked (a location pool or all groups) changes only the cost.

The package's modules, one job each (import the names from this package):

    records.py      the tables above: record types, their canonical form and bounds, keys,
                    and the read-only accessors (`get_*`)
    ranking.py      rendezvous scores and groups, the node index, the search for the best
                    eligible nodes, and the shortfall reason
    assignment.py   placing and releasing instances, accruals, the refill queue, and the
                    hooks apps.py and nodes.py call
    stats.py        the network counters and `network_stats`
"""

from __future__ import annotations

from fluxchain.core.placement.assignment import (
    REFILL_QUEUE,
    compute_capacity,
    count_moved_by_update,
    endpoint_port_hosted,
    get_accruals,
    mark_settled,
    on_node_active,
    on_node_endpoint,
    on_node_inactive,
    place_new_app,
    process_block,
    remove_app,
    replace_demand,
    set_paid_until,
)
from fluxchain.core.placement.ranking import (
    GROUPS,
    POOL_LIMIT,
    TAG_GROUP,
    TAG_NODE,
    NodeIndex,
    Search,
    build_node_index,
    compute_group,
    compute_group_scores,
    compute_node_score,
    compute_shortfall_reason,
    node_index,
)
from fluxchain.core.placement.records import (
    COUNTRIES,
    EMPTY_REFILL,
    EMPTY_TOTALS,
    MAX_ACCRUALS,
    MAX_HOSTED,
    MAX_NAME,
    NODE_LOAD,
    OPERATORS,
    PLACEMENT,
    RANK_KEY_SIZE,
    REASON_CAPACITY,
    REASON_GEO,
    REASON_NONE,
    REASON_PINNED,
    REASON_TIER,
    REFILL,
    TABLES,
    TOTALS,
    WANTING,
    Accrual,
    Count,
    Demand,
    Instance,
    NetworkTotals,
    NodeLoad,
    Placement,
    Refill,
    Wanting,
    count_underplaced,
    get_app_nodes,
    get_apps_on_node,
    get_load,
    get_placement,
    get_refill,
    get_totals,
    get_underplaced,
    load_key,
    placement_key,
    wanting_key,
)
from fluxchain.core.placement.stats import (
    count_node,
    network_stats,
)

__all__ = [
    "COUNTRIES",
    "EMPTY_REFILL",
    "EMPTY_TOTALS",
    "GROUPS",
    "MAX_ACCRUALS",
    "MAX_HOSTED",
    "MAX_NAME",
    "NODE_LOAD",
    "OPERATORS",
    "PLACEMENT",
    "POOL_LIMIT",
    "RANK_KEY_SIZE",
    "REASON_CAPACITY",
    "REASON_GEO",
    "REASON_NONE",
    "REASON_PINNED",
    "REASON_TIER",
    "REFILL",
    "REFILL_QUEUE",
    "TABLES",
    "TAG_GROUP",
    "TAG_NODE",
    "TOTALS",
    "WANTING",
    "Accrual",
    "Count",
    "Demand",
    "Instance",
    "NetworkTotals",
    "NodeIndex",
    "NodeLoad",
    "Placement",
    "Refill",
    "Search",
    "Wanting",
    "build_node_index",
    "compute_capacity",
    "compute_group",
    "compute_group_scores",
    "compute_node_score",
    "compute_shortfall_reason",
    "count_moved_by_update",
    "count_node",
    "count_underplaced",
    "endpoint_port_hosted",
    "get_accruals",
    "get_app_nodes",
    "get_apps_on_node",
    "get_load",
    "get_placement",
    "get_refill",
    "get_totals",
    "get_underplaced",
    "load_key",
    "mark_settled",
    "network_stats",
    "node_index",
    "on_node_active",
    "on_node_endpoint",
    "on_node_inactive",
    "place_new_app",
    "placement_key",
    "process_block",
    "remove_app",
    "replace_demand",
    "set_paid_until",
    "wanting_key",
]
