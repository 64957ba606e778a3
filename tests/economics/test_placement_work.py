"""Issue 26 review: placement work that no charge follows.

A placement search visits the best group of nodes for the app (1/256 of the active nodes)
and stops as soon as it has found enough that fit. An app that fits nowhere (a valid spec
asking more RAM than any node offers) makes the search visit every group: every active
node is examined (a rank hash and a load record each), for the flat `app_charge`. At
100,000 active nodes one such APP_REGISTER took 0.29 s (2,000,000 nodes examined for 20),
so a block of 8,000 of them (80 FLUX of charges; the escrow comes back as idle refunds) is
~39 minutes of execution on every node; a placeable app's register examined 3 nodes. The
refill then searches again, every node each time, for 20 of them in every block where
capacity appeared (6.2 s a block at 100,000 nodes).

The spy below only counts the calls of `Search.eligible` (one per node examined); it
changes no result.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fluxchain.core import apps, placement
from fluxchain.core.tx import AppRegister
from tests.support.state import StateRunner, component, key_of, spec

NODES = 4_000
# A search should look at about one group (NODES / GROUPS nodes) and a few more when the
# best group is short; a generous bound that does not grow to the whole network.
BOUND = 8 * (NODES // placement.GROUPS + 1)


@pytest.fixture
def examined(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A one-item list counting the nodes placement examines (calls of `eligible`)."""
    count = [0]
    eligible = placement.Search.eligible

    def counting(self: placement.Search, node_id: bytes) -> placement.NodeLoad | None:
        count[0] += 1
        return eligible(self, node_id)

    monkeypatch.setattr(placement.Search, "eligible", counting)
    yield count


def _network() -> tuple[StateRunner, bytes]:
    chain = StateRunner()
    for i in range(NODES):
        chain.add_node(i)
    chain.end_block()
    return chain, chain.fund(key_of(1))


def _register_unplaceable(chain: StateRunner, owner: bytes, name: str) -> None:
    # 50,000 MB: a valid spec (at most 59,000) that no Cumulus node (8,000 MB) can hold
    big = spec(owner, name, components=(component(ram_mb=50_000),))
    chain.apply(apps.process_app_register, chain.tx(key_of(1), AppRegister(big), fee=1_000))
    assert placement.get_placement(chain.state, name).reason == "capacity"  # type: ignore[union-attr]


def test_registering_an_app_that_fits_nowhere_examines_every_active_node(
    examined: list[int],
) -> None:
    """One APP_REGISTER of an app no node can hold examines all 4,000 active nodes for the
    flat app charge; a placeable app's register examines a handful."""
    chain, owner = _network()
    examined[0] = 0
    _register_unplaceable(chain, owner, "huge")
    assert examined[0] <= BOUND, (
        f"one register examined {examined[0]} of {NODES} nodes for the flat app charge "
        f"(a bounded search looks at about {NODES // placement.GROUPS})"
    )


def test_unplaceable_apps_make_every_refill_examine_every_active_node(
    examined: list[int],
) -> None:
    """20 apps that fit nowhere (0.2 FLUX of charges) sit in the refill queue; each block in
    which any capacity appears (here one node joining) retries all 20, each a search of
    every active node: 20 x 4,000 nodes examined in the end-of-block work."""
    chain, owner = _network()
    for j in range(chain.params.app_refills_per_block):
        _register_unplaceable(chain, owner, f"huge{j}")
    chain.end_block()
    chain.add_node(NODES + 1)  # capacity appears
    examined[0] = 0
    placement.process_block(chain.ctx)
    bound = chain.params.app_refills_per_block * BOUND
    assert examined[0] <= bound, (
        f"one block's refill examined {examined[0]} nodes ({NODES} active), "
        f"above {bound}: the work is per active node, not per app retried"
    )
