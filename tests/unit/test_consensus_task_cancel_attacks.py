"""Review of the consensus task's watchdog (rev11): ends of the consensus task that the
node is never told of, so that it serves its API and gossip on without ever voting."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.engine import Engine
from consensus.events import Input, Output, TimeoutFired
from fluxchain.core.errors import FluxError, Reason
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from tests.support.chain import NoGossip, node_hot_key, open_chain
from tests.support.wait import wait_until_async


def test_a_cancelled_error_out_of_one_input_ends_consensus_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asyncio.CancelledError` is a BaseException: a synchronous step that raises it (the
    `result()` of a cancelled future read by a callback, a bug) passes the loop's
    `except Exception`, ends the task as *cancelled*, and `_ended` takes every cancelled
    task for a stop. Nothing called `Driver.stop`, yet the task is gone and the node is
    not told: the validator looks alive and never votes again. The node must be told
    (`consensus_stopped`), or the input's failure logged and consensus go on, as for
    any other exception of one input."""
    chain = open_chain(tmp_path / "home")
    told: list[FluxError] = []
    real = Engine.step

    def step(self: Engine, item: Input) -> Iterator[Output] | list[Output]:
        if isinstance(item, TimeoutFired):
            raise asyncio.CancelledError  # what fut.result() of a cancelled future raises
        return real(self, item)

    monkeypatch.setattr(Engine, "step", step)

    async def scenario() -> bool:
        driver = Driver(
            chain, NodeService(chain), node_hot_key(0), None, NoGossip(), on_failure=told.append
        )
        driver.start()
        try:
            await wait_until_async(lambda: driver.engine.height == 1, 10, "the first height")
            driver.submit(TimeoutFired(1, 0, driver.engine.step_))  # its step raises
            await wait_until_async(driver._inbox.empty, 10, "the input taken")
            task = driver._task
            assert task is not None
            # Either the task runs on, or it ended (and then the node must have been told).
            await asyncio.wait({task}, timeout=2)
            for _ in range(10):
                await asyncio.sleep(0)  # its done callbacks run
            return not task.done()
        finally:
            await driver.stop()

    try:
        running = asyncio.run(scenario())
        assert running or [error.reason for error in told] == [Reason.CONSENSUS_STOPPED], (
            "the consensus task ended (cancelled by no stop) and the node was not told"
        )
    finally:
        chain.close()
