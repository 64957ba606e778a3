"""Network statistics: the counters over active nodes that the FluxCloud-style dashboard
shows (nodes per tier, cores, RAM, storage, countries, operators), kept as nodes join and
leave rather than counted by a scan.
"""

from __future__ import annotations

from typing import Any

from fluxchain.core.params import Tier
from fluxchain.core.placement.records import (
    COUNTRIES,
    OPERATORS,
    TOTALS,
    Count,
    NetworkTotals,
    NodeLoad,
    count_underplaced,
    get_totals,
)
from fluxchain.core.records import NODE, NodeStatus
from fluxchain.core.state import State


def _bump(state: State, key: bytes, delta: int) -> int:
    """Add `delta` to a reference count; return +1/-1 when it appears/disappears, else 0."""
    count: Count | None = state.get(key)
    before = 0 if count is None else count.value
    after = before + delta
    if after:
        state.put(key, Count(after))
    else:
        state.delete(key)
    return (after > 0) - (before > 0)


def count_node(state: State, load: NodeLoad, delta: int) -> None:
    totals = get_totals(state)
    tiers = list(totals.per_tier)
    tiers[int(load.tier) - 1] += delta
    state.put(
        TOTALS,
        NetworkTotals(
            totals.nodes + delta,
            (tiers[0], tiers[1], tiers[2]),
            totals.cores + delta * load.cores,
            totals.ram_mb + delta * load.ram_mb,
            totals.disk_gb + delta * load.disk_gb,
            totals.countries + _bump(state, COUNTRIES + load.country.encode(), delta),
            totals.operators + _bump(state, OPERATORS + load.owner, delta),
        ),
    )


def network_stats(state: State, by_status: dict[str, int] | None = None) -> dict[str, Any]:
    """The figures the FluxCloud dashboard shows, from maintained counters.

    `nodes_by_status` is the one figure counted by a scan of the node table (placement
    only hears of transitions into and out of CONFIRMED), unless the caller has it
    (`by_status`: the API counts it once per head, api/directory.py).
    """
    totals = get_totals(state)
    if by_status is None:
        by_status = dict.fromkeys((s.name.lower() for s in NodeStatus), 0)
        for _, node in state.items(NODE):
            by_status[node.status.name.lower()] += 1
    return {
        "active_nodes": totals.nodes,
        "nodes_by_tier": {t.name.lower(): totals.per_tier[int(t) - 1] for t in Tier},
        "nodes_by_status": by_status,
        "total_cores": totals.cores,
        "total_ram_mb": totals.ram_mb,
        "total_storage_gb": totals.disk_gb,
        "countries": totals.countries,
        "operators": totals.operators,
        "apps_underplaced": count_underplaced(state),
    }
