"""The state-level kit for rule tests (apps, placement, costs): params, nodes put straight
into a State, signed app txs, invariant checks, and `StateRunner`, which runs the
end-of-block hooks over a bare State. No block is built, signed or stored: for those,
use the chain builder (tests/support/chain.py)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from fluxchain.core import apps, placement, vrf
from fluxchain.core.accounts import credit, get_account
from fluxchain.core.appspec import AppSpec, Component, GeoRule, Port
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.nodes import compute_rank_key, new_node
from fluxchain.core.params import COIN, Params, Tier
from fluxchain.core.records import Node, NodeStatus, node_key
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.tx import AppSecrets, Benchmark, Hardware, Payload, Tx, secrets_fee
from fluxchain.genesis_builder import mainnet_params

CHAIN = "apps-test"


def make_params(**changes: Any) -> Params:
    """Mainnet-shaped economics (Flux's published prices), with a short minimum expiry."""
    params = replace(mainnet_params(CHAIN, "tflux"), block_time_ms=1_000, app_min_expire=100)
    return replace(params, **changes)


TIER_BENCH = {
    Tier.CUMULUS: (4, 8_000, 220),
    Tier.NIMBUS: (8, 32_000, 440),
    Tier.STRATUS: (16, 64_000, 880),
}


def node_id_of(i: int) -> bytes:
    return hashlib.sha256(b"node" + i.to_bytes(4, "big")).digest()[:20]


def make_node(
    i: int,
    tier: Tier = Tier.CUMULUS,
    country: str = "DE",
    continent: str = "EU",
    status: NodeStatus = NodeStatus.CONFIRMED,
    owner: bytes | None = None,
    bench: tuple[int, int, int] | None = None,
) -> Node:
    cores, ram, disk = bench or TIER_BENCH[tier]
    nid = node_id_of(i)
    return new_node(
        node_id=nid,
        owner=owner or hashlib.sha256(b"owner" + nid).digest()[:20],
        node_key=b"\x02" + hashlib.sha256(b"key" + nid).digest(),
        vrf_key=vrf.derive_secret(hashlib.sha256(b"vrf" + nid).digest()).public_key,
        tier=tier,
        endpoint="127.0.0.1:1",
        country=country,
        continent=continent,
        hardware=Hardware(cores, ram, disk),
        collateral=1_000 * COIN,
        height=0,
        status=status,
        benchmark=Benchmark(cores, cores * 2, ram, disk, 200, 1_000, 100),
        version="test",
        last_confirm_height=1,
        rank_key=compute_rank_key(b"test-mix", nid),
    )


class StateRunner:
    """A state, params and a height; helpers to act on it as blocks would.

    Named apart from the store's `Chain`: it has no blocks, only the state they change."""

    def __init__(self, params: Params | None = None, state: State | None = None) -> None:
        self.params = params or make_params()
        self.state = state or new_state()
        self.height = 1
        self.history: list[Any] = []  # events of finished blocks
        self.burned = 0  # burnt by finished blocks (app charges, re-placement charges)
        self.ctx = self.new_ctx()

    def new_ctx(self) -> BlockContext:
        self.ctx = BlockContext(self.state, self.params, self.height, b"\x02" * 33, b"\x00" * 32)
        return self.ctx

    def add_node(self, i: int, **kwargs: Any) -> Node:
        node = make_node(i, **kwargs)
        self.state.put(node_key(node.node_id), node)
        if node.status is NodeStatus.CONFIRMED:
            placement.on_node_active(self.ctx, node.node_id)
        return node

    def set_status(self, node_id: bytes, status: NodeStatus, reason: str = "down") -> None:
        node: Node = self.state.get(node_key(node_id))
        was = node.status
        self.state.put(node_key(node_id), replace(node, status=status))
        if was is NodeStatus.CONFIRMED and status is not NodeStatus.CONFIRMED:
            placement.on_node_inactive(self.ctx, node_id, reason)
        elif was is not NodeStatus.CONFIRMED and status is NodeStatus.CONFIRMED:
            placement.on_node_active(self.ctx, node_id)

    def refill(self) -> None:
        """Run the end-of-block refill of under-placed apps now, in this block (capacity
        that appeared is offered there, a bounded number of apps per block)."""
        placement.process_block(self.ctx)

    def end_block(self) -> None:
        """Run end-of-block app work, commit, and move to the next height."""
        apps.process_block(self.ctx)
        self.history.extend(self.ctx.events)
        self.burned += self.ctx.burned
        self.state.commit()
        self.height += 1
        self.new_ctx()

    def advance_to(self, height: int) -> None:
        while self.height < height:
            self.end_block()

    def fund(self, key: SigningKey, amount: int = 1_000_000 * COIN) -> bytes:
        address = address_of(key.public_key)
        credit(self.state, address, amount)
        return address

    def tx(self, key: SigningKey, payload: Payload, fee: int = 0) -> Tx:
        nonce = get_account(self.state, address_of(key.public_key)).nonce
        return Tx.create(key, CHAIN, nonce, fee, payload)

    def secrets_tx(self, key: SigningKey, payload: AppSecrets) -> Tx:
        """An APP_SECRETS paying the fee its stateless check asks: min_fee plus the byte
        charge of its ciphertexts (the handler burns that charge out of the fee)."""
        stored = sum(len(secret.ciphertext) for secret in payload.secrets)
        return self.tx(key, payload, self.params.min_fee + secrets_fee(stored, self.params))

    def apply(self, handler: Any, tx: Tx) -> None:
        """Run a handler the way execute does: a TxError leaves nothing behind."""
        mark, n_events = self.state.snapshot(), len(self.ctx.events)
        fees, burned = self.ctx.fees, self.ctx.burned
        try:
            handler(self.ctx, tx)
        except Exception:
            self.state.revert(mark)
            del self.ctx.events[n_events:]
            self.ctx.fees, self.ctx.burned = fees, burned
            raise

    def events(self, kind: Any = None) -> list[Any]:
        """Events of the current block."""
        return [e for e in self.ctx.events if kind is None or e.kind is kind]

    def all_events(self, kind: Any = None) -> list[Any]:
        """Events of every block so far, the current one included."""
        return [e for e in self.history + self.ctx.events if kind is None or e.kind is kind]


def key_of(i: int) -> SigningKey:
    return SigningKey(hashlib.sha256(b"app-key" + i.to_bytes(4, "big")).digest())


def component(**changes: Any) -> Component:
    """A one-port web component; `changes` override its fields, and `ports` may name host
    ports as numbers (tcp, to container port 80) besides `Port` records."""
    if "ports" in changes:
        changes["ports"] = tuple(
            p if isinstance(p, Port) else Port(p, 80) for p in changes["ports"]
        )
    base = Component(
        name="web",
        description="front end",
        image="nginx:1.27",
        ports=(Port(31000, 80),),
        environment=("MODE=prod",),
        command=(),
        data_path="/data",
        cpu=5,
        ram_mb=500,
        disk_gb=5,
    )
    return replace(base, **changes)


def spec(owner: bytes, name: str = "myapp", **changes: Any) -> AppSpec:
    base = AppSpec(
        name=name,
        description="an app",
        owner=owner,
        contacts=("ops@example.com",),
        components=(component(),),
        instances=3,
        expire=1_000,
        geolocation=(),
    )
    return replace(base, **changes)


def geo(*codes: str, allow: bool = True) -> tuple[GeoRule, ...]:
    out = []
    for code in codes:
        continent, _, country = code.partition("_")
        out.append(GeoRule(allow, continent, country))
    return tuple(out)


def check_invariants(state: State) -> None:
    """Loads match placements exactly; no node over capacity; only active nodes host."""
    used: dict[bytes, list[int]] = {}
    hosted: dict[bytes, set[tuple[str, int]]] = {}
    for _, p in state.items(placement.PLACEMENT):
        assert len(p.instances) <= p.wanted
        assert len({i.node_id for i in p.instances}) == len(p.instances), "two on one node"
        assert (p.reason == "") == (len(p.instances) == p.wanted)
        assert (p.name in placement.get_underplaced(state)) == bool(p.reason)
        for inst in p.instances:
            load = placement.get_load(state, inst.node_id)
            assert load is not None, "instance on an inactive node"
            node = state.get(node_key(inst.node_id))
            assert node.status is NodeStatus.CONFIRMED
            assert load.tier >= p.demand.min_tier
            assert p.demand.location_allowed(load.continent, load.country)
            acc = used.setdefault(inst.node_id, [0, 0, 0])
            acc[0] += p.demand.cpu
            acc[1] += p.demand.ram_mb
            acc[2] += p.demand.disk_gb
            hosted.setdefault(inst.node_id, set()).add((p.name, inst.index))
    for key, load in state.items(placement.NODE_LOAD):
        u = used.get(key[1:], [0, 0, 0])
        assert [load.used_cpu, load.used_ram_mb, load.used_disk_gb] == u
        assert load.used_cpu <= load.cap_cpu
        assert load.used_ram_mb <= load.cap_ram_mb
        assert load.used_disk_gb <= load.cap_disk_gb
        assert set(load.hosted) == hosted.get(key[1:], set())
        assert len(set(load.ports)) == len(load.ports), "port taken twice"
    for key, claim in state.items(apps.DOMAIN):
        owner = apps.get_app(state, claim.app)
        assert owner is not None and key[1:].decode() in owner.spec.domains, "stale domain claim"
