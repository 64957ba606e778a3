"""rev18f 1: the paid dry-run crashes when a pending block has put a node to work.

Attack: `check_paid` dry-runs on `state.committed_view()` with an overlay of the chain's
node index, which holds the writes of an executed but undecided block. When that block
puts a node to work (its NODE_CONFIRM, or the epoch start that gives a confirmed node
its rank key), the index lists a node whose load record the committed view lacks. An
app short of nodes with a geolocation rule naming that node's place makes
`compute_shortfall_reason` walk `index.pool(...)` into `_passes`, whose
`assert load is not None` fires: an AssertionError, not a TxError.

What a user sees: while such a block is pending (from proposal to commit, on every
node that executed it), an honest APP_REGISTER / APP_UPDATE with a geolocation rule gets
a 500 `internal` from POST /tx (a whole batch from POST /txs, its admitted txs
included); from gossip, the exception leaves `on_gossip`, and the network ends the
honest relaying peer's connection (`host_error`, docs/p2p.md), with the rest of that
frame's txs unadmitted and the tx neither parked nor handed back to the relay.

Fix direction: read the index and the records from one and the same state: build the
dry-run's index from the committed records only (an overlay that undoes the pending
block's index changes, e.g. from `state`'s pending NODE_LOAD keys: remove the pending
load, add the committed one), or make `_passes`/`Search` skip an indexed node that has
no load in the state they read instead of asserting.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import TxError
from fluxchain.core.nodes import get_node
from fluxchain.core.params import Tier
from fluxchain.core.placement import NODE_LOAD, node_index
from fluxchain.core.placement.ranking import NodeIndex, build_node_index
from fluxchain.core.records import node_by_key_key
from fluxchain.core.state import State
from fluxchain.core.tx import AppRegister, AppUpdate, Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import (
    Builder,
    app_register,
    app_spec,
    funded_key,
    geo_rules,
    history_genesis,
    node_confirm,
    open_chain,
    proposer_reveal,
)

NEW_COUNTRY, NEW_CONTINENT = "AU", "OC"  # no genesis node is there (EU, NA, AS)


@dataclass
class Pending:
    """A chain whose next block, executed and not decided, puts node `node_id` to work."""

    chain: Chain
    b: Builder
    node_id: bytes
    owner: SigningKey


def _keyed_new_node(tmp_path: Path) -> tuple[Chain, Builder, SigningKey, SigningKey, bytes]:
    """A history-genesis chain with app `web` (3 instances, no rule) and a registered node
    in Oceania that has its rank key but is not confirmed yet."""
    chain = open_chain(tmp_path / "home", history_genesis())
    b = Builder(chain)
    owner, hot = funded_key(), SigningKey(b"\x31" * 32)
    b.commit(
        [
            b.node_register(owner, hot, Tier.CUMULUS, country=NEW_COUNTRY, continent=NEW_CONTINENT),
            app_register(b, owner, app_spec(owner, "web", expire=200)),
        ]
    )
    node_id = chain.state.get(node_by_key_key(hot.public_key)).node_id
    while not get_node(chain.state, node_id).rank_key:  # type: ignore[union-attr]
        b.commit()
    return chain, b, owner, hot, node_id


def _execute_pending(b: Builder, txs: list[Tx]) -> None:
    """Build the next block from `txs` and leave its writes pending (a proposal executed,
    its votes not in yet)."""
    b.time_ms += 1_000
    _, _, rejected = b.chain.build_block(
        now_ms=b.time_ms,
        round_=0,
        last_commit=b.last_commit,
        candidates=txs,
        reveal=proposer_reveal(b.chain, 0, b.node_keys.values()),
    )
    assert not rejected


@pytest.fixture
def pending(tmp_path: Path) -> Iterator[Pending]:
    chain, b, owner, hot, node_id = _keyed_new_node(tmp_path)
    try:
        _execute_pending(b, [node_confirm(b, hot, node_id, Tier.CUMULUS)])
        assert chain.state.has_pending()
        assert node_id in node_index(chain.state).rank_of, "the pending block put it to work"
        assert chain.state.committed(NODE_LOAD + node_id) is None
        yield Pending(chain, b, node_id, owner)
    finally:
        chain.close()


def test_an_honest_geo_app_register_is_admitted_while_a_block_putting_a_node_to_work_is_pending(
    pending: Pending,
) -> None:
    """An APP_REGISTER allowed in Oceania only (short: no committed node is there) is
    valid; a node without the pending block admits it. Here `submit` raises
    AssertionError (a 500 from the API, a closed peer link from gossip)."""
    chain, b, owner = pending.chain, pending.b, pending.owner
    service = NodeService(chain)
    spec = app_spec(owner, "oceania", expire=200, geolocation=geo_rules(NEW_CONTINENT))
    register = Tx.create(owner, b.chain_id, b.chain_nonce(owner), 1_000, AppRegister(spec))
    admitted = service.submit(register.raw)
    assert admitted.id in service.mempool


@pytest.mark.parametrize("kind", ["register_allow", "register_deny", "update_allow"])
def test_paid_dry_runs_give_the_verdict_of_a_node_without_the_pending_block(
    tmp_path: Path, kind: str
) -> None:
    """Each dry-run, before the pending block and while it is pending, ends in the same
    verdict (applies, or the same TxError reason): never another exception."""
    chain, b, owner, hot, node_id = _keyed_new_node(tmp_path)
    try:
        nonce = b.chain_nonce(owner)
        if kind == "register_allow":
            spec = app_spec(owner, "geo", expire=200, geolocation=geo_rules(NEW_CONTINENT))
            tx = Tx.create(owner, b.chain_id, nonce, 1_000, AppRegister(spec))
        elif kind == "register_deny":
            # short for want of capacity: a whole node's cpu, and `web` uses 3 of 4
            rules = geo_rules(NEW_CONTINENT, allow=False)
            spec = app_spec(owner, "geo", expire=200, cpu=80, geolocation=rules)
            tx = Tx.create(owner, b.chain_id, nonce, 1_000, AppRegister(spec))
        else:
            web = app_spec(owner, "web", expire=200)
            spec = replace(web, geolocation=geo_rules(NEW_CONTINENT))
            tx = Tx.create(owner, b.chain_id, nonce, 10**9, AppUpdate(spec))
        before = _verdict(chain, tx)
        _execute_pending(b, [node_confirm(b, hot, node_id, Tier.CUMULUS)])
        assert node_id in node_index(chain.state).rank_of
        assert _verdict(chain, tx) == before
    finally:
        chain.close()


def _verdict(chain: Chain, tx: Tx) -> str:
    """The paid dry-run's verdict as a node reaches it (`TxAdmission.check_paid`: the
    committed records' node index, built once a height while a block is pending)."""
    try:
        TxAdmission(chain).check_paid(tx)
    except TxError as refused:
        return str(refused.reason)
    return "applies"


def test_while_a_block_is_pending_the_committed_index_is_built_once_a_height(
    pending: Pending, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fix's cost: with a block's writes pending, dry-runs read an index of the
    committed records built once for the height, not one build a tx (rev18e 2)."""
    builds: list[int] = []

    def counting(state: State) -> NodeIndex:
        builds.append(1)
        return build_node_index(state)

    monkeypatch.setattr("fluxchain.core.admission.build_node_index", counting)
    chain, b, owner = pending.chain, pending.b, pending.owner
    admission = NodeService(chain).admission
    for i in range(5):
        spec = app_spec(owner, f"geo{i}", expire=200, geolocation=geo_rules(NEW_CONTINENT))
        admission.check_paid(
            Tx.create(owner, b.chain_id, b.chain_nonce(owner), 1_000, AppRegister(spec))
        )
    assert len(builds) == 1, f"{len(builds)} builds of the node index for 5 dry-runs"
