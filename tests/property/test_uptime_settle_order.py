"""The judging at an epoch's start does not depend on the order of the node ids.

Owners choose their node ids (a register tx can be re-signed until its id suits them), and
the chain reads its tables in key order, so no outcome of the uptime rules may depend on
which id sorts first (rev26e: a watched up reporter escaped its forfeit when the dead
target's record came first). The same history is played with its roles given to the
twelve node ids in every drawn order; the outcome, read back by role, must not change.

The history (K = 6, the rings set in role order, so each role has the same checkers
whatever its id):
- epoch 1: V (role 0) and H (role 6) each shield the other; both are downed at once.
- epoch 2: both are watched; V is dead (its checkers say down, but C, role 1, says up),
  H answers. C is itself downed at the epoch's end (four of its checkers say down, two
  are silent). At epoch 3's start V's down quorum charges C's "up" at once, and C's
  tally marks C DOWN: whichever is read first, C owes its forfeit.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from fluxchain.core import nodes, rewards, uptime
from fluxchain.core.crypto import sha256
from fluxchain.core.records import META, RING, WATCHED, Meta, Ring, Watched
from fluxchain.core.tx import Tx, UptimeAttest, UptimeReport
from tests.support.state import CHAIN, StateRunner, make_params, node_id_of

K = 6
NODES = 12
V, C, H = 0, 1, 6  # roles: ring positions
C_DOWN = {2, 3, 4, 5}  # C's epoch-2 checkers that say down about it
C_SILENT = {7, 8}  # its other two epoch-2 checkers, silent

Outcome = tuple[tuple[str, ...], tuple[bool, ...], tuple[tuple[object, ...], ...]]


def _attest(
    chain: StateRunner,
    epoch: int,
    ids: list[bytes],
    says_up: Callable[[int, int], bool],
    silent: set[int],
) -> None:
    """Every checker on duty but the roles `silent` reports on each of its targets;
    `says_up(checker role, target role)`."""
    role_of = {node_id: role for role, node_id in enumerate(ids)}
    for node_id in uptime.get_ring(chain.state).nodes:
        node = nodes.get_node(chain.state, node_id)
        assert node is not None
        targets = uptime.targets_of(chain.state, node_id, K)
        if role_of[node_id] in silent or not targets or not uptime.on_duty(chain.state, node):
            continue
        reports = tuple(UptimeReport(t, says_up(role_of[node_id], role_of[t]), 10) for t in targets)
        payload = UptimeAttest(node_id, epoch, reports)
        chain.apply(
            uptime.process_uptime_attest, Tx(CHAIN, payload.KIND, node.node_key, 0, 0, payload, b"")
        )


def _next_epoch(chain: StateRunner, epoch: int, ids: list[bytes]) -> None:
    """The epoch's first block, then its ring set in role order (the watched kept)."""
    chain.end_block()
    uptime.start_epoch(chain.ctx, epoch, sha256(b"settle order %d" % epoch))
    meta: Meta = chain.state.get(META)
    chain.state.put(META, Meta(chain.height, epoch, meta.epoch_seed, 0, 0, meta.mix, meta.mix))
    watched = uptime.watched(chain.state)
    chain.state.put(
        RING, Ring(epoch, tuple(n for n in ids if n in uptime.get_ring(chain.state).nodes))
    )
    if watched:
        chain.state.put(WATCHED, Watched(epoch, tuple(n for n in ids if n in watched)))


def _history(order: list[int]) -> Outcome:
    """The module's history with role r played by node `order[r]`: each role's status and
    forfeit, and the events naming roles, after epoch 3's start."""
    chain = StateRunner(make_params(checkers_per_node=K))
    for i in range(NODES):
        chain.add_node(i)
    ids = [node_id_of(i) for i in order]
    origin = sha256(b"settle order")
    chain.state.put(META, Meta(chain.height, 1, origin, 0, 0, origin, origin))
    chain.state.put(RING, Ring(1, tuple(ids)))

    def epoch_1(checker: int, target: int) -> bool:
        if target == V:
            return checker == H
        if target == H:
            return checker == V
        return True

    _attest(chain, 1, ids, epoch_1, set())
    _next_epoch(chain, 2, ids)
    assert uptime.watched(chain.state) == {ids[V], ids[H]}

    def epoch_2(checker: int, target: int) -> bool:
        if target == V:
            return checker == C
        if target == C:
            return checker not in C_DOWN
        return True

    _attest(chain, 2, ids, epoch_2, C_SILENT)
    _next_epoch(chain, 3, ids)
    role_of = {node_id: role for role, node_id in enumerate(ids)}
    statuses = tuple(nodes.get_node(chain.state, n).status.name for n in ids)  # type: ignore[union-attr]
    owes = tuple(chain.state.get(rewards.FORFEIT + n) is not None for n in ids)
    events = sorted(
        (e.kind.name, *(role_of.get(f, f) if isinstance(f, bytes) else f for f in e.fields))
        for e in chain.all_events()
        if e.fields and isinstance(e.fields[0], bytes) and e.fields[0] in role_of
    )
    return statuses, owes, tuple(tuple(e) for e in events)


IDENTITY = _history(list(range(NODES)))


def test_the_history_judges_c_and_keeps_v_and_h_down() -> None:
    """The fixed point the property compares against: V and H sit out their cooldowns, C
    is DOWN and owes its forfeit for its "up" about dead V, H's false "up" of epoch 1
    costs nothing more (H was DOWN when epoch 2 ended: no payout to forfeit)."""
    statuses, owes, _ = IDENTITY
    assert (statuses[V], statuses[H], statuses[C]) == ("DOWN", "DOWN", "DOWN")
    assert owes[C] and not owes[H]


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(NODES)))
def test_the_outcome_does_not_depend_on_which_node_ids_sort_first(order: list[int]) -> None:
    assert _history(list(order)) == IDENTITY
