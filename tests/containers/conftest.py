"""Fixtures of the container e2e suite: one compose devnet for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.containers.compose import NODES, ComposeDevnet

START_DEADLINE_S = 120.0  # containers up and two blocks confirmed everywhere
# A validator reported down in the first epochs (probed before it was up) confirms itself
# again at the latest in the next confirm window (60 blocks on the devnet), and joins the
# validator set at the epoch after.
SETTLE_DEADLINE_S = 150.0


@pytest.fixture(scope="session")
def devnet() -> Iterator[ComposeDevnet]:
    """The compose devnet, up and confirming blocks; always removed with its volumes."""
    net = ComposeDevnet.from_env()
    try:
        net.up()
        net.wait_height(NODES, 2, timeout=START_DEADLINE_S)
        net.wait_settled(SETTLE_DEADLINE_S)
        yield net
    finally:
        net.down()
