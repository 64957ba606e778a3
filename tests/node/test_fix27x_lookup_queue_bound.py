"""fix27x: report pages' name lookups wait in a bounded queue (`LookupPool`).

Past `max_queued` lookups waiting for a thread, a page answers "name lookup timed out" at
once rather than queue more; a lookup cancelled while queued leaves the count."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

from fluxchain.gateway.service import LookupPool, LookupQueueFullError
from fluxchain.node import app_reports
from fluxchain.node.app_reports import pin_endpoint
from tests.node.test_probe27_health_proof import DEVNET


def test_fix27x_report_lookups_queue_is_bounded(monkeypatch: Any) -> None:
    assert app_reports._LOOKUPS.max_queued == app_reports.MAX_QUEUED_LOOKUPS
    real = socket.getaddrinfo
    gate = threading.Event()

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hang.test":
            gate.wait(30)
        return real("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    pool = LookupPool(1, 2, "test-lookup")

    async def scene() -> None:
        # One lookup hangs on the pool's thread, two wait for it: the queue is full.
        waiting = [
            asyncio.create_task(pin_endpoint("hang.test:80", DEVNET, pool, wait_s=30))
            for _ in range(3)
        ]
        deadline = time.monotonic() + 10
        while pool.queued < 2:
            assert time.monotonic() < deadline, f"queued {pool.queued} of 2"
            await asyncio.sleep(0.01)
        started = time.monotonic()
        refused = await pin_endpoint("hang.test:80", DEVNET, pool, wait_s=30)
        assert refused == "name lookup timed out"
        assert time.monotonic() - started < 1.0, "a full queue's refusal waited"
        gate.set()
        answers = await asyncio.gather(*waiting)
        assert all(isinstance(answer, tuple) for answer in answers), answers

    try:
        asyncio.run(scene())
        assert pool.queued == 0
        # A lookup cancelled while queued leaves the count.
        gate.clear()
        running = threading.Event()

        def hang() -> None:
            running.set()
            gate.wait(30)

        hanging = pool.submit(hang)
        assert running.wait(10) and pool.queued == 0
        queued = pool.submit(lambda: None)
        assert pool.queued == 1
        assert queued.cancel() and pool.queued == 0
        fill = [pool.submit(lambda: None) for _ in range(2)]
        try:
            pool.submit(lambda: None)
            raise AssertionError("a full queue took one more lookup")
        except LookupQueueFullError:
            pass
        gate.set()
        hanging.result(timeout=30)
        for future in fill:
            future.result(timeout=30)
        assert pool.queued == 0
    finally:
        gate.set()
        pool.shutdown(wait=True)
