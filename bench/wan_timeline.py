"""A per-height timeline of a WAN testnet run, from the nodes' info logs.

    python -m bench.wan --loads 200 --seconds 20 --keep --log-level info
    python -m bench.wan_timeline /tmp/flux-bench-wan-XXXX [--from-height 10]

For each height: its round-0 proposer's `proposal built` time (t = 0), then across the
validators the median and the slowest time of each step (`proposal checked`, prevote
and precommit signed, `block committed`), in ms after t; the txs of the block; how many
nodes went past round 0; the warnings of the height (stalls, failed tx fetches,
full-block fallbacks) and the links closed as slow during it. An operator follows one
block the same way, by `grep height=N node.log`.
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+)\s+(\S+) (.*)$")
_HEIGHT = re.compile(r"height=(\d+)")
_ROUND = re.compile(r"round=(\d+)")
_TXS = re.compile(r"txs=(\d+)")


@dataclass
class Height:
    """What the logs say of one height, times in seconds since the epoch."""

    built: float | None = None
    txs: int | None = None
    checked: list[float] = field(default_factory=list)
    prevote: list[float] = field(default_factory=list)
    precommit: list[float] = field(default_factory=list)
    committed: list[float] = field(default_factory=list)
    late_rounds: set[str] = field(default_factory=set)
    warnings: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    slow_closes: int = 0


def _time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


_STEPS = (
    ("proposal checked", "checked", False),
    ("vote signed type=prevote", "prevote", True),
    ("vote signed type=precommit", "precommit", True),
    ("block committed", "committed", False),
)
_WARNINGS = (("txs not fetched", "fetch_failed"), ("waiting for the full block", "full_block"))


def _note(height: Height, node: str, when: float, text: str) -> None:
    """One log line of `node` that names this height."""
    r = _ROUND.search(text)
    round_ = int(r.group(1)) if r else 0
    if round_ > 0 and ("vote signed" in text or "proposal built" in text):
        height.late_rounds.add(node)
    if "proposal built" in text and round_ == 0:
        height.built = when
        t = _TXS.search(text)
        height.txs = int(t.group(1)) if t else None
        return
    for marker, step, round_zero_only in _STEPS:
        if marker in text and not (round_zero_only and round_ > 0):
            getattr(height, step).append(when)
            return
    if "consensus stalled" in text:
        step_name = re.search(r"step=(\w+)", text)
        height.warnings["stall:" + (step_name.group(1) if step_name else "?")] += 1
        return
    for marker, name in _WARNINGS:
        if marker in text:
            height.warnings[name] += 1


def read(root: Path) -> dict[int, Height]:
    """Every validator's and full node's log under `root`, by height."""
    heights: dict[int, Height] = defaultdict(Height)
    closes: list[float] = []
    for log in sorted(root.glob("[vf]*/node.log")):
        for line in log.read_text(errors="replace").splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            stamp, _level, _logger, text = match.groups()
            if "reason=slow_peer" in text and "event=peer_disconnected" in text:
                closes.append(_time(stamp))
                continue
            h = _HEIGHT.search(text)
            if h is not None:
                _note(heights[int(h.group(1))], log.parent.name, _time(stamp), text)
    for when in closes:
        for height in heights.values():
            end = max(height.committed, default=0.0)
            if height.built is not None and height.built <= when <= end:
                height.slow_closes += 1
    return heights


def _ms(times: list[float], origin: float) -> str:
    if not times:
        return "-/-"
    rel = sorted(1000 * (t - origin) for t in times)
    return f"{statistics.median(rel):.0f}/{rel[-1]:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a kept bench.wan run (--keep)")
    parser.add_argument("--from-height", type=int, default=1)
    args = parser.parse_args()
    heights = read(args.root)
    print(
        "height txs checked prevote precommit committed nodes_past_round0 "
        "slow_closes warnings  (ms after the proposal was built: median/slowest node)"
    )
    for number in sorted(heights):
        height = heights[number]
        if number < args.from_height or height.built is None:
            continue
        warnings = ",".join(f"{k}:{v}" for k, v in sorted(height.warnings.items())) or "-"
        print(
            f"{number} {height.txs} {_ms(height.checked, height.built)} "
            f"{_ms(height.prevote, height.built)} {_ms(height.precommit, height.built)} "
            f"{_ms(height.committed, height.built)} {len(height.late_rounds)} "
            f"{height.slow_closes} {warnings}"
        )


if __name__ == "__main__":
    main()
