"""Thousands of simulation seeds, for `make soak` (FLUX_SOAK_SEEDS=<count>): each seed runs
with the simulator's idealised gossip and again with the node's real gossip (per-peer round
state, relay rules and seen-cache), both with crash-restarts through the node's restart path.

Without FLUX_SOAK_SEEDS this module defines no test at all (nothing is collected, nothing
is skipped). Soak seeds start at 1,000,000 so that they never repeat the CI seeds.
"""

from __future__ import annotations

import os

import pytest

from tests.consensus.sim import run_real_gossip_seed, run_seed

SOAK_FIRST_SEED = 1_000_000

if os.environ.get("FLUX_SOAK_SEEDS"):
    SOAK_SEEDS = range(SOAK_FIRST_SEED, SOAK_FIRST_SEED + int(os.environ["FLUX_SOAK_SEEDS"]))

    @pytest.mark.parametrize("seed", SOAK_SEEDS)
    def test_soak(seed: int) -> None:
        heights = int(os.environ.get("FLUX_SIM_HEIGHTS", "50"))
        run_seed(seed, heights)

    @pytest.mark.parametrize("seed", SOAK_SEEDS)
    def test_soak_real_gossip(seed: int) -> None:
        heights = int(os.environ.get("FLUX_SIM_HEIGHTS", "20"))
        run_real_gossip_seed(seed, heights)
