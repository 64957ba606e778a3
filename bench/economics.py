"""Uptime attacks on the payouts, run against the chain's own rules, in memory.

    python -m bench.economics [--nodes N] [--blocks N] [--shares 5,10,20,33]
                              [--attack lie|quorum-lie|refuse|shield|quorum-shield|dark]
                              [--refusals N] [--dark-every N] [--dark-attests]
                              [--seed TEXT] [--liars-first]

Cumulus nodes only (one payment queue), each under its own owner address: the worst case
for the distinct-operator rule, since addresses are free. Every node is alive (but the
attacker's dark ones under `shield` and `dark`). Each epoch
every node sends its UPTIME_ATTEST through `uptime.process_uptime_attest`. Each block pays
the tier's queue head through `rewards.process_rewards`. The attacks:
- `lie` (issue 26 #1): honest nodes say up about every target; attacker nodes say down
  about every honest target and up about their own.
- `quorum-lie`: as `lie`, but down only about the honest targets where the attacker's
  reports make a down quorum with every active checker reporting (the ring and the DOWN
  status are public): the lies that no up quorum can contradict, whatever contradicted
  reports cost.
- `refuse` (red23d): every node reports what its probes saw, and the attacker's nodes, as
  targets, drop the probes of chosen honest checkers, who then report them down. A target
  refuses at most (checkers - 1) // 3 of its checkers, which keeps its up quorum. The
  honest checkers whose targets are most the attacker's come first, each refused by up
  to `--refusals` of its attacker targets with room left (default: all of them). A rule
  that charged a checker for one contradicted down report is best played with
  `--refusals 1` (spread over the most checkers); one that charged a share of its
  reports, with the default (piled on the fewest).
- `shield` (rev26e): each epoch each attacker node is dark (answers no probe, sends no
  attestation) with probability 1 / `--dark-every`, on a schedule drawn from `--seed`
  alone (the same under every rule); honest checkers report it down, the attacker's
  nodes say up about every attacker node and tell the truth about the others. With
  `--dark-attests` the owner keeps signing its dark nodes' attestations elsewhere.
- `quorum-shield`: as `shield`, but up about a dark node of its own only where the
  attacker's reports block every verdict on it, every other checker reporting it down
  (the shield that no quorum contradicts: the best play where a failed one costs).
- `dark`: the same outages, every node telling the truth (what they cost unshielded).
The attestations of an epoch are processed in ring order, or with `--liars-first` the
attacker's before the honest ones (rev25e: a liar probes nothing, so it can always report
first); a node marked DOWN during the epoch still attests (`uptime.on_duty`).
A node marked DOWN confirms again as soon as its `down_cooldown` is over (as an honest
node would; a dark one is back by then). The epoch seed is a hash chain the attacker does
not choose (seed grinding is issue 26 #2), from `--seed` (default "economics", the
history every earlier figure measured): a false DOWN at 33 % is rare and comes in
clusters (neighbouring targets share most of their checkers), so one history is one draw
of a few clusters. Signatures are not made: they are checked before these rules run, and
the attack does not depend on them.

Prints, per attacker share of the nodes: its share of the Cumulus payouts, the false
DOWNs, the reports contradicted, and the share of the honest nodes' turns in the queue
that were passed over (forfeited); the last line says whether every share stayed within
its fair share plus 1 point (the issue's target).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace

from fluxchain.core import nodes, rewards, uptime
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import sha256
from fluxchain.core.events import Event, EventKind, PayReason
from fluxchain.core.params import Params, Tier
from fluxchain.core.records import META, Meta, NodeStatus, node_key
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.tx import Tx, UptimeAttest, UptimeReport
from tests.support.state import CHAIN, make_node, make_params

PROPOSER = b"\x07" * 20
LYING = ("lie", "quorum-lie", "shield", "quorum-shield")  # the attacks whose nodes lie


def _attest(node_key_: bytes, payload: UptimeAttest) -> Tx:
    """An UPTIME_ATTEST as the rules see it once its signature has been checked."""
    return Tx(CHAIN, payload.KIND, node_key_, 0, 0, payload, b"")


def _register_nodes(state: State, n_nodes: int) -> list[bytes]:
    """`n_nodes` confirmed Cumulus nodes, each queued for its tier's payment."""
    ids: list[bytes] = []
    for i in range(n_nodes):
        node = make_node(i, Tier.CUMULUS)
        node = replace(node, queue_ticket=rewards.enqueue(state, node))
        state.put(node_key(node.node_id), node)
        ids.append(node.node_id)
    return ids


