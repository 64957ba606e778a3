"""Review rev23b of the admission gate's shared queue (fix23b, red23b 6).

`AdmissionGate.admit` pushes out other groups' waiting requests (`_room(push_out=True)`)
BEFORE it parses the newcomer's body, and a body that fails to parse (400) then never
joins the queue. So a client sending malformed bodies to a full queue holds no place of
it and is never counted against its group: each such request pushes out one honest
request (429 `busy`) of any group holding two or more places, for free, and the place it
freed goes unused. With valid bodies the same client would hold places and stop pushing
out at parity; with garbage it never reaches parity.
"""

from __future__ import annotations

import asyncio

from fluxchain.api.queries import ApiError
from fluxchain.api.shedding import BUSY, AdmissionGate, AdmitLimits
from tests.api.test_fix23b_gate_groups import _post, _Request, _turns


def _malformed(raw: bytes) -> bytes:
    raise ApiError(400, "bad_request", "not a tx")  # what parse_json does on garbage


async def _garbage(gate: AdmissionGate, client: str) -> str:
    try:
        async with gate.admit(_Request(b"y" * 10), _malformed, 1 << 20, client):  # type: ignore[arg-type]
            pass
    except ApiError as refused:
        return refused.reason
    return "admitted"


def test_rev23b_a_malformed_body_pushes_out_no_honest_request() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(AdmitLimits(max_waiting=3))
        release = asyncio.Event()
        wallet = [asyncio.create_task(_post(gate, "wallet", release)) for _ in range(4)]
        await _turns()
        assert gate.waiting == 3  # one holds the gate, three of the wallet's wait: full
        for _ in range(2):
            assert await _garbage(gate, "attacker") == "bad_request"
            await _turns()
        pushed_out = [t.result() for t in wallet if t.done()]
        release.set()
        await asyncio.gather(*wallet)
        assert pushed_out == [], (
            f"{len(pushed_out)} of the wallet's queued requests were refused {BUSY!r} to "
            "make room for requests whose bodies then failed to parse and never queued"
        )

    asyncio.run(scenario())
