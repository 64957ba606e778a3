"""The last gaps in the refetch of txs refused for a full mempool (fix16a, issue 22): the
back-off survives a record that ended with no holder connected, one cap on refetches per
flush for announcements and timers alike, the announcer list past `tx_fetch_announcers`
connected peers, and the deliverer that stays unasked. All but the last fail on main."""

from __future__ import annotations

import contextlib

import pytest

import p2p.tx_fetch
from fluxchain.core.crypto import SigningKey
from p2p.messages import GetTxs, TxBodies, TxIds
from p2p.network import Network
from tests.p2p.harness import RawPeer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS
from tests.p2p.test_tx_relay_by_id_refused_refetch import (
    COOLDOWN,
    COOLED,
    _admitted,
    _checked,
    _cool_downs_until,
    _end_cool_down,
    _full_node,
    _Holder,
    _refused,
    refetch_past_sybils,
)
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _FullHost, _peer_from
from tests.support.clock import clock_loop
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


def test_a_holder_that_leaves_and_comes_back_does_not_reset_the_back_off() -> None:
    """A refused tx's only other holder announces it during its cool-down, and its link
    is down when the cool-down ends (the record ends: nobody to ask). It reconnects and
    announces the tx again; the tx is fetched and refused a second time. That second
    refusal must wait twice the cool-down (on main: the record's count went with it, so
    the back-off started over and a third holder was asked after one cool-down)."""

    async def scenario() -> None:
        key = SigningKey.generate()
        async with _full_node(2, **COOLED) as (host, network, peers, stack):
            deliverer, third = peers
            await _refused(host, network, deliverer)
            async with (
                _peer_from(network, "127.0.0.1", key) as link,
                _Holder(link, {IDS[0]: TXS[0]}) as first,
            ):
                await first.announce(IDS[0], b"before")  # then its link drops
            await wait_until_async(
                lambda: link.id not in {p.peer_id for p in network.peers()},
                what="the holder's link down",
            )
            await _settled(network)
            await _end_cool_down(network, IDS[0])  # the cool-down ends with it gone
            again = await stack.enter_async_context(_peer_from(network, "127.0.0.1", key))
            holder = await stack.enter_async_context(_Holder(again, {IDS[0]: TXS[0]}))
            await holder.announce(IDS[0], b"after")
            await _waits_twice_the_cool_down(host, network, stack, third)

    run(scenario, 3 * COOLDOWN + 20.0, clock=True)


def test_a_refetch_every_holder_missed_does_not_reset_the_back_off() -> None:
    """A refused tx's refetch asks the one holder that announced it during its cool-down,
    which answers "not held" (it lost the tx, or lied): the fetch ends. Another holder
    announces it; it is fetched and refused a second time, which must wait twice the
    cool-down (on main: the count ended with the fetch, and the back-off started over)."""

    async def scenario() -> None:
        async with _full_node(4, **COOLED) as (host, network, peers, stack):
            deliverer, missing, second, third = peers
            await _refused(host, network, deliverer)
            misser = await stack.enter_async_context(_Holder(missing, {}))
            await misser.announce(IDS[0], b"misser")
            await _settled(network)
            await _end_cool_down(network, IDS[0])
            await wait_until_async(lambda: IDS[0] in misser.asked, what="the refetch asked")
            fetcher = network._tx_fetch
            await wait_until_async(lambda: fetcher.fetching() == 0, what="the refetch ended")
            holder = await stack.enter_async_context(_Holder(second, {IDS[0]: TXS[0]}))
            await holder.announce(IDS[0], b"second")
            await _waits_twice_the_cool_down(host, network, stack, third)

    run(scenario, 3 * COOLDOWN + 20.0, clock=True)


async def _settled(network: Network) -> None:
    """Wait until no fetch is open: none times out when the clock skips."""
    fetcher = network._tx_fetch
    await wait_until_async(lambda: fetcher.fetching() == 0, what="the fetches over")


async def _waits_twice_the_cool_down(
    host: _FullHost, network: Network, stack: contextlib.AsyncExitStack, third: RawPeer
) -> None:
    """On a ClockLoop: the tx is refused a second time in a row; `third`, announcing it at
    once, must not be asked for it while the clock is skipped to 1.7 times the cool-down
    (each cool-down ending before then ended, its refetch over); then room frees, and the
    tx gets in once the cool-down is over."""
    await _checked(host, 2)
    second_at = host.refused_at
    later = await stack.enter_async_context(_Holder(third, {IDS[0]: TXS[0]}))
    await later.announce(IDS[0], b"third")
    await _settled(network)
    await _cool_downs_until(network, IDS[0], second_at + 1.7 * COOLDOWN)
    assert IDS[0] not in later.asked, (
        f"asked within {1.7 * COOLDOWN:.0f} s of a second refusal in a row (cool-down "
        f"{COOLDOWN:.0f} s, doubled: {2 * COOLDOWN:.0f} s)"
    )
    host.room = True
    await _end_cool_down(network, IDS[0])
    await _admitted(host, IDS[0], 3.0, "the tx refetched after the doubled cool-down")


