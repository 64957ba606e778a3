"""A byzantine validator in a real devnet (issue 17): one of four validators misbehaves in
every way it can for a minute, and the chain neither halts, forks nor starves.

Validators 0-2 are honest; validator 3 runs tests/integration/byzantine.py (hostile
proposals, equivocation, sybils carrying junk proposals, junk votes and junk duty floods);
node 4 is a confirmed Cumulus FluxNode outside the validator set, whose confirmations must
keep landing. The attacker's choices come from SEED (FLUX_BYZANTINE_SEED overrides it).
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fluxchain.genesis_builder import devnet_params
from tests.integration.byzantine import PROPOSAL_ATTACKS, SYBIL_ATTACKS
from tests.integration.harness import Devnet
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("FLUX_BYZANTINE_SEED", "17"))
ATTACK_S = 60
CONFIRM_WINDOW = 15
# Equivocation starts late (about 35 s in), so that the hostile proposals (which end when
# the jailed offender leaves the validator set) run for most of the minute, and the
# FluxNode stays outside the set (it takes the offender's seat once the offender is
# jailed) for at least two whole confirm windows.
EQUIVOCATE_FROM = 2 * CONFIRM_WINDOW + 5
HONEST = [0, 1, 2]
BYZANTINE = 3
FLUXNODE = 4


def test_a_byzantine_validator_cannot_halt_fork_or_starve_the_chain(tmp_path: Path) -> None:
    params = replace(devnet_params(), confirm_window=CONFIRM_WINDOW, max_validators=4)
    devnet = Devnet(tmp_path, params=params, fluxnodes=1)
    entry = (
        "tests.integration.byzantine",
        "--seed",
        str(SEED),
        "--equivocate-from",
        str(EQUIVOCATE_FROM),
    )
    everyone_honest = [*HONEST, FLUXNODE]
    seed_note = f"[FLUX_BYZANTINE_SEED={SEED}]"
    for i in everyone_honest:
        devnet.start(i)
    devnet.start(BYZANTINE, entry)
    try:
        devnet.wait_height(HONEST, 1, timeout=40)
        first = max(devnet.height(i) for i in HONEST)
        started = time.monotonic()
        offender_key = devnet.genesis.nodes[BYZANTINE].node_key.hex()
        # The attack lasts ATTACK_S, and ends with the offender jailed; meanwhile the
        # honest nodes must keep committing (measured below).
        wait_until(
            lambda: (
                time.monotonic() - started >= ATTACK_S
                and node_with_key(devnet, offender_key)["status"] == "jailed"
            ),
            ATTACK_S + 30,
            f"the attack's minute, and the offender jailed {seed_note}",
            nodes=devnet,
        )
        assert devnet.running() == list(range(5)), f"a node died {seed_note}"
        top = min(devnet.height(i) for i in everyone_honest)
        devnet.assert_agree(everyone_honest, top)
        blocks = [devnet.get(0, f"/blocks/{h}") for h in range(1, top + 1)]

        # Liveness: the median block interval over the attack is at most twice the normal.
        times = [b["header"]["time_ms"] for b in blocks[first - 1 :]]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        median = statistics.median(gaps)
        block_time = params.block_time_ms
        print(
            f"{seed_note} heights {first}..{top}: median interval {median} ms, "
            f"max {max(gaps)} ms (block time {block_time} ms)"
        )
        assert median <= 2 * block_time, (median, gaps, seed_note)

        # The attacker really attacked, in every way, and none of its blocks was committed.
        log = (devnet.homes[BYZANTINE] / "node.log").read_text(errors="replace")
        attacks = Counter(re.findall(r"byzantine attack=(\w+)", log))
        print(f"{seed_note} attacks: {dict(attacks)}")
        assert set(attacks) >= {*PROPOSAL_ATTACKS, *SYBIL_ATTACKS, "equivocation"}, (
            attacks,
            seed_note,
        )
        assert attacks["duty_flood"] >= 3, attacks  # thousands of junk duties
        hostile = set(re.findall(r"byzantine attack=\w+ height=\d+ round=\d+ block=(\w+)", log))
        committed = {b["header"]["hash"] for b in blocks}
        assert not hostile & committed, seed_note

        # The offender is slashed and jailed, by its own equivocation evidence.
        offender = node_with_key(devnet, offender_key)
        assert offender["status"] == "jailed", (offender, seed_note)
        assert offender["collateral"] < params.stratus.collateral, offender
        evidence = [
            b["header"]["height"]
            for b in blocks
            for tx in b["txs"]
            if tx["kind"] == "evidence" and tx["payload"]["vote_a"]["validator"] == offender_key
        ]
        assert evidence, f"no evidence against the offender was committed {seed_note}"

        # The FluxNode outside the validator set confirmed in every window of the attack.
        fluxnode_key = devnet.genesis.nodes[FLUXNODE].node_key.hex()
        confirmed_at = [
            b["header"]["height"]
            for b in blocks
            for tx in b["txs"]
            if tx["kind"] == "node_confirm" and tx["sender_pubkey"] == fluxnode_key
        ]
        windows = range(first // CONFIRM_WINDOW, top // CONFIRM_WINDOW)
        # In the windows that ended before the slash, the FluxNode was outside the set.
        before_slash = [w for w in windows if (w + 1) * CONFIRM_WINDOW <= evidence[0]]
        assert len(before_slash) >= 2, (first, evidence, seed_note)
        missed = [w for w in windows if not any(h // CONFIRM_WINDOW == w for h in confirmed_at)]
        assert not missed, (missed, confirmed_at, seed_note)
        assert node_with_key(devnet, fluxnode_key)["status"] == "confirmed"
    finally:
        devnet.close()


def node_with_key(devnet: Devnet, node_key: str) -> dict[str, Any]:
    node: dict[str, Any] = devnet.get(0, f"/nodes/{node_key}")
    return node
