"""bench/wan_timeline.py: the per-height timeline read from the nodes' info logs."""

from __future__ import annotations

from pathlib import Path

from bench.wan_timeline import read

BLOCK = "block=ed2ab71d3599"


def line(ms: int, text: str, level: str = "INFO", logger: str = "fluxchain.consensus") -> str:
    """A log line as `fluxchain run` writes it (cli.LOG_FORMAT), at 07:14:50 + `ms`."""
    return f"2026-12-06 07:14:{50 + ms // 1000:02d},{ms % 1000:03d} {level:<7} {logger} {text}"


V00 = [
    line(0, "height started height=17"),
    line(100, f"proposal built height=17 round=0 txs=96 dropped=0 {BLOCK}"),
    line(110, f"vote signed type=prevote height=17 round=0 {BLOCK}"),
    line(600, f"vote signed type=precommit height=17 round=0 {BLOCK}"),
    line(1000, "block committed height=17 hash=ed2ab71d35996245 txs=96", logger="fluxchain.chain"),
]
V01 = [
    line(300, f"proposal checked height=17 {BLOCK} valid=True timely=True"),
    line(320, f"vote signed type=prevote height=17 round=0 {BLOCK}"),
    line(
        500,
        "event=peer_disconnected peer=0216fea8 direction=inbound reason=slow_peer",
        logger="fluxchain.p2p",
    ),
    line(
        700,
        "compact proposal txs not fetched height=17 round=0 lacked=3 peer=03a8: timeout; "
        "waiting for the full block",
        "WARNING",
        "fluxchain.node",
    ),
    line(800, "consensus stalled height=17 round=0 step=precommit for 3.0s", "WARNING"),
    line(900, f"vote signed type=precommit height=17 round=1 {BLOCK}"),
    line(1400, "block committed height=17 hash=ed2ab71d35996245 txs=96", logger="fluxchain.chain"),
]


def test_a_height_is_followed_from_its_proposal_to_every_commit(tmp_path: Path) -> None:
    for name, lines in (("v00", V00), ("v01", V01)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "node.log").write_text("\n".join(lines) + "\n")
    height = read(tmp_path)[17]
    assert height.built is not None and height.txs == 96

    def after(times: list[float]) -> list[int]:
        assert height.built is not None
        return sorted(round(1000 * (t - height.built)) for t in times)

    assert after(height.committed) == [900, 1300]
    assert after(height.checked) == [200]
    assert after(height.prevote) == [10, 220]
    assert after(height.precommit) == [500]  # v01's round-1 precommit is not round 0's
    assert height.late_rounds == {"v01"}
    assert dict(height.warnings) == {"fetch_failed": 1, "full_block": 1, "stall:precommit": 1}
    assert height.slow_closes == 1
