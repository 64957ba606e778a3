"""The p2p layer's asyncio tasks: every one is tracked, so that `stop` can end them all.

Tasks that start new work (the maintenance loop, dials) are kept apart as *starters*:
shutdown cancels them first, so nothing new begins while the rest drains.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("fluxchain.p2p")


class Tasks:
    """The tasks of one `Network`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starters: set[asyncio.Task[Any]] = set()

    def spawn(
        self, coro: Coroutine[Any, Any, Any], name: str, *, starter: bool = False
    ) -> asyncio.Task[Any]:
        """Run `coro` as a tracked task named `p2p-<name>`."""
        task = asyncio.get_running_loop().create_task(coro, name=f"p2p-{name}")
        self._tasks.add(task)
        if starter:
            self._starters.add(task)
        task.add_done_callback(self._done)
        return task

    def cancel_starters(self) -> None:
        """Cancel the tasks that would start new work (shutdown's first step)."""
        for task in self._starters:
            task.cancel()

    async def drain(self, grace: float) -> None:
        """Let tasks finish for `grace` seconds, then cancel what is left and await it."""
        pending = {task for task in self._tasks if task is not asyncio.current_task()}
        if pending and grace > 0:
            _done, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._starters.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Every task catches what it expects; anything reaching here is a bug.
            log.error("event=p2p_task_failed task=%s error=%r", task.get_name(), task.exception())
