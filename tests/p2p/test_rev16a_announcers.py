"""Review rev16a of fix16a's announcer lists (`_announcer_room`): the list of an id being
fetched keeps its gone announcers, so Sybils that announce and leave still fill it and
turn a connected honest holder away, a first fetch's or a refetch's of a refused tx. Both
fail on wt/fix16a (and on main)."""

from __future__ import annotations

import contextlib

import pytest

from fluxchain.core.crypto import SigningKey
from p2p.messages import GetTxs, TxBodies, TxIds
from p2p.network import Network
from tests.p2p.harness import RawPeer, run
from tests.p2p.test_tx_relay_by_id import IDS, TXS
from tests.p2p.test_tx_relay_by_id_refused_refetch import _admitted, _full_node, _Holder, _refused
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _FullHost, _peer_from

pytestmark = pytest.mark.filterwarnings("error")

SLOTS = 3  # tx_fetch_announcers here (50 by default: every peer slot)


async def _announce_and_leave(network: Network, count: int) -> None:
    """`count` Sybils, fresh keys, each announce IDS[0] (noted once a marker is asked
    for) and disconnect."""
    for index in range(count):
        async with (
            _peer_from(network, "127.0.0.1", SigningKey.generate()) as link,
            _Holder(link, {}) as sybil,
        ):
            await sybil.announce(IDS[0], b"gone-%d" % index)


async def _a_holder_gets_it_past_gone_sybils(
    host: _FullHost,
    network: Network,
    stack: contextlib.AsyncExitStack,
    honest: RawPeer,
    gone: int,
    connected: int,
) -> None:
    """A fresh Sybil announces IDS[0] and is asked for it (it keeps the request); `gone`
    more announce it and leave; the honest peer announces it once; the asked Sybil then
    answers "not held". The tx must get in from the honest holder, asked once."""
    first = await stack.enter_async_context(_peer_from(network, "127.0.0.1", SigningKey.generate()))
    await first.send(TxIds(IDS[0]))
    request = await first.receive_kind(GetTxs)
    assert request.ids() == [IDS[0]]
    await _announce_and_leave(network, gone)
    holder = await stack.enter_async_context(_Holder(honest, {IDS[0]: TXS[0]}))
    await holder.announce(IDS[0], b"honest")
    assert len(network.peers()) == connected, "peers connected before the Sybil answers"
    await first.send(TxBodies(request.request_id, ()))  # "not held"
    await _admitted(host, IDS[0], 3.0, "the tx fetched from its connected holder")
    assert holder.sent == 1


def test_sybils_that_announce_and_leave_keep_a_connected_holder_off_the_fetch_list() -> None:
    """Attack: a Sybil announces a tx (an honest one it saw first, or any) and is asked
    for it; more Sybils, fresh keys, announce it and leave, until the id's announcer list
    (`tx_fetch_announcers`, or the peers connected if more) is full of gone peers. The
    honest holder, connected all along, announces it once: `_lacks` finds the list full
    and drops it (fix16a prunes gone peers from refused records, `_note_announcer`, not
    from the fetch list). The asked Sybil then answers "not held" (free): no connected
    announcer is left, the fetch ends, and the holder, which never announces twice, is
    never asked. What a user sees: a tx its node's peers hold never reaches the node's
    mempool (censored at that node) until someone else announces it. Fix direction: in
    `_lacks`, when the list is full, drop the announcers no longer connected before
    turning a new one away (as `_note_announcer` does), or strike a gone peer from the
    lists of the ids it announced."""

    async def scenario() -> None:
        limits: dict[str, object] = {"tx_fetch_announcers": SLOTS, "tx_fetch_timeout": 5.0}
        async with _full_node(1, **limits) as (host, network, peers, stack):
            host.room = True
            (honest,) = peers
            # The asked Sybil and the honest holder stay connected.
            await _a_holder_gets_it_past_gone_sybils(host, network, stack, honest, SLOTS - 1, 2)

    run(scenario)


def test_sybils_that_announce_and_leave_keep_a_connected_holder_off_a_refetch() -> None:
    """Attack: as above, on the refetch of a tx refused for a full mempool. A Sybil
    announces it during its cool-down and is asked by the refetch (its list: that Sybil
    alone); fresh Sybil keys announce it and leave until the refetch's list is full of
    gone peers; the honest holder, connected all along, announces it once. The asked
    Sybil answers "not held" (free). Room has freed: the tx must get in from its holder
    (on wt/fix16a: turned away, and the refetch ended with nobody asked)."""

    async def scenario() -> None:
        limits: dict[str, object] = {
            "tx_fetch_announcers": SLOTS,
            "tx_fetch_timeout": 5.0,
            "tx_refused_cooldown": 0.5,
        }
        async with _full_node(2, **limits) as (host, network, peers, stack):
            deliverer, honest = peers
            await _refused(host, network, deliverer)
            host.room = True
            # The Sybil is asked by the refetch; SLOTS gone: a full list whether the room
            # counts the Sybil connected or not. Connected: the deliverer, the asked Sybil
            # and the holder.
            await _a_holder_gets_it_past_gone_sybils(host, network, stack, honest, SLOTS, 3)

    run(scenario)
