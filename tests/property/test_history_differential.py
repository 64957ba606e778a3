"""Every honest node computes the same chain, whatever its own history (issue 18).

A hypothesis state machine writes random multi-block histories over every tx kind: node
registrations, relocations, key rotations, confirms, uptime attestations (nodes go down
and come back by confirming), unregistrations and unbonding, app register / update /
extend / cancel and expiry (with domains that apps contend for), evidence and slashing.
Three nodes execute each history:

(a) `main`, one long-lived chain that proposes every block (build, abort, import: the
    proposer's path, where a failing tx's writes are reverted);
(b) a node that imports (a)'s blocks from genesis and is closed and reopened from its
    LevelDB home at random heights (a restart);
(c) a fresh node that imports all of (a)'s blocks from genesis without a stop (a sync).

(b) and (c) run after (a) has finished, one after the other, so that each process-long
history is as long as (a)'s: a cache shared by the three would otherwise be rebuilt at
every switch between them and hide the very bug this test is for.

At every height the three hold the same header (so the same state root and events root),
the same events and the same placement; the placement node index, which each state keeps
in memory, equals a fresh build from that state. A failure prints the shrunk history
(hypothesis's shortest failing sequence of steps) and the blob to reproduce it.

`make test` runs a few short histories; `make soak` runs tests/property/soak_history.py:
at least 10,000 blocks, with the hypothesis seed it prints.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, Final

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from fluxchain.core import placement
from fluxchain.core.apps import get_app
from fluxchain.core.appspec import Port
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.encoding import pack
from fluxchain.core.params import Tier
from fluxchain.core.records import META, NODE, Node, NodeStatus
from fluxchain.core.state import State
from fluxchain.core.tx import Tx
from fluxchain.core.uptime import targets_of
from fluxchain.store.chain import Chain
from tests.support.chain import (
    VALIDATORS,
    Builder,
    app_cancel,
    app_extend,
    app_register,
    app_spec,
    app_update,
    evidence,
    geo_rules,
    history_genesis,
    node_confirm,
    node_hot_key,
    node_register,
    node_unregister,
    node_update,
    open_chain,
    owner_key,
    uptime_attest,
)

PLACES = [("DE", "EU"), ("FR", "EU"), ("US", "NA"), ("JP", "AS")]
GEO_CHOICES: list[tuple[Any, ...]] = [
    (),
    geo_rules("EU"),
    geo_rules("NA", allow=False),
    geo_rules("EU_DE"),
    geo_rules("EU") + geo_rules("EU_FR", allow=False),
]
APP_NAMES = [f"app{i}" for i in range(6)]
# apps of a history contend for two domains: claims, domain_taken, releases by update,
# cancel and expiry all happen (drawn from the spec's other choices, so the rules keep their
# arguments)
DOMAIN_CHOICES: list[tuple[str, ...]] = [(), ("a.example.com",), ("b.example.com",), ()]
OWNERS = [owner_key(i) for i in range(VALIDATORS + 4)]  # validators' owners, then dev accounts
APP_OWNERS = OWNERS[VALIDATORS:]
KEEP_ALIVE = (0, 1)  # genesis validators that always confirm in time, so the chain never halts
BLOCKS_RUN = [0]  # blocks committed by the histories of this process (the soak counts them)


@dataclass(frozen=True)
class Height:
    """What (a) held after one block: the fresh node (c) must hold the same."""

    header_hash: bytes
    events: list[Any]
    placement: bytes


def placement_digest(state: State) -> bytes:
    """Every placement record (where apps run, what nodes host, who is short), hashed."""
    digest = sha256()
    for prefix in (placement.PLACEMENT, placement.NODE_LOAD, placement.WANTING):
        for key, record in state.items(prefix):
            digest.update(pack([key, record.to_fields()]))
    return digest.digest()


def assert_index_is_fresh(state: State) -> None:
    fresh = placement.build_node_index(state).contents()
    assert placement.node_index(state).contents() == fresh, "node index differs from a rebuild"


class History(RuleBasedStateMachine):
    """One random history, executed by (a), (b) and (c) (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="fluxchain-history-"))
        self.genesis = history_genesis()
        self.main = Builder(open_chain(self.home / "a", self.genesis))
        self.restarts: set[int] = set()
        self.pending: list[Tx] = []
        self.hot: dict[bytes, SigningKey] = {
            node_hot_key(i).public_key: node_hot_key(i) for i in range(VALIDATORS)
        }
        self.owners = {address_of(k.public_key): k for k in OWNERS}
        self.new_keys = 0
        self.heights: dict[int, Height] = {}
        keep_keys = {node_hot_key(i).public_key for i in KEEP_ALIVE}
        self.keep_alive = {n.node_id for n in self.nodes() if n.node_key in keep_keys}

    # -- picking from committed state ------------------------------------------------------

    @property
    def state(self) -> State:
        return self.main.chain.state

    def nodes(self) -> list[Node]:
        return [node for _, node in self.state.items(NODE)]

    def pick_node(self, i: int) -> Node | None:
        nodes = self.nodes()
        return nodes[i % len(nodes)] if nodes else None

    def fresh_key(self) -> SigningKey:
        self.new_keys += 1
        return SigningKey(sha256(b"history-node-key" + self.new_keys.to_bytes(4, "big")).digest())

    def add(self, tx: Tx) -> None:
        self.pending.append(tx)

    def then(self, more: bool) -> None:
        """After an action: commit the pending txs in a block now, or gather `more`."""
        if not more:
            self.commit_blocks(1)

    # -- nodes ---------------------------------------------------------------------------

    @rule(
        more=st.booleans(),
        owner=st.integers(0, 3),
        tier=st.sampled_from(list(Tier)),
        place=st.integers(0, 3),
    )
    def register_node(self, more: bool, owner: int, tier: Tier, place: int) -> None:
        hot = self.fresh_key()
        self.hot[hot.public_key] = hot
        country, continent = PLACES[place]
        self.add(node_register(self.main, APP_OWNERS[owner], hot, tier, country, continent))
        self.then(more)

    @rule(more=st.booleans(), node=st.integers(0, 99), place=st.integers(0, 3))
    def relocate_node(self, more: bool, node: int, place: int) -> None:
        target = self.pick_node(node)
        if target is not None:
            country, continent = PLACES[place]
            owner = self.owners[target.owner]
            self.add(node_update(self.main, owner, target.node_id, country, continent))
        self.then(more)

    @rule(more=st.booleans(), node=st.integers(0, 99))
    def rotate_node_key(self, more: bool, node: int) -> None:
        target = self.pick_node(node)
        if target is not None:
            new_key = self.fresh_key()
            self.hot[new_key.public_key] = new_key
            owner = self.owners[target.owner]
            self.add(
                node_update(
                    self.main, owner, target.node_id, target.country, target.continent, new_key
                )
            )
        self.then(more)

    @rule(more=st.booleans(), node=st.integers(0, 99))
    def confirm_node(self, more: bool, node: int) -> None:
        target = self.pick_node(node)
        if target is not None:
            hot = self.hot[target.node_key]
            self.add(node_confirm(self.main, hot, target.node_id, target.tier))
        self.then(more)

    @rule(more=st.booleans(), checker=st.integers(0, 99), downs=st.integers(0, 7))
    def attest(self, more: bool, checker: int, downs: int) -> None:
        """A checker reports on its targets this epoch; bit i of `downs` = target i down."""
        node = self.pick_node(checker)
        if node is None:
            return
        targets = targets_of(self.state, node.node_id, self.main.chain.params.checkers_per_node)
        if not targets:
            return
        verdicts = {t: not (downs >> i & 1) for i, t in enumerate(targets)}
        epoch = self.state.get(META).epoch
        self.add(uptime_attest(self.main, self.hot[node.node_key], node.node_id, epoch, verdicts))
        self.then(more)

    @rule(more=st.booleans(), node=st.integers(0, 99))
    def knock_down(self, more: bool, node: int) -> None:
        """Every checker of a node reports it down this epoch: a quorum marks it DOWN (it
        comes back by confirming)."""
        target = self.pick_node(node)
        if target is not None:
            k = self.main.chain.params.checkers_per_node
            epoch = self.state.get(META).epoch
            for checker in self.nodes():
                if target.node_id in targets_of(self.state, checker.node_id, k):
                    hot = self.hot[checker.node_key]
                    # an attestation covers every target: the others up
                    mine = targets_of(self.state, checker.node_id, k)
                    verdict = dict.fromkeys(mine, True) | {target.node_id: False}
                    self.add(uptime_attest(self.main, hot, checker.node_id, epoch, verdict))
        self.then(more)

    @rule(more=st.booleans(), node=st.integers(0, 99))
    def unregister_node(self, more: bool, node: int) -> None:
        target = self.pick_node(node)
        if target is not None and target.node_id not in self.keep_alive:
            self.add(node_unregister(self.main, self.owners[target.owner], target.node_id))
        self.then(more)

    @rule(more=st.booleans(), offender=st.integers(0, 99), height=st.integers(1, 10_000))
    def report_equivocation(self, more: bool, offender: int, height: int) -> None:
        """Evidence against any node but the keep-alive validators (slash and jail)."""
        target = self.pick_node(offender)
        chain_height = self.main.chain.height
        if target is None or chain_height < 2:
            return
        if target.node_id in self.keep_alive:
            return
        at = 1 + height % (chain_height - 1)
        self.add(evidence(self.main, OWNERS[VALIDATORS], self.hot[target.node_key], at))
        self.then(more)

    # -- apps ----------------------------------------------------------------------------

    @rule(
        more=st.booleans(),
        name=st.integers(0, len(APP_NAMES) - 1),
        owner=st.integers(0, 3),
        instances=st.integers(3, 5),
        where=st.integers(0, len(GEO_CHOICES) - 1),
        tier=st.sampled_from(list(Tier)),
        size=st.integers(1, 40),
        expire=st.integers(8, 30),
    )
    def register_app(
        self,
        more: bool,
        name: int,
        owner: int,
        instances: int,
        where: int,
        tier: Tier,
        size: int,
        expire: int,
    ) -> None:
        free = [i for i in range(len(APP_NAMES)) if self._app_owner(i) is None]
        if free:  # a free name when there is one (else the tx fails: APP_EXISTS)
            name = free[name % len(free)]
        spec = self._spec(name, owner, instances, where, tier, size, expire)
        self.add(app_register(self.main, APP_OWNERS[owner], spec))
        self.then(more)

    @rule(
        more=st.booleans(),
        name=st.integers(0, len(APP_NAMES) - 1),
        instances=st.integers(3, 5),
        where=st.integers(0, len(GEO_CHOICES) - 1),
        tier=st.sampled_from(list(Tier)),
        size=st.integers(1, 40),
        expire=st.integers(8, 30),
    )
    def update_app(
        self, more: bool, name: int, instances: int, where: int, tier: Tier, size: int, expire: int
    ) -> None:
        name = self._registered(name)
        owner = self._app_owner(name)
        if owner is not None:
            spec = self._spec(name, owner, instances, where, tier, size, expire)
            self.add(app_update(self.main, APP_OWNERS[owner], spec))
        self.then(more)

    @rule(more=st.booleans(), name=st.integers(0, len(APP_NAMES) - 1), blocks=st.integers(1, 20))
    def extend_app(self, more: bool, name: int, blocks: int) -> None:
        name = self._registered(name)
        owner = self._app_owner(name)
        if owner is not None:
            self.add(app_extend(self.main, APP_OWNERS[owner], APP_NAMES[name], blocks))
        self.then(more)

    @rule(more=st.booleans(), name=st.integers(0, len(APP_NAMES) - 1))
    def cancel_app(self, more: bool, name: int) -> None:
        name = self._registered(name)
        owner = self._app_owner(name)
        if owner is not None:
            self.add(app_cancel(self.main, APP_OWNERS[owner], APP_NAMES[name]))
        self.then(more)

    def _spec(
        self, name: int, owner: int, instances: int, where: int, tier: Tier, size: int, expire: int
    ) -> Any:
        # `size` tenths of a core and 800 MB per tenth: big ones only fit Nimbus and up
        return app_spec(
            APP_OWNERS[owner],
            APP_NAMES[name],
            instances=instances,
            geolocation=GEO_CHOICES[where],
            min_tier=tier,
            cpu=size,
            ram_mb=800 * size,
            disk_gb=size,
            ports=(Port(31000 + name, 80, domains=DOMAIN_CHOICES[(size + expire) % 4]),),
            expire=expire,
        )

    def _app_owner(self, name: int) -> int | None:
        """The owner (index in APP_OWNERS) of app `name`, None if it is not registered."""
        app = get_app(self.state, APP_NAMES[name])
        if app is None:
            return None
        owners = [address_of(key.public_key) for key in APP_OWNERS]
        return owners.index(app.spec.owner)

    def _registered(self, name: int) -> int:
        """A registered app, chosen by `name` among those that are (`name` if none is)."""
        registered = [i for i in range(len(APP_NAMES)) if self._app_owner(i) is not None]
        return registered[name % len(registered)] if registered else name

    # -- blocks and restarts -------------------------------------------------------------

    @rule(blocks=st.integers(1, 6))
    def commit_blocks(self, blocks: int) -> None:
        """The pending txs go into the next block, then `blocks - 1` blocks follow with only
        the keep-alive confirms."""
        for _ in range(blocks):
            self._commit(self.pending + self._keep_alive())
            self.pending = []

    @rule()
    def restart_b(self) -> None:
        """(b) will stop and start again from its LevelDB home after this height."""
        self.restarts.add(self.main.chain.height)

    def _keep_alive(self) -> list[Tx]:
        """Confirms of the keep-alive validators that are due (what their agents send)."""
        chain = self.main.chain
        window = chain.params.confirm_window
        next_height = chain.height + 1
        out = []
        for node in self.nodes():
            if node.node_id not in self.keep_alive or node.status is NodeStatus.UNBONDING:
                continue
            due = node.status is not NodeStatus.CONFIRMED or (
                node.last_confirm_height // window < next_height // window
            )
            if due:
                hot = self.hot[node.node_key]
                out.append(node_confirm(self.main, hot, node.node_id, node.tier))
        return out

    def _commit(self, txs: list[Tx]) -> None:
        main = self.main
        block = main.commit(txs)
        main.nonces.clear()  # dropped txs leave gaps: start again from the chain's nonces
        BLOCKS_RUN[0] += 1
        events = [e.to_fields() for e in main.chain.events(block.height)]
        self.heights[block.height] = Height(
            block.hash(), events, placement_digest(main.chain.state)
        )
        assert_index_is_fresh(main.chain.state)

    def teardown(self) -> None:
        """(b) and (c) replay (a)'s blocks, one after the other: each node's process then
        has a long history of its own, as (a)'s had (a cache that outlived a state change
        would show here)."""
        try:
            if self.heights:
                self.replay("b", self.restarts)
                self.replay("c", set())
        finally:
            self.main.chain.close()
            shutil.rmtree(self.home, ignore_errors=True)

    def replay(self, name: str, restarts: set[int]) -> None:
        """A node that imports (a)'s blocks from genesis, restarting after the heights in
        `restarts`, must hold what (a) held at every height."""
        node = open_chain(self.home / name, self.genesis)
        try:
            for height in range(1, self.main.chain.height + 1):
                block = self.main.chain.get_block(height)
                commit = self.main.chain.get_commit(height)
                assert commit is not None
                node.import_block(block, commit)
                expected = self.heights[height]
                assert node.head_hash == expected.header_hash, f"{name}: header at {height}"
                events = [e.to_fields() for e in node.events(height)]
                assert events == expected.events, f"{name}: events at {height}"
                placed = placement_digest(node.state)
                assert placed == expected.placement, f"{name}: placement at {height}"
                assert_index_is_fresh(node.state)
                if height in restarts:
                    node.close()
                    node = Chain.open(self.home / name, self.genesis)
                    assert node.head_hash == expected.header_hash
                    assert node.head is not None and node.tree.root == node.head.state_root
                    assert_index_is_fresh(node.state)
        finally:
            node.close()


SETTINGS: Final[dict[str, Any]] = {
    "deadline": None,
    "print_blob": True,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}

TestHistory = History.TestCase
TestHistory.settings = settings(max_examples=6, stateful_step_count=40, **SETTINGS)