async def refetch_request_sizes(count: int) -> list[int]:
    """On a ClockLoop: `count` txs refused at once, nobody announcing them during their
    cool-down; after it (the clock skipped past it) a holder announces
    them all in one frame. The ids in each of its requests, in order, until every one of
    them got in."""
    loop = clock_loop()
    txs, ids = TXS[:count], IDS[:count]
    held = dict(zip(ids, txs, strict=True))
    async with _full_node(2, **COOLED) as (host, network, peers, _):
        deliverer, holder = peers
        await deliverer.send(TxIds(b"".join(ids)))
        request = await deliverer.receive_kind(GetTxs)
        await deliverer.send(TxBodies(request.request_id, tuple(txs)))
        await _checked(host, count)
        host.room = True
        await _settled(network)
        fetcher = network._tx_fetch
        loop.skip_to(max(fetcher._refused[i].until for i in ids))  # no timer: no announcer
        await holder.send(TxIds(b"".join(ids)))
        sizes: list[int] = []
        while sum(sizes) < count:
            request = await holder.receive_kind(GetTxs)
            asked = request.ids()
            sizes.append(len(asked))
            await holder.send(TxBodies(request.request_id, tuple(held[i] for i in asked)))
        await wait_until_async(
            lambda: all(tx_id in host.pool for tx_id in ids), what="every one refetched"
        )
        return sizes


def test_one_announcement_of_many_refused_ids_starts_at_most_refetch_per_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With REFETCH_PER_FLUSH 2, the first request after one announcement of three
    refused ids must hold two of them, the third coming a flush later (on main: the
    announcement path started every refetch at once, uncapped), and all three get in."""
    monkeypatch.setattr(p2p.tx_fetch, "REFETCH_PER_FLUSH", 2, raising=False)

    async def scenario() -> None:
        sizes = await refetch_request_sizes(3)
        assert sizes[0] == 2, f"ids asked by each request: {sizes}"

    run(scenario, COOLDOWN + 20.0, clock=True)


def test_more_connected_peers_than_announcer_slots_do_not_keep_a_refused_tx_away() -> None:
    """An operator's persistent peers (or its own `max_inbound`) give the node more
    connected peers than `tx_fetch_announcers` (3 here): three Sybils announce a refused
    tx first during its cool-down and answer "not held"; its honest holder, the fifth peer,
    announces it after them. It must still be asked (on main: the list, full of connected
    Sybils, turned it away, and the tx never got in)."""

    run(lambda: refetch_past_sybils(3, tx_fetch_announcers=3), COOLDOWN + 20.0, clock=True)


def test_the_deliverer_alone_re_announcing_a_refused_tx_is_never_asked_for_it() -> None:
    """The peer that delivered a refused tx re-announces it after each cool-down, with
    room in the mempool now: it is never asked for it again while the record lives
    (rev13c: an attacker's loop of free downloads and checks), and nothing else waits
    for it; another holder announcing it later still gets it in. Holds on main."""

    async def scenario() -> None:
        loop = clock_loop()
        async with _full_node(2, **COOLED) as (host, network, peers, stack):
            deliverer, other = peers
            refused_at = await _refused(host, network, deliverer)
            host.room = True
            again = await stack.enter_async_context(_Holder(deliverer, {IDS[0]: TXS[0]}))
            fetcher = network._tx_fetch
            for round_ in range(1, 4):
                await _settled(network)
                loop.skip_to(refused_at + round_ * 2 * COOLDOWN)
                await wait_until_async(
                    lambda: not any(until <= loop.time() for until, _ in fetcher._refetch),
                    what="the timers due handled",
                )
                await again.announce(IDS[0], b"deliverer-%d" % round_)
            assert IDS[0] not in again.asked and host.checked == 1, (
                f"the deliverer asked {again.asked.count(IDS[0])} times, "
                f"{host.checked} checks of one tx"
            )
            assert not network._tx_fetch._refetch, "a refetch timer for the deliverer alone"
            holder = await stack.enter_async_context(_Holder(other, {IDS[0]: TXS[0]}))
            await holder.announce(IDS[0], b"holder")
            await _admitted(host, IDS[0], 3.0, "the tx fetched from another holder")
            assert holder.sent == 1

    run(scenario, 6 * COOLDOWN + 20.0, clock=True)
