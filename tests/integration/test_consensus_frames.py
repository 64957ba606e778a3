"""Consensus frames per height on an idle devnet (issue 22, wan23v).

An idle WAN testnet node spent most of its CPU on consensus frames it did not need; two
of them show on a loopback devnet: a proposal that came during a node's commit wait was
never announced as held (so peers sent it the full block), and a STATUS went to every
peer after every commit although the next ROUND_STATE says the same. Counted as an
operator reads them, from /metrics.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Devnet

pytestmark = pytest.mark.slow
ALL = [0, 1, 2, 3]
HEIGHTS = 6  # measured heights: enough that the heartbeats and the first height are noise


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    devnet = Devnet(tmp_path)
    devnet.start_all()
    try:
        devnet.wait_height(ALL, 2, timeout=40)
        yield devnet
    finally:
        devnet.close()


def _frames(net: Devnet, direction: str) -> dict[str, float]:
    """Frames of every node by kind, summed: `fluxchain_p2p_frames_total` from /metrics."""
    totals: dict[str, float] = {}
    prefix = f'fluxchain_p2p_frames_total{{direction="{direction}",kind="'
    for i in ALL:
        with urllib.request.urlopen(net.url(i) + "/metrics", timeout=3) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith(prefix):
                labels, value = line.rsplit(" ", 1)
                kind = labels[len(prefix) : -2]
                totals[kind] = totals.get(kind, 0.0) + float(value)
    return totals


def test_an_idle_devnet_sends_no_full_proposal_and_no_status_per_commit(net: Devnet) -> None:
    """Over a few idle heights of a 4-validator full mesh, no full PROPOSAL frame crosses a
    link (compact proposals rebuild from an empty mempool; before, a proposal taken during
    a node's commit wait was never announced as held, and peers sent it the block), and
    STATUS frames are fewer than one per node per height (before: one to each of 3 peers
    after every commit, although the next ROUND_STATE tells the same height)."""
    start = max(net.height(i) for i in ALL)
    net.wait_height(ALL, start + 1, timeout=30)
    before = _frames(net, "sent")
    first = min(net.height(i) for i in ALL)
    net.wait_height(ALL, first + HEIGHTS, timeout=60)
    after = _frames(net, "sent")
    heights = min(net.height(i) for i in ALL) - first
    sent = {kind: after[kind] - before.get(kind, 0.0) for kind in after}
    summary = f"frames sent over {heights} heights by kind: {sent}"
    assert sent.get("PROPOSAL", 0.0) == 0, summary
    assert sent.get("STATUS", 0.0) < heights * len(ALL), summary