def _refusals(
    state: State,
    k: int,
    attacker_ids: set[bytes],
    targets: dict[bytes, list[bytes]],
    per_checker: int | None,
) -> set[tuple[bytes, bytes]]:
    """The (checker, target) probes the attacker's targets drop this epoch: at most
    `per_checker` (None: no limit) of each honest checker's."""
    mine = {
        checker: [t for t in of if t in attacker_ids]
        for checker, of in targets.items()
        if checker not in attacker_ids and any(t in attacker_ids for t in of)
    }
    room: dict[bytes, int] = {}  # attacker target -> refusals it has left
    refused: set[tuple[bytes, bytes]] = set()
    for checker in sorted(mine, key=lambda c: (-len(mine[c]) / len(targets[c]), c)):
        left = len(mine[checker]) if per_checker is None else per_checker
        for t in mine[checker]:
            if t not in room:
                room[t] = (len(uptime.checkers_of(state, t, k)) - 1) // 3
            if room[t] > 0 and left > 0:
                left -= 1
                room[t] -= 1
                refused.add((checker, t))
    return refused


def _start_epoch_and_attest(
    ctx: BlockContext,
    attacker_ids: set[bytes],
    attack: str,
    refusals: int | None,
    liars_first: bool = False,
    dark: frozenset[bytes] = frozenset(),
    dark_attests: bool = False,
) -> None:
    """A new epoch's checker ring; every checker on duty reports its targets (`attack`,
    `refusals`, `liars_first`, `dark` and `dark_attests`: what the attacker's nodes do,
    the module's docstring)."""
    state, params = ctx.state, ctx.params
    meta: Meta = state.get(META)
    epoch = ctx.height // params.epoch_length
    # A fresh seed per epoch: what the reveals' mix gives (core/epochs.py).
    seed = sha256(meta.epoch_seed + ctx.reveal)
    state.put(META, replace(meta, epoch=epoch, epoch_seed=seed))
    uptime.start_epoch(ctx, epoch, seed)
    k = params.checkers_per_node
    targets = {n: uptime.targets_of(state, n, k) for n in uptime.get_ring(state).nodes}
    refused = set()
    if attack == "refuse":
        refused = _refusals(state, k, attacker_ids, targets, refusals)
    captured = _captured(state, targets, attacker_ids) if attack == "quorum-lie" else set()
    if attack == "quorum-shield":
        captured = _unshieldable(state, targets, attacker_ids, dark, dark_attests)
    order = list(targets)
    if liars_first:
        order.sort(key=lambda n: n not in attacker_ids)  # stable: ring order within each side
    for node_id in order:
        of = targets[node_id]
        checker = nodes.get_node(state, node_id)
        if checker is None or not uptime.on_duty(state, checker):
            continue
        if node_id in dark and not dark_attests:
            continue
        lying = node_id in attacker_ids and attack in (
            "lie",
            "quorum-lie",
            "shield",
            "quorum-shield",
        )
        reports = tuple(
            UptimeReport(
                t, _says_up(t, lying, attack, attacker_ids, captured, node_id, refused, dark), 10
            )
            for t in of
        )
        if reports:
            payload = UptimeAttest(node_id, epoch, reports)
            uptime.process_uptime_attest(ctx, _attest(checker.node_key, payload))


def _captured(
    state: State, targets: dict[bytes, list[bytes]], attacker_ids: set[bytes]
) -> set[bytes]:
    """The honest targets on which the attacker's down reports make a down quorum this
    epoch, every checker on duty reporting (at the epoch's start: the whole ring)."""
    checkers: dict[bytes, int] = {}
    mine: dict[bytes, int] = {}
    theirs: dict[bytes, int] = {}
    for checker, of in targets.items():
        node = nodes.get_node(state, checker)
        active = node is not None and uptime.on_duty(state, node)
        side = mine if checker in attacker_ids else theirs
        for t in of:
            checkers[t] = checkers.get(t, 0) + 1
            side[t] = side.get(t, 0) + active
    return {
        t
        for t, n in checkers.items()
        if t not in attacker_ids and uptime.quorum_reached(mine.get(t, 0), theirs.get(t, 0), n)
    }


