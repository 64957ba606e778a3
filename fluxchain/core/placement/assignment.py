"""Assignment: writing instances onto nodes and taking them off, with the accruals that
pay for the hosting, the refill queue of under-placed apps, and the hooks apps.py and
nodes.py call (`place_new_app`, `replace_demand`, `remove_app`, `on_node_active`,
`on_node_inactive`, `process_block`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from fluxchain.core import deque
from fluxchain.core.appspec import OWNER_SIZE, AppSpec, Protocol, port_key
from fluxchain.core.context import BlockContext
from fluxchain.core.events import EventKind
from fluxchain.core.params import Params
from fluxchain.core.placement.ranking import Search, compute_shortfall_reason
from fluxchain.core.placement.records import (
    REFILL,
    Accrual,
    Demand,
    Instance,
    NodeLoad,
    Placement,
    Refill,
    Wanting,
    get_load,
    get_placement,
    get_refill,
    load_key,
    placement_key,
    wanting_key,
)
from fluxchain.core.placement.stats import count_node
from fluxchain.core.records import Node, NodeStatus, node_key
from fluxchain.core.state import State

REFILL_QUEUE: Final = b"placement/refill"  # deque of under-placed app names, round-robin


def _capacity_appeared(state: State) -> None:
    """Capacity may have appeared: every under-placed app is due for another search."""
    refill = get_refill(state)
    state.put(REFILL, Refill(refill.version + 1, refill.underplaced))


def _enqueue(state: State, name: str) -> None:
    """Put app `name` at the back of the refill queue, tried at the current version."""
    refill = get_refill(state)
    ticket = deque.push(state, REFILL_QUEUE, name.encode())
    state.put(wanting_key(name), Wanting(ticket, refill.version))


def _set_wanting(state: State, name: str, wanting: bool) -> None:
    """App `name` became under-placed (`wanting`) or whole: its own `W` record and the count."""
    refill = get_refill(state)
    if wanting:
        _enqueue(state, name)
        state.put(REFILL, Refill(refill.version, refill.underplaced + 1))
    else:
        state.delete(wanting_key(name))
        state.put(REFILL, Refill(refill.version, refill.underplaced - 1))


# -- writing assignments ----------------------------------------------------------------------


def _assign(ctx: BlockContext, placement: Placement, index: int, load: NodeLoad) -> Placement:
    ctx.state.put(load_key(load.node_id), _take(load, placement.name, index, placement.demand))
    ctx.emit(EventKind.ASSIGNED, placement.name, load.node_id, index)
    instances = tuple(
        sorted((*placement.instances, Instance(index, load.node_id, ctx.height)), key=_by_index)
    )
    return replace(placement, instances=instances)


def _accrue(
    placement: Placement, node_id: bytes, owner: bytes, since: int, height: int
) -> Placement:
    """`placement` owing `node_id` its hosting from `since` to `height` (never beyond
    `paid_until`), merged into that node's earlier stretch: one accrual per node, so the
    settlement pays the same and the list is bounded by the nodes (see `Search.eligible`)."""
    blocks = min(height, placement.paid_until) - since
    if blocks <= 0:
        return placement
    accruals = list(placement.accruals)
    for position, accrual in enumerate(accruals):
        if accrual.node_id == node_id:
            accruals[position] = Accrual(node_id, owner, accrual.blocks + blocks)
            break
    else:
        accruals.append(Accrual(node_id, owner, blocks))
    return replace(placement, accruals=tuple(accruals))


def _unassign(
    ctx: BlockContext, placement: Placement, instance: Instance, reason: str, *, free: bool
) -> Placement:
    """Take `instance` off its node; its unpaid hosting becomes an accrual.

    `free` is False when the node itself is leaving (its load record is being dropped).
    """
    load = get_load(ctx.state, instance.node_id)
    owner = b"\x00" * OWNER_SIZE if load is None else load.owner
    placement = _accrue(placement, instance.node_id, owner, instance.since, ctx.height)
    if free and load is not None:
        ctx.state.put(
            load_key(load.node_id),
            _release(load, placement.name, instance.index, placement.demand),
        )
        _capacity_appeared(ctx.state)
    ctx.emit(EventKind.UNASSIGNED, placement.name, instance.node_id, instance.index, reason)
    instances = tuple(i for i in placement.instances if i.index != instance.index)
    return replace(placement, instances=instances)


def _by_index(instance: Instance) -> int:
    return instance.index


def _fill(ctx: BlockContext, placement: Placement) -> Placement:
    """Give `placement` its missing instances on the best eligible nodes; record the outcome.
    An app past its paid time (its expiry carried over to a later block) gets none."""
    missing = placement.wanted - len(placement.instances)
    if missing > 0 and placement.paid_until > ctx.height:
        search = Search.of(ctx.state, placement)
        used = {i.index for i in placement.instances}
        free_indexes = [i for i in range(placement.wanted) if i not in used]
        for node_id in search.best(missing):
            load = get_load(ctx.state, node_id)
            assert load is not None
            placement = _assign(ctx, placement, free_indexes.pop(0), load)
    return _record(ctx, placement, _reason(ctx.state, placement))


def _reason(state: State, placement: Placement) -> str:
    """The empty string when the app is whole, else why it is short (`compute_shortfall_reason`)."""
    if len(placement.instances) >= placement.wanted:
        return ""
    return compute_shortfall_reason(state, placement.demand, placement.wanted)


def _record(ctx: BlockContext, placement: Placement, reason: str) -> Placement:
    """Store `placement` with its under-placement reason, emitting a change of status."""
    before = get_placement(ctx.state, placement.name)
    was_placed = -1 if before is None else len(before.instances)
    was_reason = None if before is None else before.reason
    placement = replace(placement, reason=reason)
    ctx.state.put(placement_key(placement.name), placement)
    placed = len(placement.instances)
    if reason:
        if before is None or not before.reason:
            _set_wanting(ctx.state, placement.name, True)
        if (placed, reason) != (was_placed, was_reason):
            ctx.emit(EventKind.APP_UNDERPLACED, placement.name, placed, placement.wanted, reason)
    else:
        if before is not None and before.reason:
            _set_wanting(ctx.state, placement.name, False)
        if before is None or before.reason or placed != was_placed:
            ctx.emit(EventKind.APP_PLACED, placement.name, placed)
    return placement


# -- what apps.py calls -----------------------------------------------------------------------


def place_new_app(ctx: BlockContext, name: str, spec: AppSpec, paid_until: int) -> Placement:
    """Place a newly registered app, paid for hosting until `paid_until`."""
    placement = Placement(name, spec.instances, Demand.of(spec), (), (), "", paid_until)
    return _fill(ctx, placement)


def set_paid_until(state: State, name: str, paid_until: int) -> None:
    """App `name` was extended: its hosting is paid until `paid_until` now."""
    placement = get_placement(state, name)
    assert placement is not None, name
    state.put(placement_key(name), replace(placement, paid_until=paid_until))


def _still_fits(released: NodeLoad, instance: Instance, new: Demand) -> bool:
    """Whether `instance` may stay on its node (`released`: that node's load without it)."""
    return (
        (not new.pinned or instance.node_id in new.pinned)
        and released.tier >= new.min_tier
        and new.location_allowed(released.continent, released.country)
        and released.fits(new)
    )


def count_moved_by_update(state: State, name: str, spec: AppSpec) -> int:
    """How many of app `name`'s instances `replace_demand(.., spec)` would move off their
    node: the re-placement work an APP_UPDATE is charged for, computed before it mutates
    anything (pure: reads the state only). Instances dropped by scaling down are freed,
    not moved, and are not counted."""
    placement = get_placement(state, name)
    if placement is None:
        return 0
    old, new = placement.demand, Demand.of(spec)
    moved = 0
    for instance in placement.instances:
        if instance.index >= spec.instances:
            continue
        load = get_load(state, instance.node_id)
        assert load is not None
        if not _still_fits(_release(load, name, instance.index, old), instance, new):
            moved += 1
    return moved


def replace_demand(ctx: BlockContext, name: str, spec: AppSpec, paid_until: int) -> Placement:
    """An updated spec: keep every instance that still fits where it is, move the rest.

    Instances beyond the new count go first (highest indexes), then instances whose node
    no longer admits the app (tier, location, pins, capacity of the new size, ports).
    """
    placement = get_placement(ctx.state, name)
    assert placement is not None, name
    old = placement.demand
    new = Demand.of(spec)
    for instance in sorted(placement.instances, key=_by_index, reverse=True):
        if instance.index >= spec.instances:
            placement = _unassign(ctx, placement, instance, "scaled_down", free=True)
    # release everything, then take back what still fits, in instance order
    kept: list[Instance] = []
    for instance in placement.instances:
        load = get_load(ctx.state, instance.node_id)
        assert load is not None
        released = _release(load, placement.name, instance.index, old)
        if _still_fits(released, instance, new):
            ctx.state.put(load_key(load.node_id), _take(released, name, instance.index, new))
            kept.append(instance)
        else:
            ctx.state.put(load_key(load.node_id), released)
            _capacity_appeared(ctx.state)
            placement = _accrue(placement, instance.node_id, load.owner, instance.since, ctx.height)
            ctx.emit(EventKind.UNASSIGNED, name, instance.node_id, instance.index, "app_updated")
    placement = replace(
        placement,
        wanted=spec.instances,
        demand=new,
        instances=tuple(kept),
        paid_until=paid_until,
    )
    return _fill(ctx, placement)


def remove_app(ctx: BlockContext, name: str, reason: str) -> Placement:
    """Take every instance of app `name` off its node and forget its placement.

    Returns the last record (its accruals are what the caller still owes the nodes).
    """
    placement = get_placement(ctx.state, name)
    assert placement is not None, name
    for instance in placement.instances:
        placement = _unassign(ctx, placement, instance, reason, free=True)
    ctx.state.delete(placement_key(name))
    if placement.reason:
        _set_wanting(ctx.state, name, False)
    return placement


def get_accruals(state: State, name: str, height: int) -> list[Accrual]:
    """Unpaid hosting of app `name` before `height`: stretches of instances that moved
    away, then the current instances in index order."""
    placement = get_placement(state, name)
    if placement is None:
        return []
    owed = list(placement.accruals)
    for instance in placement.instances:
        if height > instance.since:
            load = get_load(state, instance.node_id)
            assert load is not None, "an instance's node is always active"
            owed.append(Accrual(instance.node_id, load.owner, height - instance.since))
    return owed


def mark_settled(state: State, name: str, height: int) -> None:
    """Everything `get_accruals(state, name, height)` returned has been paid."""
    placement = get_placement(state, name)
    if placement is None:
        return
    settled = tuple(replace(i, since=max(i.since, height)) for i in placement.instances)
    state.put(placement_key(name), replace(placement, instances=settled, accruals=()))


def _release(load: NodeLoad, name: str, index: int, demand: Demand) -> NodeLoad:
    """`load` without instance `index` of app `name`."""
    taken = list(load.ports)
    for port in demand.ports:
        taken.remove(port)
    return _with_usage(
        load,
        -demand.cpu,
        -demand.ram_mb,
        -demand.disk_gb,
        tuple(h for h in load.hosted if h != (name, index)),
        tuple(taken),
    )


def _take(load: NodeLoad, name: str, index: int, demand: Demand) -> NodeLoad:
    """`load` with instance `index` of app `name` added."""
    return _with_usage(
        load,
        demand.cpu,
        demand.ram_mb,
        demand.disk_gb,
        tuple(sorted((*load.hosted, (name, index)))),
        tuple(sorted(load.ports + demand.ports)) if demand.ports else load.ports,
    )


def _with_usage(
    load: NodeLoad,
    cpu: int,
    ram_mb: int,
    disk_gb: int,
    hosted: tuple[tuple[str, int], ...],
    ports: tuple[int, ...],
) -> NodeLoad:
    return NodeLoad(
        load.node_id,
        load.owner,
        load.tier,
        load.country,
        load.continent,
        load.cores,
        load.ram_mb,
        load.disk_gb,
        load.cap_cpu,
        load.cap_ram_mb,
        load.cap_disk_gb,
        load.used_cpu + cpu,
        load.used_ram_mb + ram_mb,
        load.used_disk_gb + disk_gb,
        hosted,
        ports,
        load.rank_key,
        load.api_port,
    )


# -- hooks nodes.py calls ---------------------------------------------------------------------


def compute_machine(node: Node) -> tuple[int, int, int]:
    """(cores, RAM MB, disk GB) the chain counts a node for: its benchmark, each figure
    capped by the hardware it declared at register (itself capped by its tier,
    `TierParams.max_*`). The benchmark is the node's own claim, signed by its own key: the
    cap keeps what one collateral answers for bounded, whatever it claims."""
    bench, hw = node.benchmark, node.hardware
    if bench is None:
        return 0, 0, 0
    return min(bench.cores, hw.cores), min(bench.ram_mb, hw.ram_mb), min(bench.disk_gb, hw.disk_gb)


def compute_capacity(node: Node, params: Params) -> tuple[int, int, int]:
    """(cpu tenths, RAM MB, disk GB) a node offers apps: `compute_machine` minus the
    reserve."""
    cores, ram_mb, disk_gb = compute_machine(node)
    return (
        max(0, cores - params.reserve_cores) * 10,
        max(0, ram_mb - params.reserve_ram_mb),
        max(0, disk_gb - params.reserve_disk_gb),
    )


def on_node_active(ctx: BlockContext, node_id: bytes) -> None:
    """A node became CONFIRMED: it gets a load record and counts in the totals; the
    under-placed apps are retried at the end of the block (`process_block`), a bounded
    number per block, not scanned here."""
    state = ctx.state
    node: Node | None = state.get(node_key(node_id))
    # check: only a confirmed node hosts; a repeated call changes nothing
    if node is None or node.status is not NodeStatus.CONFIRMED or not node.rank_key:
        return
    if get_load(state, node_id) is not None:
        return
    cpu, ram, disk = compute_capacity(node, ctx.params)
    cores, ram_mb, disk_gb = compute_machine(node)
    load = NodeLoad(
        node_id,
        node.owner,
        node.tier,
        node.country,
        node.continent,
        cores,
        ram_mb,
        disk_gb,
        cpu,
        ram,
        disk,
        0,
        0,
        0,
        (),
        (),
        node.rank_key,
        endpoint_port(node.endpoint),
    )
    state.put(load_key(node_id), load)
    count_node(state, load, +1)
    _capacity_appeared(state)


def endpoint_port(endpoint: str) -> int:
    """The port of a registered `host:port` endpoint (0 if it has none)."""
    port = endpoint.rpartition(":")[2]
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else 0


def endpoint_port_hosted(state: State, node_id: bytes, endpoint: str) -> bool:
    """Whether an instance the node hosts publishes `endpoint`'s port over tcp."""
    load = get_load(state, node_id)
    port = endpoint_port(endpoint)
    return load is not None and port != 0 and port_key(port, Protocol.TCP) in load.ports


def on_node_endpoint(ctx: BlockContext, node_id: bytes, endpoint: str) -> None:
    """An active node registered a new endpoint: its load record keeps the API's port."""
    load = get_load(ctx.state, node_id)
    if load is not None and load.api_port != endpoint_port(endpoint):
        ctx.state.put(load_key(node_id), replace(load, api_port=endpoint_port(endpoint)))


def on_node_inactive(ctx: BlockContext, node_id: bytes, reason: str) -> None:
    """A node left CONFIRMED (down, expired, jailed, unbonding, relocated): each of its
    instances moves to the best eligible node now, in this block."""
    state = ctx.state
    load = get_load(state, node_id)
    # check: nothing to do for a node that was not hosting
    if load is None:
        return
    moved: list[str] = sorted({name for name, _ in load.hosted})
    for name in moved:
        placement = get_placement(state, name)
        assert placement is not None, name
        for instance in placement.instances:
            if instance.node_id == node_id:
                placement = _unassign(ctx, placement, instance, reason, free=False)
        state.put(placement_key(name), placement)
    state.delete(load_key(node_id))
    count_node(state, load, -1)
    for name in moved:
        placement = get_placement(state, name)
        assert placement is not None
        _fill(ctx, placement)


def process_block(ctx: BlockContext) -> None:
    """End of block: retry under-placed apps, at most `params.app_refills_per_block`.

    The refill queue holds each under-placed app once (entries whose ticket is not the
    app's `W` record's are stale and dropped), in the order they were last tried, so the
    capacity versions they were tried at never decrease from head to tail. An app at the
    head tried at the current version means every app has been tried since capacity last
    appeared: nothing to do. Otherwise the head is popped, searched again (`_fill`), and
    if still short goes to the back, tried now. Every queue step counts towards the bound,
    stale ones included, so a block's refill work is at most that many steps; an app
    waits at most (under-placed apps / bound) blocks for its turn.
    """
    state = ctx.state
    version = get_refill(state).version
    for _ in range(ctx.params.app_refills_per_block):
        head = deque.peek(state, REFILL_QUEUE)
        if head is None:
            return
        ticket, raw = head
        name = raw.decode()
        wanting: Wanting | None = state.get(wanting_key(name))
        if wanting is not None and wanting.ticket == ticket and wanting.tried == version:
            return  # every app behind it was tried at this version too
        deque.pop(state, REFILL_QUEUE)
        if wanting is None or wanting.ticket != ticket:
            continue  # stale: the app was placed, removed, or queued again since
        placement = get_placement(state, name)
        assert placement is not None, name
        placement = _fill(ctx, placement)
        if placement.reason:
            _enqueue(state, name)  # still short: to the back, tried at this version
