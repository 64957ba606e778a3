"""Gossip flooding with duplicate suppression.

Each gossip payload reaches the host once (`NetworkHost.on_gossip`) and, if the host
accepts it, every other peer that is not known to have it (or, for the kinds of
`Limits.relay_fanout`, a few of them at random). Consensus messages (proposals,
votes) may come again after `consensus_redeliver_after`: a peer's consensus gossip sends
what our ROUND_STATE says we lack, so such a copy is delivered again, but not relayed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from p2p.connection import Links
from p2p.errors import P2PError, PeerReason
from p2p.limits import Limits
from p2p.messages import GOSSIP_KINDS, MAX_BATCH_FRAMES, MAX_FRAME, Gossip, Kind, Lane, encode
from p2p.peer import BoundedSet, Peer, SeenTimes, gossip_id

log = logging.getLogger("fluxchain.p2p")

# Gossip kinds the consensus reactor may send again to a peer that lacks them.
CONSENSUS_KINDS: Final = frozenset({Kind.PROPOSAL, Kind.VOTE})

# The host's judge of a gossip payload: (peer id, kind, payload) -> relay it?
OnGossip = Callable[[str, Kind, bytes], Awaitable[bool]]


class GossipRelay:
    """The seen-caches and the flooding of one switch."""

    def __init__(
        self,
        peers: Mapping[str, Peer],
        links: Links,
        limits: Limits,
        on_gossip: OnGossip,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._peers = peers
        self._links = links
        self._limits = limits
        self._on_gossip = on_gossip
        self._seen = BoundedSet(limits.seen_cache_size)
        self._consensus_seen = SeenTimes(limits.seen_cache_size)
        # Relays of the kinds of `Limits.relay_gather` waiting to leave together: (frame,
        # id, the peer it came from), at most MAX_BATCH_FRAMES a kind (then they leave).
        self._gathered: dict[Kind, list[tuple[bytes, bytes, Peer]]] = {}
        self._gather_timers: dict[Kind, asyncio.TimerHandle] = {}

    def broadcast(
        self, kind: Kind, payload: bytes, exclude: Peer | None, lane: Lane | None = None
    ) -> int:
        """Our own payload to every peer but `exclude`; see `Network.broadcast`."""
        if kind not in GOSSIP_KINDS:
            raise ValueError(f"{kind!r} is not a gossip kind")
        frame = encode(Gossip(kind, payload))
        if len(frame) > MAX_FRAME:
            raise P2PError(PeerReason.TOO_LARGE, f"gossip frame of {len(frame)} bytes")
        message_id = gossip_id(kind, payload)
        self._seen.add(message_id)
        if kind in CONSENSUS_KINDS:
            self._consensus_seen.note(message_id, asyncio.get_running_loop().time())
        return self._flood(kind, frame, message_id, exclude, lane=lane)

    def relay(self, kind: Kind, payload: bytes, source: Peer | None) -> int:
        """A payload the host took from `source` and judged later (after a fetch): on to
        the peers that may lack it, as `deliver` relays at once (fan-out applies)."""
        frame = encode(Gossip(kind, payload))
        message_id = gossip_id(kind, payload)
        self._seen.add(message_id)
        return self._flood(kind, frame, message_id, source, self._limits.relay_fanout.get(kind))

    def senders(self, kind: Kind, payload: bytes) -> list[Peer]:
        """The connected peers that sent us `payload` (its first copy, or a duplicate)."""
        message_id = gossip_id(kind, payload)
        return [
            peer
            for peer in list(self._peers.values())
            if not peer.closing and message_id in peer.known
        ]

    def send_to(self, peer: Peer | None, kind: Kind, payload: bytes) -> bool:
        """One payload to one peer, within its outgoing budgets; True if queued."""
        if peer is None or peer.closing or kind not in GOSSIP_KINDS:
            return False
        frame = encode(Gossip(kind, payload))
        return self._links.send_budgeted(peer, kind, frame, asyncio.get_running_loop().time())

    def unrelayed(self, kind: Kind, payload: bytes) -> None:
        """A consensus payload the host delivered but did not relay: a later copy it
        relays is flooded (see `on_gossip`'s relay mark); its delivery pacing stays.
        Another kind's delivery is not paced but deduplicated by this mark: kept."""
        if kind in CONSENSUS_KINDS:
            self._seen.discard(gossip_id(kind, payload))

    def forget(self, kind: Kind, payload: bytes) -> None:
        """Let the next copy of `payload` reach the host again."""
        self._unsee(gossip_id(kind, payload))

    def on_gossip(self, peer: Peer, message: Gossip) -> None:
        """A gossip frame from `peer`: into its inbox unless it is a duplicate."""
        message_id = gossip_id(message.kind, message.payload)
        peer.known.add(message_id)
        relay_id = message_id
        if message.kind in CONSENSUS_KINDS:
            # Deliver a consensus gossip copy again (the first was lost or refused), but
            # relay it no further (b"": no relay) if flooding already did.
            now = asyncio.get_running_loop().time()
            if not self._consensus_seen.accept(
                message_id, now, self._limits.consensus_redeliver_after
            ):
                log.debug("event=gossip_duplicate peer=%s kind=%s", peer.short, message.kind.name)
                return
            relay_id = message_id if self._seen.add(message_id) else b""
        elif not self._seen.add(message_id):
            log.debug("event=gossip_duplicate peer=%s kind=%s", peer.short, message.kind.name)
            return
        if not self._links.enqueue(peer, message, relay_id):
            # Forget it, so that another peer's copy can still reach the host.
            self._unsee(message_id)
            peer.dropped_frames += 1
            log.debug("event=gossip_dropped peer=%s reason=inbox_full", peer.short)

    async def deliver(self, peer: Peer, message: Gossip, message_id: bytes) -> None:
        """Give the host one payload from `peer`'s inbox; relay it if the host says so."""
        try:
            relay = await self._on_gossip(peer.peer_id, message.kind, message.payload)
        except Exception as exc:
            raise P2PError(PeerReason.HOST_ERROR, f"on_gossip: {exc!r}") from exc
        if relay and message_id and not peer.closing:
            window = self._limits.relay_gather.get(message.kind)
            if window is not None and message.kind in self._limits.relay_fanout:
                self._gather(message.kind, encode(message), message_id, peer, window)
                return
            fanout = self._limits.relay_fanout.get(message.kind)
            self._flood(message.kind, encode(message), message_id, peer, fanout)

    def close(self) -> None:
        """Drop the relays still gathered (the switch stops; its peers are closing)."""
        for timer in self._gather_timers.values():
            timer.cancel()
        self._gather_timers.clear()
        self._gathered.clear()

    def _gather(
        self, kind: Kind, frame: bytes, message_id: bytes, source: Peer, window: float
    ) -> None:
        """Hold a relay for up to `window` seconds, to leave with the others of its kind
        (`_relay_gathered`); a full batch leaves at once."""
        pending = self._gathered.setdefault(kind, [])
        pending.append((frame, message_id, source))
        if len(pending) >= MAX_BATCH_FRAMES:
            self._relay_gathered(kind)
        elif kind not in self._gather_timers:
            loop = asyncio.get_running_loop()
            self._gather_timers[kind] = loop.call_later(window, self._relay_gathered, kind)

    def _relay_gathered(self, kind: Kind) -> None:
        """Send the gathered relays of `kind`, each to `relay_fanout` peers that may lack
        it, as `_flood` would, but drawn once for the lot: the same peers get them all, in
        one turn, so each such link's writer sends them as one BATCH message. A relay
        whose source or holders include a pick goes to other peers drawn for it alone."""
        timer = self._gather_timers.pop(kind, None)
        if timer is not None:
            timer.cancel()
        pending = self._gathered.pop(kind, [])
        fanout = self._limits.relay_fanout[kind]
        peers = [peer for peer in list(self._peers.values()) if not peer.closing]
        # Drawn among the peers that may lack at least one of them (not a peer that sent
        # us every one): on a full mesh, nearly all.
        wanting = [
            peer
            for peer in peers
            if any(peer is not source and mid not in peer.known for _, mid, source in pending)
        ]
        picks = self._rng.sample(wanting, min(fanout, len(wanting)))
        now = asyncio.get_running_loop().time()
        for frame, message_id, source in pending:
            targets = [
                peer for peer in picks if peer is not source and message_id not in peer.known
            ]
            if len(targets) < fanout:
                others = [
                    peer
                    for peer in peers
                    if peer is not source
                    and message_id not in peer.known
                    and all(peer is not pick for pick in picks)
                ]
                targets += self._rng.sample(others, min(fanout - len(targets), len(others)))
            for peer in targets:
                self._links.send_budgeted(peer, kind, frame, now)

    def _unsee(self, message_id: bytes) -> None:
        self._seen.discard(message_id)
        self._consensus_seen.discard(message_id)

    def _flood(
        self,
        kind: Kind,
        frame: bytes,
        message_id: bytes,
        exclude: Peer | None,
        fanout: int | None = None,
        lane: Lane | None = None,
    ) -> int:
        """Send `frame` to every peer that may lack it, or to `fanout` of them at random;
        in `lane` of their send queues (default its kind's)."""
        now = asyncio.get_running_loop().time()
        targets = [
            peer
            for peer in list(self._peers.values())
            if peer is not exclude and not peer.closing and message_id not in peer.known
        ]
        if fanout is not None and len(targets) > fanout:
            targets = self._rng.sample(targets, fanout)
        sent = 0
        for peer in targets:
            if self._links.send_budgeted(peer, kind, frame, now, lane):
                sent += 1
        return sent
