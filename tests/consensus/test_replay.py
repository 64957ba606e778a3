"""Replays one seed of the simulation: FLUX_SIM_SEED=<seed> pytest tests/consensus -k replay.

Without FLUX_SIM_SEED this module defines no test at all.
"""

from __future__ import annotations

import os

from tests.consensus.sim import run_seed

if "FLUX_SIM_SEED" in os.environ:

    def test_replay() -> None:
        seed = int(os.environ["FLUX_SIM_SEED"])
        heights = int(os.environ.get("FLUX_SIM_HEIGHTS", "50"))
        result = run_seed(seed, heights)
        print(f"seed {seed}: {result.events} events, faults {dict(result.faults)}")
