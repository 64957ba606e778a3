"""Relayed votes leave together (issue 22, idle22): a node holds the votes it relays for
`Limits.relay_gather` and sends them, drawn once, to the same `relay_fanout` peers in one
turn, so each such link carries them in one message instead of one message a vote. Each
vote still goes to `relay_fanout` peers that may lack it (never to the peer it came from),
and a full batch leaves at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from p2p.limits import Limits, Rate, default_relay_fanout
from p2p.messages import MAX_BATCH_FRAMES, Kind
from tests.p2p.harness import Cluster, Node, cluster, fast_limits, limits_with_rates, run
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

FANOUT = default_relay_fanout()[Kind.VOTE]
TARGETS = 3  # peers of the relay besides the votes' source; none is linked to the source


def _quiet(**overrides: object) -> Limits:
    """No STATUS heartbeat on the links while the votes cross them, votes unlimited by
    rate, and one outbound link (the leaves' to the relay: they dial nobody else)."""
    limits = fast_limits(pex_interval=600.0, status_interval=600.0, **overrides)
    return limits_with_rates(limits, VOTE=Rate(1e9, 1e9))


async def _star(nodes: Cluster, relay_limits: Limits) -> tuple[Node, Node, list[Node]]:
    """A source linked to one relay, linked in turn to TARGETS nodes."""
    leaf = _quiet(max_outbound=1)
    source = await nodes.add(limits=leaf)
    relay = await nodes.add(limits=relay_limits)
    targets = [await nodes.add(limits=leaf) for _ in range(TARGETS)]
    for node in (source, *targets):
        await node.network.connect(relay.address)
    await wait_until_async(lambda: len(relay.peer_ids()) == 1 + TARGETS, what="the star")

    def settled() -> bool:
        counts = relay.network.frame_counts()
        return counts["wire"]["sent"] >= 1 + TARGETS and all(
            n.network.frame_counts()["wire"]["received"] >= 1 for n in targets
        )

    await wait_until_async(settled, what="the links' first frames across")
    return source, relay, targets


def _at(node: Node, vote: bytes) -> Callable[[], bool]:
    return lambda: vote in node.host.payloads(Kind.VOTE)


def _wire(node: Node, direction: str) -> int:
    return int(node.network.frame_counts()["wire"][direction])


def test_votes_relayed_within_the_window_reach_a_peer_in_one_message() -> None:
    """Ten votes that reach the relay one message at a time leave it as one message, to
    `relay_fanout` of its peers that lack them, each vote delivered there once; the peer
    they came from gets none back."""

    async def scenario() -> None:
        async with cluster() as nodes:
            # A window wide enough for ten loopback hops on a loaded machine.
            source, relay, targets = await _star(nodes, _quiet(relay_gather={Kind.VOTE: 1.0}))
            wire_before = {node.id: _wire(node, "received") for node in (source, *targets)}
            relay_sent_before = _wire(relay, "sent")
            votes = [b"vote-%d" % i + bytes(100) for i in range(10)]
            for vote in votes:
                source.network.broadcast(Kind.VOTE, vote)
                # One message each on the source's link: each vote reaches the relay alone.
                await wait_until_async(_at(relay, vote), what="the vote at the relay")
            reached = [t for t in targets if set(votes) <= set(t.host.payloads(Kind.VOTE))]
            assert not reached, "relays left before their window ended"
            await wait_until_async(
                lambda: (
                    sum(set(votes) <= set(t.host.payloads(Kind.VOTE)) for t in targets) == FANOUT
                ),
                what="the votes at the relay's picks",
            )
            for target in targets:
                got = target.host.payloads(Kind.VOTE)
                assert got in ([], votes), f"{target.id[:8]} got {len(got)} of the votes"
                messages = _wire(target, "received") - wire_before[target.id]
                assert messages == (1 if got else 0), f"{messages} messages for 10 votes"
            assert _wire(relay, "sent") - relay_sent_before == FANOUT
            assert _wire(source, "received") == wire_before[source.id]

    run(scenario)


def test_a_full_batch_of_relays_leaves_without_waiting_out_the_window() -> None:
    """MAX_BATCH_FRAMES relays gathered leave at once, however long the window: what a
    node holds back is bounded by count as well as by time."""

    async def scenario() -> None:
        async with cluster() as nodes:
            source, _, targets = await _star(nodes, _quiet(relay_gather={Kind.VOTE: 600.0}))
            votes = [b"vote-%d" % i + bytes(20) for i in range(MAX_BATCH_FRAMES)]
            for vote in votes:
                source.network.broadcast(Kind.VOTE, vote)
            await wait_until_async(
                lambda: (
                    sum(set(votes) <= set(t.host.payloads(Kind.VOTE)) for t in targets) == FANOUT
                ),
                timeout=10.0,
                what="a full batch relayed long before its 600 s window",
            )

    run(scenario, timeout=30.0)
