"""Keeping connected: persistent peers come back after a restart, peer exchange finds
new nodes, bans end when their time is up, and the peer book outlives a restart."""

from __future__ import annotations

import pytest

from p2p.errors import P2PError, PeerReason
from p2p.limits import Limits
from p2p.network import Direction
from p2p.peerbook import MemoryPeerStore, node_ban_key
from tests.p2p.harness import cluster, fast_limits, run
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")


# A full-suite run loads the machine: the event loop may run this late behind the
# schedule's own timers.
LOAD_FACTOR = 3.0


def _redials_take_at_most(limits: Limits, failures: range) -> float:
    """The longest the redial schedule lets the dials after `failures` failed ones take:
    each waits its whole backoff (the jitter only shortens it) and a dial tick, then may
    hang until the connect and handshake timeouts."""
    dial = limits.dial_interval + limits.connect_timeout + limits.handshake_timeout
    backoffs = (min(limits.backoff_cap, limits.backoff_base * 2.0 ** (k - 1)) for k in failures)
    return LOAD_FACTOR * sum(backoff + dial for backoff in backoffs)


def test_a_persistent_peer_reconnects_after_a_restart() -> None:
    limits = fast_limits()  # what `cluster` gives each node
    # Three failed redials (backoffs 1 to 3), then the redial that reaches b again (after
    # the backoff of 3 failures at most), each to a deadline of its own.
    three_fail_s = _redials_take_at_most(limits, range(1, 4))
    reconnect_s = _redials_take_at_most(limits, range(3, 4))

    async def scenario() -> None:
        async with cluster() as nodes:
            b = await nodes.add()
            b_key, b_port = b.key, b.network.listen_port
            a = await nodes.add(persistent=[b.address])
            await wait_until_async(lambda: b.id in a.peer_ids(), what="a dials its persistent peer")

            await nodes.stop(b)
            await wait_until_async(lambda: b.id not in a.peer_ids(), what="a notices b is gone")
            # While b is down a keeps trying, backing off between attempts.
            entry = a.network.book.entry(f"127.0.0.1:{b_port}")
            assert entry is not None and entry.persistent
            await wait_until_async(
                lambda: entry.failures >= 3, timeout=three_fail_s, what="failed redials"
            )
            assert entry.next_dial_at > 0

            b = await nodes.add(key=b_key, port=b_port)
            await wait_until_async(
                lambda: b.id in a.peer_ids(), timeout=reconnect_s, what="a reconnects"
            )
            assert a.peer(b.id) is not None
            info = a.peer(b.id)
            assert info is not None and info.direction is Direction.OUTBOUND
            assert entry.failures == 0  # a good handshake resets the backoff

    # The scenario's other waits take their default 5 s each at most.
    run(scenario, timeout=three_fail_s + reconnect_s + 4 * 5.0)


def test_peer_exchange_finds_a_third_node() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            hub = await nodes.add()
            c = await nodes.add(persistent=[hub.address])
            await wait_until_async(lambda: c.id in hub.peer_ids(), what="c connected to the hub")
            a = await nodes.add(persistent=[hub.address])
            # a only knows the hub; the hub tells it where c listens; a dials c.
            await wait_until_async(lambda: c.id in a.peer_ids(), timeout=5, what="a finds c")
            info = a.peer(c.id)
            assert info is not None and info.direction is Direction.OUTBOUND
            assert info.address == c.address
            assert c.address in a.network.book

    run(scenario)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_ban_ends_when_its_time_is_up() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with cluster() as nodes:
            judge = await nodes.add(clock=clock, limits=fast_limits(ban_duration=600.0))
            culprit = await nodes.add()
            await culprit.network.connect(judge.address)
            await wait_until_async(lambda: culprit.id in judge.peer_ids(), what="connected")
            judge.network.punish(culprit.id, 100, "invalid_block")
            await wait_until_async(lambda: culprit.id not in judge.peer_ids(), what="dropped")
            assert (culprit.id, "punished") in judge.host.disconnected

            clock.now += 599
            with pytest.raises(P2PError) as caught:
                await culprit.network.connect(judge.address)
            assert caught.value.reason is PeerReason.BANNED

            clock.now += 2
            assert await culprit.network.connect(judge.address) == judge.id
            assert not judge.network.book.is_banned(node_ban_key(culprit.key.public_key))

    run(scenario)


def test_punishing_a_peer_that_already_left_still_bans_it() -> None:
    async def scenario() -> None:
        async with cluster() as nodes:
            judge = await nodes.add()
            culprit = await nodes.add()
            await culprit.network.connect(judge.address)
            await wait_until_async(lambda: culprit.id in judge.peer_ids(), what="connected")
            await nodes.stop(culprit)
            await wait_until_async(lambda: culprit.id not in judge.peer_ids(), what="gone")
            # The host finished validating the culprit's block after it disconnected.
            judge.network.punish(culprit.id, 100, "invalid_block")
            assert judge.network.book.is_banned(node_ban_key(culprit.key.public_key))

    run(scenario)


def test_bans_and_addresses_outlive_a_restart() -> None:
    async def scenario() -> None:
        store = MemoryPeerStore()
        async with cluster() as nodes:
            other = await nodes.add()
            node = await nodes.add(store=store, persistent=[other.address])
            await wait_until_async(lambda: other.id in node.peer_ids(), what="connected")
            node.network.book.ban(node_ban_key(b"\x02" * 33), 3600.0, "test")
            key = node.key
            await nodes.stop(node)

            again = await nodes.add(store=store, key=key)
            entry = again.network.book.entry(other.address)
            assert entry is not None and entry.node_key == other.key.public_key
            assert again.network.book.is_banned(node_ban_key(b"\x02" * 33))
            # Not persistent any more (the new config lists no peers), but dialable:
            # the node reconnects to the address it remembers.
            await wait_until_async(lambda: other.id in again.peer_ids(), what="reconnects")

    run(scenario)
