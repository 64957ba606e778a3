"""rev24api: the head index is rebuilt from a walk of the whole node table at every
block, though the block changed no node, and one read a block (one token of a group's
50 a second) buys that walk.

Attack: one client asks `/search?q=ENDPOINT` (or `/nodes?country=`, `/network/tiers`)
once after each block. The index (api/directory.py) is keyed by the head, so each of
those first requests walks and decodes the node table again and rebuilds the part it
needs: docs/performance.md "API reads over the node table" measured that first request
at 72-553 ms with 10,000 nodes, more than main's 9-371 ms for the same request walking
the table, while the read budget charges it as one cheap read (api/budget.py: only
history is weighted). A few groups within their budgets keep a large share of every
block's loop time (the loop consensus runs on), as before the change.

Every block pays some nodes (their `paid_total`, `queue_ticket` change), so every block
writes node records; none of those writes changes what the index answers from (a node's
tier, status, country, endpoint, and its load for /network/tiers).

Now: after each such block the next read walks the whole node table again. Should: the
index follows the writes to the node table (as the node's own derived indexes do,
through the State's watchers) and updates the entries of the nodes written, so reads at
heads that changed no indexed field walk nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fluxchain.core.records import NODE, Node
from fluxchain.core.state import State
from tests.api.test_api import api, commit

BLOCKS = 5


def indexed(nodes: list[tuple[bytes, Node]]) -> list[tuple[Any, ...]]:
    """What the index answers from: each node's tier, status, country and endpoint."""
    return [(n.node_id, n.tier, n.status, n.country, n.endpoint) for _, n in nodes]


def test_rev24api_reads_after_blocks_that_change_no_node_walk_the_node_table_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks: list[int] = []
    reading = [False]  # count the walks made while a read is answered, not a block's
    items = State.items

    def counted(self: State, prefix: bytes) -> Any:
        if prefix == NODE and reading[0]:
            walks.append(1)
        return items(self, prefix)

    async def read(client: Any) -> None:
        reading[0] = True
        try:
            assert (await client.get("/search?q=a:1")).status == 200
        finally:
            reading[0] = False

    async def run() -> None:
        async with api(tmp_path) as (client, service, builder):
            commit(service, builder)
            before = list(items(service.chain.state.committed_view(), NODE))
            monkeypatch.setattr(State, "items", counted)
            await read(client)  # builds the index
            walks.clear()
            for _ in range(BLOCKS):
                commit(service, builder)  # no tx: payouts only
                await read(client)
            monkeypatch.setattr(State, "items", items)
            after = list(items(service.chain.state.committed_view(), NODE))
            assert indexed(after) == indexed(before), "a block changed what the index reads"
            assert walks == [], (
                f"{len(walks)} walks of the whole node table for one read after each of "
                f"{BLOCKS} blocks that changed no node's tier, status, country or endpoint"
            )

    asyncio.run(run())