def _unshieldable(
    state: State,
    targets: dict[bytes, list[bytes]],
    attacker_ids: set[bytes],
    dark: frozenset[bytes],
    dark_attests: bool,
) -> set[bytes]:
    """The attacker's dark nodes whose down verdict its up reports cannot block this
    epoch, every other checker on duty reporting them down."""
    checkers: dict[bytes, int] = {}
    mine: dict[bytes, int] = {}
    theirs: dict[bytes, int] = {}
    for checker, of in targets.items():
        node = nodes.get_node(state, checker)
        reports = node is not None and uptime.on_duty(state, node)
        reports = reports and (checker not in dark or dark_attests)
        side = mine if checker in attacker_ids else theirs
        for t in of:
            if t in dark:
                checkers[t] = checkers.get(t, 0) + 1
                side[t] = side.get(t, 0) + reports
    return {
        t
        for t, n in checkers.items()
        if uptime.down_at_once(theirs.get(t, 0), n)
        or uptime.quorum_reached(theirs.get(t, 0), mine.get(t, 0), n)
    }


def _says_up(
    target: bytes,
    lying: bool,
    attack: str,
    attacker_ids: set[bytes],
    captured: set[bytes],
    checker: bytes,
    refused: set[tuple[bytes, bytes]],
    dark: frozenset[bytes],
) -> bool:
    """One report's verdict under `attack`: a probe of a `dark` node fails."""
    if (checker, target) in refused:
        return False
    if lying and target in attacker_ids:
        # every liar shields its own side, dark or not (`quorum-shield`: where it holds)
        return attack != "quorum-shield" or target not in captured
    if target in dark:
        return False
    if not lying or attack in ("shield", "quorum-shield"):
        return True
    return attack == "quorum-lie" and target not in captured


def _dark(seed: str, epoch: int, attacker_ids: list[bytes], every: int) -> frozenset[bytes]:
    """The attacker's nodes dark in `epoch`: each with probability 1 / `every`, drawn from
    the history's seed alone (the same outages whatever the rules make of them)."""
    return frozenset(
        node_id
        for node_id in attacker_ids
        if int.from_bytes(sha256(b"dark %s %d " % (seed.encode(), epoch) + node_id)[:8], "big")
        % every
        == 0
    )


def _reconfirm_cooled_down(ctx: BlockContext, ids: list[bytes]) -> None:
    """Nodes whose cooldown is over confirm again (the effect of a NODE_CONFIRM)."""
    for node_id in ids:
        back = nodes.get_node(ctx.state, node_id)
        assert back is not None
        if back.status is NodeStatus.DOWN and ctx.height >= back.status_height + (
            ctx.params.down_cooldown
        ):
            nodes.set_status(ctx, back, NodeStatus.CONFIRMED, "confirmed")


@dataclass
class _Tally:
    """What the history did: tier payouts by side, false DOWNs, contradicted reports,
    honest nodes' payouts passed over."""

    attacker_ids: set[bytes]
    paid: dict[str, int] = field(default_factory=lambda: {"attacker": 0, "honest": 0})
    honest_turns: int = 0
    false_downs: int = 0
    contradicted: int = 0
    honest_forfeited: int = 0
    attacker_forfeited: int = 0
    true_downs: int = 0
    dark_now: frozenset[bytes] = frozenset()
    dark_recent: frozenset[bytes] = frozenset()

    def count(self, events: list[Event]) -> None:
        for event in events:
            if event.kind is EventKind.PAID and event.fields[2] == PayReason.TIER:
                side = "attacker" if event.fields[3] in self.attacker_ids else "honest"
                self.paid[side] += event.fields[1]
                self.honest_turns += side == "honest"
            elif event.kind is EventKind.NODE_DOWN:
                # every node is alive but the dark ones (this epoch's or, judged at this
                # epoch's start, the last one's)
                self.false_downs += event.fields[0] not in self.dark_recent
                self.true_downs += event.fields[0] in self.dark_recent
            elif event.kind is EventKind.REPORT_CONTRADICTED:
                self.contradicted += 1
            elif event.kind is EventKind.PAYOUT_FORFEITED:
                self.honest_forfeited += event.fields[0] not in self.attacker_ids
                self.attacker_forfeited += event.fields[0] in self.attacker_ids


