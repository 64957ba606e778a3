"""FluxNodes: registration with collateral, updates, confirmations, expiry, unbonding, slashing.

A node's life (docs/state.md draws it):

    REGISTERED --confirm--> CONFIRMED --quorum of checkers--> DOWN
                               |  \\--missed confirm window--> EXPIRED
                               |   \\--equivocation--------->  JAILED
    DOWN / EXPIRED / JAILED --confirm--> CONFIRMED
        (DOWN: after down_cooldown; JAILED: after jailed_until; any: only with the tier's
        full collateral, topped up by NODE_UPDATE after a slashing, and a key that is
        not tombstoned)
    any --unregister--> UNBONDING --unbonding_period--> released (record deleted)

Every change of status goes through `set_status`, the one place that tells the payment
queue and placement that a node started or stopped being able to work.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Final

from fluxchain.core import deque, history, placement, rewards
from fluxchain.core.accounts import burn_from_fee, credit, debit
from fluxchain.core.block import fixed_bytes
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import address_of, sha256
from fluxchain.core.encoding import MAX_ARRAY, pack
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.events import EventKind
from fluxchain.core.params import Params, Tier
from fluxchain.core.records import (
    EVIDENCE,
    META,
    UPTIME,
    Meta,
    Node,
    NodeStatus,
    Ref,
    account_key,
    node_key,
)
from fluxchain.core.state import State
from fluxchain.core.tx import (
    Benchmark,
    Evidence,
    Hardware,
    NodeConfirm,
    NodeRegister,
    NodeUnregister,
    NodeUpdate,
    Tx,
    TxKind,
    UptimeAttest,
    UptimeReport,
)

_CONFIRM_DUE: Final = b"confirm-due/"  # deque per window: nodes to check at its start
_UNBOND_DUE: Final = b"unbond-due/"  # deque per height: collateral to release
_RANK_DUE: Final = b"rank-due/"  # deque per epoch: nodes to give a rank key at its start
TAG_RANK_KEY: Final = b"fluxchain/rank-key/1"
# The uptime ring is one record listing every active node (records.Ring): a node reads
# it back with `unpack`, which takes at most MAX_ARRAY items in an array.
MAX_ACTIVE_NODES: Final = MAX_ARRAY
# Every active node's checkers attest once an epoch, in the epoch's blocks after its first
# (an attestation is refused outside its epoch): the active set may only grow as far as all
# those attestations fit in this share of that room, the rest left for confirms, evidence
# and users' txs. Without it, proposers could not include every honest checker past ~82,000
# mainnet nodes (k = 30), and would choose whom to charge the silence forfeit.
ATTESTATION_SHARE_BPS: Final = 5_000
# Attestations are sized at this many reports and more: from 16 on, msgpack's array header
# is as long as it gets for MAX_REPORTS (array16), so a count below it is priced up to it.
_ARRAY16_FROM: Final = 16


def max_active(params: Params) -> int:
    """How many nodes may be active (NODE_CONFIRM refuses `network_full` beyond): what the
    uptime ring record holds, and what lets every active node's attestation (k reports on
    average, k = checkers_per_node) fit in ATTESTATION_SHARE_BPS of an epoch's usable blocks,
    by bytes and by count. A block's bytes count less what no tx may use (`block.fixed_bytes`:
    its header and a parent commit of the largest validator set the params allow).
    Mainnet-shaped params: 38,141 (docs/state.md)."""
    usable = params.epoch_length - 1  # blocks that may carry the epoch's attestations
    per_block = max(0, params.max_block_bytes - fixed_bytes(params.max_validators))
    room = usable * per_block * ATTESTATION_SHARE_BPS // 10_000
    by_bytes = room // attestation_bytes(params.chain_id, params.checkers_per_node)
    by_count = usable * params.max_block_txs * ATTESTATION_SHARE_BPS // 10_000
    return min(MAX_ACTIVE_NODES, by_bytes, by_count)


@lru_cache(maxsize=8)
def attestation_bytes(chain_id: str, reports: int) -> int:
    """The most block bytes an attestation with `reports` reports takes, averaged over
    attestations whose reports average `reports` (each report adds the same bytes): its
    canonical encoding with every field at its longest (nonce, epoch, latency at their
    type's top, a 64-byte signature), plus its framing in the block's tx list."""
    base = max(reports, _ARRAY16_FROM)
    framed = len(pack([_longest_attestation(chain_id, base)])) - 1  # less the list's header
    return framed - (base - reports) * len(pack(_LONGEST_REPORT.to_fields()))


def attestation_tx_bytes(chain_id: str, reports: int) -> int:
    """The encoded size of an attestation with `reports` reports, every field at its
    longest: the `max_tx_bytes` a checker with that many targets needs."""
    return len(_longest_attestation(chain_id, reports))


_LONGEST_REPORT: Final = UptimeReport(bytes(20), True, 2**32 - 1)


def _longest_attestation(chain_id: str, reports: int) -> bytes:
    payload = UptimeAttest(bytes(20), 2**64 - 1, (_LONGEST_REPORT,) * reports)
    tx = Tx(chain_id, TxKind.UPTIME_ATTEST, bytes(33), 2**64 - 1, 0, payload, bytes(64))
    return pack(tx.to_fields())


def _height_name(prefix: bytes, n: int) -> bytes:
    return prefix + n.to_bytes(8, "big")


# -- accessors -------------------------------------------------------------------------------


def get_node(state: State, node_id: bytes) -> Node | None:
    node: Node | None = state.get(node_key(node_id))
    return node


def get_node_by_key(state: State, pubkey: bytes) -> Node | None:
    """The node whose current hot key is `pubkey`."""
    record = history.get_key_record(state, pubkey)
    if record is None or record.retired_height:
        return None
    return get_node(state, record.node_id)


def is_active(node: Node) -> bool:
    """Only confirmed nodes are paid, host apps, check others (uptime.on_duty: and the
    ring's nodes downed in its epoch) and validate."""
    return node.status is NodeStatus.CONFIRMED


def payout_address(state: State, pubkey: bytes) -> bytes:
    """Where a validator's rewards go: the owner of the node that holds or held the key
    (a key rotated away keeps proposing until its epoch ends), or the key's own address."""
    record = history.get_key_record(state, pubkey)
    node = None if record is None else get_node(state, record.node_id)
    return address_of(pubkey) if node is None else node.owner


def _require_node(state: State, node_id: bytes) -> Node:
    node = get_node(state, node_id)
    if node is None:
        raise TxError(Reason.UNKNOWN_NODE, f"no node {node_id.hex()}")
    return node


def _window(ctx: BlockContext, height: int) -> int:
    return height // ctx.params.confirm_window


# -- the one place where status changes ------------------------------------------------------


def set_status(ctx: BlockContext, node: Node, status: NodeStatus, reason: str) -> Node:
    """Move `node` to `status`, telling payments and placement when it gains or loses work."""
    was_active = is_active(node)
    node = replace(node, status=status, status_height=ctx.height)
    # A node without its rank key yet is paid but not placed: placement ranks by that key
    # and ignores it until `process_rank_keys` gives it one.
    if was_active and not is_active(node):
        node = replace(node, queue_ticket=0)  # its queue entry goes stale
        ctx.state.put(node_key(node.node_id), node)
        placement.on_node_inactive(ctx, node.node_id, reason)
    elif not was_active and is_active(node):
        node = replace(node, queue_ticket=rewards.enqueue(ctx.state, node))
        ctx.state.put(node_key(node.node_id), node)
        placement.on_node_active(ctx, node.node_id)
    else:
        ctx.state.put(node_key(node.node_id), node)
    return node


# -- transactions ----------------------------------------------------------------------------


def process_node_register(ctx: BlockContext, tx: Tx) -> None:
    payload: NodeRegister = tx.payload
    state, tier = ctx.state, ctx.params.tier(payload.tier)
    # check: the hot key is separate from the collateral key and not used by another node
    check_new_node_key(state, payload.node_key, tx.sender)
    # check: the declared hardware meets the tier
    hw = payload.hardware
    if hw.cores < tier.min_cores or hw.ram_mb < tier.min_ram_mb or hw.disk_gb < tier.min_disk_gb:
        raise TxError(
            Reason.BENCHMARK_BELOW_TIER,
            f"declared {hw.cores} cores/{hw.ram_mb} MB/{hw.disk_gb} GB is below "
            f"{payload.tier.name.lower()}'s {tier.min_cores}/{tier.min_ram_mb}/{tier.min_disk_gb}",
        )
    # check: and stays within the tier's caps: it bounds what the node offers apps
    # (placement.compute_machine), so a bigger machine registers in a bigger tier
    excess = tier.hardware_excess(hw.cores, hw.ram_mb, hw.disk_gb)
    if excess:
        raise TxError(
            Reason.HARDWARE_ABOVE_TIER,
            f"declared hardware above {payload.tier.name.lower()}'s caps: " + ", ".join(excess),
        )
    # check (inside debit): the balance covers the collateral
    debit(state, tx.sender_address, tier.collateral)
    node_id = tx.id[:20]
    node = new_node(
        node_id=node_id,
        owner=tx.sender_address,
        node_key=payload.node_key,
        vrf_key=payload.vrf_key,
        tier=payload.tier,
        endpoint=payload.endpoint,
        country=payload.country,
        continent=payload.continent,
        hardware=payload.hardware,
        collateral=tier.collateral,
        height=ctx.height,
    )  # its rank key is given two epochs on, from a mix nobody knows now (epochs.py)
    add_node(ctx, node)
    schedule_rank_key(ctx, node_id)
    ctx.emit(EventKind.NODE_REGISTERED, node_id, node.owner, int(node.tier))


def new_node(
    *,
    node_id: bytes,
    owner: bytes,
    node_key: bytes,
    vrf_key: bytes,
    tier: Tier,
    endpoint: str,
    country: str,
    continent: str,
    hardware: Hardware,
    collateral: int,
    height: int,
    status: NodeStatus = NodeStatus.REGISTERED,
    benchmark: Benchmark | None = None,
    version: str = "",
    last_confirm_height: int = 0,
    rank_key: bytes = b"",
) -> Node:
    """A node's record as it enters the state at `height` (a register tx, genesis, a
    test's fixture): registered and in its status since then, every counter at zero
    (never jailed, paid, queued, relocated or unbonding, no epoch attested)."""
    return Node(
        node_id=node_id,
        owner=owner,
        node_key=node_key,
        tier=tier,
        status=status,
        endpoint=endpoint,
        country=country,
        continent=continent,
        hardware=hardware,
        collateral=collateral,
        registered_height=height,
        status_height=height,
        last_confirm_height=last_confirm_height,
        benchmark=benchmark,
        version=version,
        jailed_until=0,
        unbond_height=0,
        queue_ticket=0,
        last_attest_epoch=0,
        paid_total=0,
        relocated_height=0,
        vrf_key=vrf_key,
        rank_key=rank_key,
    )


def add_node(ctx: BlockContext, node: Node) -> None:
    """Insert a new node record (from a register tx or genesis) and schedule its first check."""
    ctx.state.put(node_key(node.node_id), node)
    history.name_key(ctx, node.node_key, node.node_id)
    deque.push(ctx.state, _height_name(_CONFIRM_DUE, _window(ctx, ctx.height) + 2), node.node_id)


def check_new_node_key(state: State, new_key: bytes, owner_key: bytes) -> None:
    """A key named for a node (its proof of possession is checked statelessly) is not the
    collateral key and was never any node's key, as far as the kept history reaches."""
    if new_key == owner_key:
        raise TxError(Reason.BAD_FIELD, "the node key must differ from the collateral key")
    record = history.get_key_record(state, new_key)
    if record is not None:
        when = "" if not record.retired_height else f" until height {record.retired_height}"
        raise TxError(
            Reason.NODE_KEY_IN_USE,
            f"this key is or was node {record.node_id.hex()}'s key{when}; keys are not reused",
        )


def process_node_update(ctx: BlockContext, tx: Tx) -> None:
    payload: NodeUpdate = tx.payload
    state = ctx.state
    node = _require_node(state, payload.node_id)
    # check: only the collateral owner changes a node
    if node.owner != tx.sender_address:
        raise TxError(Reason.NOT_OWNER, "only the collateral owner can update this node")
    # check: an unbonding node is leaving; nothing to update
    if node.status is NodeStatus.UNBONDING:
        raise TxError(Reason.NODE_WRONG_STATE, "the node is unbonding")
    # check: a top-up restores the tier's collateral and never exceeds it (more
    # collateral than the tier's would buy validator power the tier does not give)
    shortfall = ctx.params.tier(node.tier).collateral - node.collateral
    if payload.top_up > shortfall:
        raise TxError(
            Reason.TOP_UP_TOO_LARGE,
            f"top-up {payload.top_up} exceeds the collateral missing from the tier, {shortfall}",
        )
    moved = (payload.country, payload.continent) != (node.country, node.continent)
    # check: a node that stays put keeps its instances, so its API cannot move onto a
    # port one of them publishes over tcp (the app would hold the port when the node
    # restarts and answer for its API); a relocated node is placed afresh, which avoids it
    if not moved and placement.endpoint_port_hosted(state, node.node_id, payload.endpoint):
        raise TxError(
            Reason.ENDPOINT_PORT_TAKEN,
            f"an app this node hosts publishes port {payload.endpoint.rpartition(':')[2]}",
        )
    relocated_height = node.relocated_height
    if moved:
        # check: one location change per confirm window: each re-places everything the
        # node hosts, so flipping back and forth would be unbounded work for every node
        last = node.relocated_height - 1
        if node.relocated_height and ctx.height < last + ctx.params.confirm_window:
            raise TxError(
                Reason.RELOCATED_THIS_WINDOW,
                f"the node moved at height {last}; it may move again at "
                f"{last + ctx.params.confirm_window}",
            )
        # check: the fee covers every instance this re-places (burnt, not tipped)
        hosted = len(placement.get_apps_on_node(state, node.node_id)) if is_active(node) else 0
        burn_from_fee(ctx, tx, hosted * ctx.params.relocation_price)
        relocated_height = ctx.height + 1
    new_key = payload.new_node_key or node.node_key
    new_vrf_key = payload.new_vrf_key or node.vrf_key
    # check: a rotated key is not the collateral key and not used by another node
    if new_key != node.node_key:
        check_new_node_key(state, new_key, tx.sender)
        # check (inside debit): the owner pays the deposit of the account the new key's
        # first (fee-free) duty will create, as a transfer creating it would: rotating
        # to fresh keys is no cheaper way to grow the state (docs/economics.md)
        if state.get(account_key(address_of(new_key))) is None:
            debit(state, tx.sender_address, ctx.params.account_deposit)
            ctx.burned += ctx.params.account_deposit
        # The old key's record stays (retired): its votes until the epoch ends, and
        # for evidence_max_age after, are still this node's to answer for.
        history.retire_key(ctx, node.node_key)
        history.name_key(ctx, new_key, node.node_id)
    # check (inside debit): the balance covers the top-up
    if payload.top_up:
        debit(state, tx.sender_address, payload.top_up)
    node = replace(
        node,
        endpoint=payload.endpoint,
        country=payload.country,
        continent=payload.continent,
        node_key=new_key,
        vrf_key=new_vrf_key,
        collateral=node.collateral + payload.top_up,
        relocated_height=relocated_height,
    )
    state.put(node_key(node.node_id), node)
    if moved and is_active(node):
        # Its instances may no longer be allowed where it now is: place them afresh.
        placement.on_node_inactive(ctx, node.node_id, "relocated")
        placement.on_node_active(ctx, node.node_id)
    elif is_active(node):
        placement.on_node_endpoint(ctx, node.node_id, node.endpoint)
    ctx.emit(EventKind.NODE_UPDATED, node.node_id)


def benchmark_shortfall(benchmark: Benchmark, ctx: BlockContext, node: Node) -> list[str]:
    """What a benchmark lacks for the node's tier, one phrase per missing resource."""
    tier = ctx.params.tier(node.tier)
    wanted = (
        ("cores", benchmark.cores, tier.min_cores),
        ("threads", benchmark.threads, tier.min_threads),
        ("ram_mb", benchmark.ram_mb, tier.min_ram_mb),
        ("disk_gb", benchmark.disk_gb, tier.min_disk_gb),
        ("bandwidth_mbit", benchmark.bandwidth_mbit, tier.min_bandwidth_mbit),
    )
    return [f"{name} {got} < {need}" for name, got, need in wanted if got < need]


def check_node_confirm(ctx: BlockContext, tx: Tx) -> Node:
    """The stateful checks of a NODE_CONFIRM (block execution and mempool admission);
    return the node it confirms."""
    payload: NodeConfirm = tx.payload
    node = _require_node(ctx.state, payload.node_id)
    # check: confirmations come from the node itself (its hot key)
    if tx.sender != node.node_key:
        raise TxError(Reason.NOT_OWNER, "a confirmation must be signed by the node key")
    # check: an unbonding node cannot come back; a jailed one only after its sentence
    if node.status is NodeStatus.UNBONDING:
        raise TxError(Reason.NODE_WRONG_STATE, "the node is unbonding")
    if node.status is NodeStatus.JAILED and ctx.height < node.jailed_until:
        raise TxError(Reason.NODE_WRONG_STATE, f"the node is jailed until {node.jailed_until}")
    # check: a node marked down sits out its cooldown (being down must cost more than
    # one fee-free confirmation)
    if (
        node.status is NodeStatus.DOWN
        and ctx.height < node.status_height + ctx.params.down_cooldown
    ):
        raise TxError(
            Reason.DOWN_COOLDOWN,
            f"the node was marked down at {node.status_height}; it may confirm again from "
            f"{node.status_height + ctx.params.down_cooldown}",
        )
    # check: a key slashed for equivocation does not come back while its earlier votes
    # can still be evidence; the owner rotates to a fresh key (NODE_UPDATE)
    if history.is_tombstoned(ctx, node.node_key):
        raise TxError(Reason.KEY_TOMBSTONED, "this node key was slashed; rotate to a new key")
    # check: a slashed node is out of its tier until its owner tops the collateral up
    tier_collateral = ctx.params.tier(node.tier).collateral
    if node.collateral < tier_collateral:
        raise TxError(
            Reason.BELOW_TIER_COLLATERAL,
            f"collateral {node.collateral} is below the tier's {tier_collateral}; top it up",
        )
    # check: one confirmation per window, unless the node lost its status since the last one
    if (
        node.last_confirm_height
        and node.last_confirm_height >= node.status_height
        and _window(ctx, node.last_confirm_height) == _window(ctx, ctx.height)
    ):
        raise TxError(Reason.CONFIRM_TOO_SOON, "already confirmed in this confirm window")
    # check: the uptime ring (one record listing every active node) stays loadable, and
    # every active node's attestation fits the epoch's blocks (`max_active`): a
    # node joining the active set may not take it past either
    joining = 0 if not node.rank_key else 1  # a node waiting for its key is counted already
    cap = max_active(ctx.params)
    if node.status is not NodeStatus.CONFIRMED and active_bound_count(ctx) + joining > cap:
        raise TxError(
            Reason.NETWORK_FULL,
            f"{cap} nodes are active: as many as the ring and the epoch's attestations hold",
        )
    # check: the measured machine meets the tier
    shortfall = benchmark_shortfall(payload.benchmark, ctx, node)
    if shortfall:
        raise TxError(Reason.BENCHMARK_BELOW_TIER, "benchmark below tier: " + ", ".join(shortfall))
    return node


def process_node_confirm(ctx: BlockContext, tx: Tx) -> None:
    payload: NodeConfirm = tx.payload
    node = check_node_confirm(ctx, tx)
    node = replace(
        node,
        benchmark=payload.benchmark,
        version=payload.version,
        last_confirm_height=ctx.height,
    )
    ctx.state.put(node_key(node.node_id), node)
    deque.push(ctx.state, _height_name(_CONFIRM_DUE, _window(ctx, ctx.height) + 2), node.node_id)
    if not is_active(node):
        set_status(ctx, node, NodeStatus.CONFIRMED, "confirmed")
        ctx.emit(EventKind.NODE_CONFIRMED, node.node_id)


def process_node_unregister(ctx: BlockContext, tx: Tx) -> None:
    payload: NodeUnregister = tx.payload
    node = _require_node(ctx.state, payload.node_id)
    # check: only the collateral owner takes the collateral back
    if node.owner != tx.sender_address:
        raise TxError(Reason.NOT_OWNER, "only the collateral owner can unregister this node")
    # check: not already on its way out
    if node.status is NodeStatus.UNBONDING:
        raise TxError(Reason.NODE_WRONG_STATE, "the node is already unbonding")
    release = ctx.height + ctx.params.unbonding_period
    node = set_status(ctx, replace(node, unbond_height=release), NodeStatus.UNBONDING, "unbonding")
    deque.push(ctx.state, _height_name(_UNBOND_DUE, release), node.node_id)
    ctx.emit(EventKind.NODE_UNBONDING, node.node_id, release)


def offence_id(evidence: Evidence) -> bytes:
    """One id per offence, whoever reports it and in whichever vote order."""
    vote = evidence.vote_a
    return sha256(pack([vote.validator, vote.height, vote.round, int(vote.type)]))


def check_evidence(ctx: BlockContext, tx: Tx) -> Node:
    """The stateful checks of an EVIDENCE tx (block execution and mempool admission);
    return the offending node. The votes' signatures and conflict are checked statelessly."""
    payload: Evidence = tx.payload
    vote = payload.vote_a
    # check: the offence happened in the past, recently enough to still be punished
    if vote.height >= ctx.height:
        raise TxError(Reason.BAD_EVIDENCE, f"evidence at height {vote.height} is not in the past")
    if ctx.height - vote.height > ctx.params.evidence_max_age:
        raise TxError(Reason.EVIDENCE_TOO_OLD, f"evidence from height {vote.height} is too old")
    # check: the signer was a validator at that height; the set is looked up in the
    # history, not taken as the current one, which may have changed since
    signers = history.validators_at(ctx.state, vote.height)
    if signers is None or not signers.power_of(vote.validator):
        raise TxError(
            Reason.UNKNOWN_VALIDATOR, f"the votes' signer was not a validator at {vote.height}"
        )
    # check: the offender is the node that held the key then, whatever key it holds now
    record = history.get_key_record(ctx.state, vote.validator)
    node = None
    if record is not None and record.from_height < vote.height:
        node = get_node(ctx.state, record.node_id)
    if node is None:
        raise TxError(Reason.UNKNOWN_VALIDATOR, "the votes' signer is no node's key any more")
    # check: one punishment per offence
    if ctx.state.get(EVIDENCE + offence_id(payload)) is not None:
        raise TxError(Reason.DUPLICATE_EVIDENCE, "this equivocation was already punished")
    # check: the key's slashing covers every vote it signed before (a faulty signer
    # usually equivocates at many heights: it is punished once, then tombstoned)
    assert record is not None  # a node was found through it
    if record.tombstone_height and vote.height < record.tombstone_height:
        raise TxError(
            Reason.KEY_TOMBSTONED,
            f"this key was slashed at {record.tombstone_height}, after these votes",
        )
    return node


def process_evidence(ctx: BlockContext, tx: Tx) -> None:
    """Slash and jail a validator that signed two different blocks at one (height, round)."""
    node = check_evidence(ctx, tx)
    ctx.state.put(EVIDENCE + offence_id(tx.payload), Ref(ctx.height.to_bytes(8, "big")))
    history.tombstone_key(ctx, tx.payload.vote_a.validator)
    slash(ctx, node)


def slash(ctx: BlockContext, node: Node) -> None:
    """Burn `slash_bps` of the node's collateral and jail it for `jail_period` blocks."""
    burned = node.collateral * ctx.params.slash_bps // 10_000
    jailed_until = ctx.height + ctx.params.jail_period
    node = replace(node, collateral=node.collateral - burned, jailed_until=jailed_until)
    meta: Meta = ctx.state.get(META)
    ctx.state.put(META, replace(meta, burned=meta.burned + burned))
    if node.status is NodeStatus.UNBONDING:
        ctx.state.put(node_key(node.node_id), node)  # still leaving, with less
    else:
        set_status(ctx, node, NodeStatus.JAILED, "jailed")
    ctx.emit(EventKind.SLASHED, node.node_id, burned, jailed_until)


# -- scheduled work --------------------------------------------------------------------------


def process_confirm_windows(ctx: BlockContext) -> None:
    """At the start of window w, expire nodes whose last confirmation is from w-2 or older."""
    if ctx.height % ctx.params.confirm_window:
        return
    window = _window(ctx, ctx.height)
    for node_id in deque.drain(ctx.state, _height_name(_CONFIRM_DUE, window)):
        node = get_node(ctx.state, node_id)
        # Stale entries (confirmed again since, gone, or already inactive) are skipped.
        if node is None or node.status not in (NodeStatus.CONFIRMED, NodeStatus.REGISTERED):
            continue
        last = max(node.last_confirm_height, node.registered_height)
        if _window(ctx, last) > window - 2:
            continue
        set_status(ctx, node, NodeStatus.EXPIRED, "expired")
        ctx.emit(EventKind.NODE_EXPIRED, node_id, node.last_confirm_height)


def process_unbonding(ctx: BlockContext) -> None:
    """Release the collateral of nodes whose unbonding period ends at this height."""
    for node_id in deque.drain(ctx.state, _height_name(_UNBOND_DUE, ctx.height)):
        node = get_node(ctx.state, node_id)
        if node is None or node.status is not NodeStatus.UNBONDING:
            continue
        credit(ctx.state, node.owner, node.collateral)
        ctx.state.delete(node_key(node_id))
        history.retire_key(ctx, node.node_key)
        ctx.state.delete(UPTIME + node_id)
        ctx.emit(EventKind.NODE_RELEASED, node_id, node.collateral)


# -- rank keys -------------------------------------------------------------------------------


def compute_rank_key(mix: bytes, node_id: bytes) -> bytes:
    """A node's position in placement and uptime draws: a hash of its id and a mix that
    nobody knew when the id was fixed, so grinding register txs cannot choose it."""
    return sha256(TAG_RANK_KEY + mix + node_id)


def schedule_rank_key(ctx: BlockContext, node_id: bytes) -> None:
    """A node registered in epoch r gets its rank key at the first block of epoch r + 2,
    from the mix at the end of epoch r + 1. Not r + 1 from the end of r: the proposer of
    the last block of r knows that mix (its own reveal is the last one folded in, and a
    reveal depends on nothing but the height) while it picks the register txs of its
    block. The end of r + 1 folds in a whole epoch of other proposers' reveals made after
    the node's id was fixed."""
    epoch = ctx.height // ctx.params.epoch_length
    deque.push(ctx.state, _height_name(_RANK_DUE, epoch + 2), node_id)


def active_bound_count(ctx: BlockContext) -> int:
    """The active nodes the uptime ring may have to hold: those at work in placement, plus
    every node still waiting for its rank key, confirmed or not (a node confirmed before
    its key arrives joins the ring when the key does, with no check then; counting the
    unconfirmed ones too keeps this two reads, at the price of refusing a confirm near
    the bound while registrations that would fill it are pending)."""
    epoch = ctx.height // ctx.params.epoch_length
    waiting = sum(deque.size(ctx.state, _height_name(_RANK_DUE, e)) for e in (epoch + 1, epoch + 2))
    return placement.get_totals(ctx.state).nodes + waiting


def process_rank_keys(ctx: BlockContext, epoch: int, mix: bytes) -> None:
    """At the first block of `epoch` (before this block's reveal is folded in, so `mix`
    is the mix at the end of epoch - 1): key the nodes registered in epoch - 2, and put
    the confirmed ones among them to work in placement."""
    for node_id in deque.drain(ctx.state, _height_name(_RANK_DUE, epoch)):
        node = get_node(ctx.state, node_id)
        if node is None or node.rank_key:
            continue  # released meanwhile
        node = replace(node, rank_key=compute_rank_key(mix, node_id))
        ctx.state.put(node_key(node_id), node)
        if is_active(node):
            placement.on_node_active(ctx, node_id)
