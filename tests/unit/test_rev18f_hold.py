"""rev18f: attacks on the paid dry-run's node-index overlay that held.

2. No dry-run changes the chain's own index: every paid kind that touches placement
   (register, update that moves instances, extend, cancel, a relocation and an
   unregister of a hosting node, whose load deletions make the overlay copy), run while
   a pending block has changed the index, leaves it equal to what it was and to a fresh
   build from the chain's state, pending writes included.
3. Without a geolocation rule (rev18f 1 is the case with one), each of those kinds gets
   the same verdict while that block is pending as before it: the pending block's
   extra node changes which nodes the dry-run's placement looks at, never whether the
   tx applies (a pin naming the joining node is refused on the committed records, as
   on a node without the pending block).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.params import Tier
from fluxchain.core.placement import NODE_LOAD, NodeLoad, build_node_index, get_load, node_index
from fluxchain.core.records import Node, node_key
from fluxchain.core.tx import AppCancel, AppExtend, AppRegister, AppUpdate, NodeUnregister, Tx
from fluxchain.store.chain import Chain
from tests.support.chain import app_spec, node_confirm, node_update, owner_key
from tests.unit.test_rev18f_pending_node import _execute_pending, _keyed_new_node, _verdict


def _hosting_node(chain: Chain) -> tuple[Node, int]:
    """A genesis node that hosts an instance of `web`, and the index of its owner's key."""
    for _, load in chain.state.items(NODE_LOAD):
        if load.hosted:
            node: Node = chain.state.get(node_key(load.node_id))
            owner = next(i for i in range(4) if address_of(owner_key(i).public_key) == node.owner)
            return node, owner
    raise AssertionError("web is placed")


def _free_node(chain: Chain) -> bytes:
    """A genesis node that hosts nothing."""
    loads: list[NodeLoad] = [load for _, load in chain.state.items(NODE_LOAD)]
    return next(load.node_id for load in loads if not load.hosted)


def test_dry_runs_leave_the_chains_index_alone_and_keep_their_verdict_while_a_node_joins(
    tmp_path: Path,
) -> None:
    chain, b, owner, hot, node_id = _keyed_new_node(tmp_path)
    try:
        nonce, chain_id = b.chain_nonce(owner), b.chain_id
        web = app_spec(owner, "web", expire=200)
        host, host_owner = _hosting_node(chain)
        host_key = owner_key(host_owner)
        probes = {
            "register": Tx.create(
                owner, chain_id, nonce, 1_000, AppRegister(app_spec(owner, "other", expire=200))
            ),
            # one more instance: placed on a node the committed view holds
            "update": Tx.create(
                owner, chain_id, nonce, 10**9, AppUpdate(replace(web, instances=4))
            ),
            # pinned to the joining node too: refused on the committed records alone, the
            # pending block's index entry for it notwithstanding
            "update_pinned": Tx.create(
                owner,
                chain_id,
                nonce,
                10**9,
                AppUpdate(replace(web, pinned_nodes=(host.node_id, _free_node(chain), node_id))),
            ),
            "extend": Tx.create(owner, chain_id, nonce, 1_000, AppExtend("web", 50)),
            "cancel": Tx.create(owner, chain_id, nonce, 1_000, AppCancel("web")),
            "relocate": node_update(
                b, host_key, host.node_id, "BR", "SA", endpoint=host.endpoint, fee=10**9
            ),
            "unregister": Tx.create(
                host_key, chain_id, b.chain_nonce(host_key), 1_000, NodeUnregister(host.node_id)
            ),
        }
        before = {name: _verdict(chain, tx) for name, tx in probes.items()}
        assert before.pop("update_pinned") == "pinned_node_not_eligible"
        assert set(before.values()) == {"applies"}, before
        before["update_pinned"] = "pinned_node_not_eligible"
        assert get_load(chain.state, host.node_id) is not None

        _execute_pending(b, [node_confirm(b, hot, node_id, Tier.CUMULUS)])
        index = node_index(chain.state)
        assert node_id in index.rank_of and chain.state.has_pending()
        contents = index.contents()
        during = {name: _verdict(chain, tx) for name, tx in probes.items()}
        assert during == before
        assert node_index(chain.state) is index
        assert index.contents() == contents == build_node_index(chain.state).contents()
    finally:
        chain.close()
