"""rev27x: a report page that gave up on its name lookup leaves the lookup queued.

Attack (a client flooding the API, node operators with a tarpit nameserver): an app's
host registered by a name whose lookups take longer than RESOLVE_TIMEOUT_S (the system
resolver gives up after a few seconds). A client asks that app's report page many times
at once. Each page waits at most 1 s for its lookup (`pin_endpoint(wait_s=)`), then
answers "name lookup timed out".

Before probe27, a page that timed out cancelled its lookup, and one still queued behind
the 4 report-lookup threads (`app_reports._LOOKUPS`) was dropped. Now
`first_allowed_address(timeout=)` waits on `started` before it awaits the lookup, so the
page's timeout cancels only that wait: the lookup stays in the executor's (unbounded)
queue and runs later, holding a thread for the tarpit's whole delay. One burst of N pages
keeps all 4 threads busy for N/4 tarpit delays after the flood stopped.

Now: once the tarpit lookups that were running finish, an honest host's report page
(a name that answers at once) still times out, queued behind the flood's leftovers.
Should: a page that gave up takes its queued lookup with it; the honest page answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from fluxchain.node import app_reports
from fluxchain.node.app_reports import pin_endpoint
from tests.node.test_probe27_health_proof import DEVNET

TARPIT_S = 2 * app_reports.RESOLVE_TIMEOUT_S  # the resolver's give-up time, past a page's
FLOOD = 10 * app_reports.MAX_LOOKUPS


def test_rev27x_report_pages_that_timed_out_leave_no_lookup_queued(monkeypatch: Any) -> None:
    real = socket.getaddrinfo
    released = threading.Event()  # the test's end: every tarpit answer at once
    done = threading.Condition()
    finished = [0]

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "tarpit.test":
            released.wait(TARPIT_S)
            with done:
                finished[0] += 1
                done.notify_all()
            return real("127.0.0.1", *args, **kwargs)
        return real("127.0.0.1" if host == "node.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    async def scene() -> tuple[list[Any], Any]:
        flood = await asyncio.gather(
            *(pin_endpoint("tarpit.test:80", DEVNET) for _ in range(FLOOD))
        )
        # The flood is over; the lookups that were running give up (the resolver's delay).
        with done:
            assert done.wait_for(
                lambda: finished[0] >= app_reports.MAX_LOOKUPS, timeout=10 * TARPIT_S
            ), "the tarpit lookups never finished"
        honest = await pin_endpoint("node.test:80", DEVNET)
        return flood, honest

    try:
        flood, honest = asyncio.run(scene())
    finally:
        released.set()
        # Drain what the flood left queued (FIFO), so no later test shares its threads.
        app_reports._LOOKUPS.submit(lambda: None).result(timeout=30)
    assert all(answer == "name lookup timed out" for answer in flood), set(map(str, flood))
    assert isinstance(honest, tuple), (
        f"an honest host's report page answered {honest!r} after a flood of {FLOOD} pages "
        f"that had all timed out: their lookups stayed queued (finished so far: {finished[0]})"
    )
