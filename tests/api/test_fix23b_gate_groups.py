"""fix23b: the admission gate's queue is shared by client group (red23b 6): a full queue
pushes out the newest request of a group holding more of it than the newcomer's would,
else refuses the newcomer; its map of groups holds only the groups with a request
waiting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from fluxchain.api.queries import ApiError
from fluxchain.api.shedding import BUSY, AdmissionGate, AdmitLimits


class _Body:
    def __init__(self, raw: bytes) -> None:
        self._chunks = [raw]

    async def readany(self) -> bytes:
        return self._chunks.pop() if self._chunks else b""


class _Transport:
    def is_closing(self) -> bool:
        return False


@dataclass
class _Request:
    """What the gate reads of a request: its declared length, its body, its connection."""

    raw: bytes
    content: _Body = field(init=False)
    transport: _Transport = field(default_factory=_Transport)

    def __post_init__(self) -> None:
        self.content = _Body(self.raw)

    @property
    def content_length(self) -> int:
        return len(self.raw)


async def _post(gate: AdmissionGate, client: str, release: asyncio.Event, size: int = 10) -> str:
    """One request of `client` through the gate, holding it until `release`."""
    try:
        async with gate.admit(_Request(b"x" * size), bytes, 1 << 20, client):  # type: ignore[arg-type]
            await release.wait()
    except ApiError as refused:
        return refused.reason
    return "admitted"


async def _turns(count: int = 5) -> None:
    """Let the loop run every ready task a few times (the gate's hand-overs are futures)."""
    for _ in range(count):
        await asyncio.sleep(0)


def test_a_full_queue_pushes_out_the_newest_request_of_the_group_holding_most() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(AdmitLimits(max_waiting=3))
        release = asyncio.Event()
        posts = [asyncio.create_task(_post(gate, "flooder", release)) for _ in range(4)]
        await _turns()
        assert gate.waiting == 3  # one holds the gate, three wait: full
        wallet = asyncio.create_task(_post(gate, "wallet", release))
        await _turns()
        assert posts[3].done() and posts[3].result() == BUSY  # the flooder's newest
        assert gate.waiting == 3
        # Another wallet: the flooder holds two places, it would hold one; then a third
        # group finds every group holding no more than it would: refused itself.
        other = asyncio.create_task(_post(gate, "other", release))
        await _turns()
        assert posts[2].done() and posts[2].result() == BUSY
        late = asyncio.create_task(_post(gate, "late", release))
        await _turns()
        assert late.done() and late.result() == BUSY
        release.set()
        assert list(await asyncio.gather(posts[0], posts[1], wallet, other)) == ["admitted"] * 4
        assert gate.waiting == 0 and not gate._shares and gate.refused == 3

    asyncio.run(scenario())


def test_a_request_cancelled_while_queued_leaves_its_group_and_the_gate_moves_on() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(AdmitLimits(max_waiting=3))
        release = asyncio.Event()
        holder = asyncio.create_task(_post(gate, "a", release))
        await _turns()
        queued = asyncio.create_task(_post(gate, "b", release))
        after = asyncio.create_task(_post(gate, "c", release))
        await _turns()
        assert gate.waiting == 2
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert gate.waiting == 1 and set(gate._shares) == {"c"}
        release.set()
        assert list(await asyncio.gather(holder, after)) == ["admitted", "admitted"]
        assert gate.waiting == 0 and not gate._shares

    asyncio.run(scenario())
