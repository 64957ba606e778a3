"""Review of the node's stop (rev11): a normal stop must exit 0 and log no error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fluxchain.node.home import NodeConfig, init_home
from fluxchain.node.node import Node
from tests.support.chain import devnet_genesis, node_hot_key
from tests.support.wait import wait_until_async


def test_a_stop_right_after_a_commit_runs_the_status_timer_on_a_closed_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each commit schedules `Node._send_status` STATUS_EVERY_S (0.2 s) later, and
    `Node.stop` never cancels it. A stop takes ~20 ms, so a SIGTERM within 0.2 s of a
    commit (a block a second: one stop in five) closes the chain first; the timer then
    reads the closed LevelDB and asyncio logs `ERROR Exception in callback
    Node._send_status()` with `RuntimeError: Database is closed` (seen from `fluxchain
    run` and SIGTERM). Here the stop is asked for right after the commit of height 2, as
    an operator's SIGTERM can land. Nothing of a stopped node may run on after its stop."""
    home = init_home(
        tmp_path / "home",
        devnet_genesis(validators=1),
        NodeConfig(moniker="v0", api_port=0, p2p_port=0),
        node_hot_key(0),  # the one validator: it commits alone
    )
    node = Node(home)
    real_on_commit = Node._on_commit

    def on_commit(self: Node, height: int) -> None:
        real_on_commit(self, height)
        if height == 2:
            self.request_stop()  # a SIGTERM just after this commit

    monkeypatch.setattr(Node, "_on_commit", on_commit)
    errors: list[dict[str, Any]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        await asyncio.wait_for(node.run(), 60)  # no error raised: a normal stop

        def nothing_of_the_node_pending() -> bool:
            scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
            return not any(
                getattr(handle._callback, "__self__", None) is node  # type: ignore[attr-defined]
                for handle in scheduled
                if not handle.cancelled()
            )

        # A timer of the node left behind fires (or was cancelled) within its 0.2 s.
        await wait_until_async(nothing_of_the_node_pending, 5, "the node's timers to end")

    asyncio.run(scenario())
    assert [context.get("message") for context in errors] == [], [
        repr(context.get("exception")) for context in errors
    ]