def run(
    params: Params,
    n_nodes: int,
    attacker_pct: int,
    blocks: int,
    attack: str = "lie",
    refusals: int | None = None,
    seed: str = "economics",
    liars_first: bool = False,
    dark_every: int = 100,
    dark_attests: bool = False,
) -> dict[str, float]:
    """One history (`seed` starts its epoch seeds and the dark schedule); the attacker
    holds the first `attacker_pct` % of the nodes."""
    state: State = new_state()
    origin = sha256(seed.encode())
    state.put(META, Meta(0, 0, origin, 0, 0, origin, origin))
    attackers = n_nodes * attacker_pct // 100
    ids = _register_nodes(state, n_nodes)
    tally = _Tally(set(ids[:attackers]))
    for height in range(1, blocks + 1):
        ctx = BlockContext(state, params, height, b"", sha256(height.to_bytes(8, "big")))
        if height % params.epoch_length == 0:
            if attack in ("shield", "quorum-shield", "dark"):
                epoch = height // params.epoch_length
                dark = _dark(seed, epoch, ids[:attackers], dark_every)
                tally.dark_now, tally.dark_recent = dark, tally.dark_now | dark
            _start_epoch_and_attest(
                ctx,
                tally.attacker_ids,
                attack,
                refusals,
                liars_first,
                tally.dark_now,
                dark_attests,
            )
        if height % params.epoch_length == 1:
            _reconfirm_cooled_down(ctx, ids)
        rewards.process_rewards(ctx, PROPOSER)
        tally.count(ctx.events)
    total = tally.paid["attacker"] + tally.paid["honest"]
    honest_turns = tally.honest_turns + tally.honest_forfeited
    return {
        "node_share": 100 * attackers / n_nodes,
        "pay_share": 100 * tally.paid["attacker"] / total if total else 0.0,
        "false_downs": tally.false_downs,
        "contradicted": tally.contradicted,
        "true_downs": tally.true_downs,
        "attacker_forfeited": tally.attacker_forfeited,
        "honest_forfeit_share": 100 * tally.honest_forfeited / honest_turns
        if honest_turns
        else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--blocks", type=int, default=2_000)
    parser.add_argument("--shares", default="5,10,20,33", help="attacker %% of the nodes")
    parser.add_argument(
        "--attack",
        choices=("lie", "quorum-lie", "refuse", "shield", "quorum-shield", "dark"),
        default="lie",
    )
    parser.add_argument(
        "--refusals",
        type=int,
        default=None,
        help="refuse: at most this many refusals per honest checker (default: no limit)",
    )
    parser.add_argument(
        "--dark-every",
        type=int,
        default=100,
        help="the shield attacks, dark: each attacker node is dark one epoch in this many",
    )
    parser.add_argument(
        "--dark-attests",
        action="store_true",
        help="the shield attacks, dark: a dark node's owner signs its attestations elsewhere",
    )
    parser.add_argument(
        "--seed", default="economics", help="starts the history's epoch seeds (one draw each)"
    )
    parser.add_argument(
        "--liars-first",
        action="store_true",
        help="the attacker's attestations before the honest ones in each epoch (rev25e)",
    )
    args = parser.parse_args(argv)
    params = make_params()
    print(
        f"{args.nodes} Cumulus nodes, {args.blocks} blocks, checkers_per_node="
        f"{params.checkers_per_node}, epoch_length={params.epoch_length}, "
        f"down_cooldown={params.down_cooldown}, attack={args.attack}"
        + (f", refusals={args.refusals}" if args.attack == "refuse" else "")
        + (
            f", dark_every={args.dark_every}" + (", dark attests" if args.dark_attests else "")
            if args.attack in ("shield", "quorum-shield", "dark")
            else ""
        )
        + f", seed={args.seed}"
        + (", liars first" if args.liars_first else "")
    )
    ok = True
    for pct in (int(s) for s in args.shares.split(",")):
        started = time.perf_counter()
        r = run(
            params,
            args.nodes,
            pct,
            args.blocks,
            args.attack,
            args.refusals,
            args.seed,
            args.liars_first,
            args.dark_every,
            args.dark_attests,
        )
        within = r["pay_share"] <= r["node_share"] + 1
        ok &= within
        print(
            f"attacker {r['node_share']:5.1f} % of nodes -> {r['pay_share']:5.1f} % of payouts"
            f" ({'within' if within else 'OVER'} fair share + 1 point); "
            f"false DOWNs {int(r['false_downs'])}, reports contradicted "
            f"{int(r['contradicted'])}, honest turns forfeited {r['honest_forfeit_share']:.1f} %"
            + (
                f", dark DOWNs {int(r['true_downs'])}, attacker payouts forfeited "
                f"{int(r['attacker_forfeited'])}"
                if args.attack in ("shield", "quorum-shield", "dark")
                else ""
            )
            + f" [{time.perf_counter() - started:.1f} s]"
        )
    print("every share within fair share + 1 point" if ok else "some share over its fair share")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
