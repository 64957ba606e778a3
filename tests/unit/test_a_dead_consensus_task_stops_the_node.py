"""Attack surface (issue 24): a validator that silently stopped voting.

Before, an exception of the engine's step at the first height (or anything else that ended
the driver's task) ended the consensus task while the node kept serving its API and
gossip: it looked alive, answered /status, relayed txs, and never voted again, and nothing
said so but one traceback in the log when the node was stopped. Now any end of the
consensus task but a stop stops the node loudly: logged, `Node.run` raises
ConsensusError(consensus_stopped), and `fluxchain run` exits 1 with the reason. An
exception of one input later on is still that input's failure, logged, and consensus
goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from consensus.engine import Engine
from consensus.errors import ConsensusError
from consensus.events import Input, NewHeight, Output, TimeoutFired
from fluxchain.cli import main
from fluxchain.core.errors import FluxError, Reason
from fluxchain.node.driver import Driver
from fluxchain.node.home import NodeConfig, init_home
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import NoGossip, devnet_genesis, node_hot_key, open_chain
from tests.support.wait import wait_until_async


class EngineBugError(Exception):
    """What a bug in the engine's step raises."""


def _failing_step(fail_on: type, raises: type[BaseException] = EngineBugError) -> object:
    real = Engine.step

    def step(self: Engine, item: Input) -> Iterator[Output] | list[Output]:
        if isinstance(item, fail_on):
            raise raises(f"injected into the step of {type(item).__name__}")
        return real(self, item)

    return step


def test_an_engine_exception_at_the_first_height_stops_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Engine, "step", _failing_step(NewHeight))
    home = init_home(
        tmp_path / "home",
        devnet_genesis(),
        NodeConfig(moniker="v0", api_port=0, p2p_port=0, duties=False),
    )
    node = Node(home)

    async def scenario() -> None:
        running = asyncio.create_task(node.run())
        with pytest.raises(ConsensusError) as stopped:
            await asyncio.wait_for(running, 30)
        assert stopped.value.reason is Reason.CONSENSUS_STOPPED
        assert "EngineBugError" in stopped.value.message

    asyncio.run(scenario())


def test_fluxchain_run_exits_non_zero_when_its_consensus_task_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Engine, "step", _failing_step(NewHeight))
    home = tmp_path / "home"
    init_home(home, devnet_genesis(), NodeConfig(moniker="v0", api_port=0, p2p_port=0))
    result = CliRunner().invoke(main, ["run", "--home", str(home)])
    assert result.exit_code == 1, result.output
    assert "consensus_stopped" in result.output


class BrokenInbox:
    """An inbox whose `get` fails: the task dies outside every input's handling."""

    def qsize(self) -> int:
        return 0

    def put_nowait(self, item: object) -> None:
        pass

    async def get(self) -> object:
        raise RuntimeError("the inbox broke")


def test_any_end_of_the_consensus_task_tells_the_node(tmp_path: Path) -> None:
    """Whatever ends the task (here an exception outside any input's handling, which no
    `except` of the loop sees), the node is told, with the reason and what ended it."""
    chain = open_chain(tmp_path / "home")
    told: list[FluxError] = []

    async def scenario() -> None:
        driver = Driver(
            chain, NodeService(chain), node_hot_key(0), None, NoGossip(), on_failure=told.append
        )
        driver._inbox = BrokenInbox()  # type: ignore[assignment]
        driver.start()
        try:
            await wait_until_async(lambda: bool(told), 10, "the node to be told")
            assert driver.engine.height == 1  # it had started the height, then died
        finally:
            await driver.stop()

    try:
        asyncio.run(scenario())
        assert [error.reason for error in told] == [Reason.CONSENSUS_STOPPED]
        assert "the inbox broke" in told[0].message
    finally:
        chain.close()


def _still_running_after_one_failing_timeout(
    chain: Chain, told: list[FluxError], settle_s: float
) -> bool:
    """Run a driver to its first height and feed it one TimeoutFired (whose step the test
    made raise); give its task `settle_s` to end and its done callbacks a few turns.
    Whether the consensus task still runs."""

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
            if settle_s:
                await asyncio.wait({task}, timeout=settle_s)
            for _ in range(10):
                await asyncio.sleep(0)  # its done callbacks run
            return not task.done()
        finally:
            await driver.stop()

    return asyncio.run(scenario())


def test_an_exception_of_one_later_input_does_not_stop_consensus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of it: past the first height's start, a failing input is that
    input's failure (logged), and the driver goes on deciding."""
    chain = open_chain(tmp_path / "home")
    told: list[FluxError] = []
    monkeypatch.setattr(Engine, "step", _failing_step(TimeoutFired))
    try:
        assert _still_running_after_one_failing_timeout(chain, told, settle_s=0)
        assert told == []
    finally:
        chain.close()


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
    # What fut.result() of a cancelled future raises, out of one input's step.
    monkeypatch.setattr(Engine, "step", _failing_step(TimeoutFired, asyncio.CancelledError))
    try:
        running = _still_running_after_one_failing_timeout(chain, told, settle_s=2)
        assert running or [error.reason for error in told] == [Reason.CONSENSUS_STOPPED], (
            "the consensus task ended (cancelled by no stop) and the node was not told"
        )
    finally:
        chain.close()
