"""Consensus frames per height on an idle devnet (issue 22, wan23v).

An idle WAN testnet node spent most of its CPU on consensus frames it did not need: each
vote reached it ~5 times (its signer's copy and 4 random relays), peers sent it the
precommits of a height it had already committed while it waited out the block interval,
a proposal that came during that wait was never announced as held (so every peer sent
the full block, three times), and a STATUS went to every peer after every commit although
the next ROUND_STATE says the same. These tests count the frames of a real devnet, as an
operator reads them from /metrics.
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


def test_an_idle_devnet_receives_each_vote_about_once_and_sends_no_full_proposal(
    net: Devnet,
) -> None:
    """Over a few idle heights of a 4-validator full mesh: each node receives each vote of
    the others about once (its signer's copy; before, every receiver relayed it on to the
    others, 3 copies each), no full PROPOSAL frame crosses a link (compact proposals
    rebuild from an empty mempool; before, a proposal taken during a node's commit wait
    was never announced as held, and peers sent its block), and STATUS frames are fewer
    than one per node per height (before: one to each of 3 peers every commit)."""
    start = max(net.height(i) for i in ALL)
    net.wait_height(ALL, start + 1, timeout=30)
    sent_before, received_before = _frames(net, "sent"), _frames(net, "received")
    first = min(net.height(i) for i in ALL)
    net.wait_height(ALL, first + HEIGHTS, timeout=60)
    sent, received = _frames(net, "sent"), _frames(net, "received")
    heights = min(net.height(i) for i in ALL) - first

    def delta(now: dict[str, float], before: dict[str, float], kind: str) -> float:
        return now.get(kind, 0.0) - before.get(kind, 0.0)

    # Round 0 of each height: 4 validators x (prevote, precommit), each to 3 receivers.
    vote_deliveries = heights * len(ALL) * 2 * (len(ALL) - 1)
    votes_received = delta(received, received_before, "VOTE")
    summary = (
        f"heights={heights} VOTE received={votes_received:.0f} (deliveries {vote_deliveries}) "
        f"PROPOSAL sent={delta(sent, sent_before, 'PROPOSAL'):.0f} "
        f"STATUS sent={delta(sent, sent_before, 'STATUS'):.0f}"
    )
    assert votes_received <= 1.5 * vote_deliveries, summary
    assert delta(sent, sent_before, "PROPOSAL") == 0, summary
    assert delta(sent, sent_before, "STATUS") < heights * len(ALL), summary
