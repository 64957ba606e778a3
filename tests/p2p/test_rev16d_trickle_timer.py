"""A trickle that starts waiting before its peer's next trickle time has no timer (rev16d 1).

Since wan16b, `TxFetcher.announce` arms a timer only for the trickle times it sets
itself, trusting that "every waiting trickle already has a timer". It does not hold for
a peer whose last trickle was released moments ago: the release set its next trickle time
(`_queue_announcements`) while its trickle was empty, so the flush after it armed no timer
for that peer (`_schedule_trickle` skips empty trickles), and a later `announce` that
fills the trickle leaves `next_trickle` as it is and arms nothing for it either. Only the
batching flush (`tx_announce_wait` later) notices it. What a user sees: ids announced to
such a peer up to `tx_announce_wait` (100 ms by default) after its trickle time, whenever
the announcement lands within that window before it (before wan16b: at the trickle time).
Fix direction: in `announce`, also take a kept `next_trickle` into `earliest` when the
call turns an empty trickle into a waiting one (`not trickle` before the extend)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest

from bench.relay_cost import HoldsEveryTx
from fluxchain.core.crypto import sha256
from p2p.connection import Links
from p2p.limits import Limits
from p2p.messages import Kind, TxIds, decode
from p2p.peer import Peer
from p2p.tx_fetch import TIMER_SLACK, TxFetcher

pytestmark = pytest.mark.filterwarnings("error")

WAIT = 1.0  # tx_announce_wait: long, so that a flush it makes is plainly late


class _Peer:
    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.closing = False


class _Links:
    """Records each TX_IDS frame sent, with when and to whom."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, list[bytes]]] = []
        self.budget_reserve = 0.0

    def send_budgeted(self, peer: Any, kind: Kind, frame: bytes, now: float) -> bool:
        message = decode(frame)
        assert kind is Kind.TX_IDS and isinstance(message, TxIds)
        self.sent.append((asyncio.get_running_loop().time(), peer.peer_id, message.ids()))
        return True


def _fetcher(links: _Links, peers: dict[str, _Peer]) -> TxFetcher:
    limits = replace(Limits(), tx_announce_fanout=0, tx_announce_wait=WAIT, tx_trickle_interval=2.0)
    return TxFetcher(
        cast(dict[str, Peer], peers),
        cast(Links, links),
        limits,
        misbehave=lambda *a: None,
        forgive=lambda *a: None,
        pool=HoldsEveryTx(),
    )


async def _sent_to(links: _Links, tx_id: bytes, timeout: float) -> float:
    """When the TX_IDS naming `tx_id` left (waits up to `timeout`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for at, _, ids in links.sent:
            if tx_id in ids:
                return at
        await asyncio.sleep(0.005)
    raise AssertionError(f"{tx_id.hex()[:8]} never announced within {timeout} s")


def test_rev16d_ids_filling_an_empty_trickle_go_at_its_trickle_time_not_a_window_later() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        links, peer = _Links(), _Peer("p")
        fetcher = _fetcher(links, {"p": peer})
        first, second = sha256(b"first"), sha256(b"second")
        fetcher.announce([first], None)
        await _sent_to(links, first, timeout=10.0)  # its first trickle (1 s to 5 s)
        due = fetcher._state["p"].next_trickle  # set by that release
        # An admission half a window before its next trickle time: announced at that time.
        ahead = min(WAIT / 2, max(0.0, due - loop.time() - 0.05))
        assert ahead > 0.2, f"trickle due {due - loop.time():.3f} s away: too soon to test"
        loop.call_at(due - ahead, fetcher.announce, [second], None)
        sent = await _sent_to(links, second, timeout=10.0)
        late = sent - due
        fetcher.close()
        assert late <= TIMER_SLACK + 0.2, (
            f"announced {late:.3f} s after the peer's trickle time (admitted {ahead:.3f} s "
            "before it): no timer at a kept trickle time, only the batching flush"
        )

    asyncio.run(scenario())
