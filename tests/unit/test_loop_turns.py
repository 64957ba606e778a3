"""FLUXCHAIN_LOOP_TURNS (fluxchain/node/profiling.py): every callback counted, the long ones
listed, and the list bounded, so that a node left profiling does not grow without end."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from fluxchain.node import profiling


def test_long_callbacks_are_listed_and_only_the_newest_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profiling, "LONG_TURNS_KEPT", 3)

    def held(index: int) -> None:
        time.sleep(profiling.LONG_TURN_S * 2)  # a long turn: at least this long, always

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        for index in range(5):
            loop.call_soon(held, index)
        await asyncio.sleep(profiling.LONG_TURN_S * 20)

    with profiling.loop_turns(str(tmp_path)):
        asyncio.run(scenario())
    report = json.loads((tmp_path / f"turns-{os.getpid()}.json").read_text())
    assert report["callbacks"] >= 5
    assert len(report["long"]) == 3
    assert all(took >= profiling.LONG_TURN_S for _, took, _, _ in report["long"])
    assert all("held" in what for _, _, _, what in report["long"])
