"""Peer exchange: asking peers for addresses, and answering them from ours.

Only the peers we dialed are asked (CometBFT's rule: a peer that chose us could have
been chosen by an attacker); a PEERS answer nobody asked for costs points. Answers mix
the addresses of our connected peers with a sample of the peer book.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping

from p2p.connection import Links, Misbehave
from p2p.errors import PeerReason
from p2p.limits import POINTS_UNSOLICITED, Limits
from p2p.messages import MAX_PEERS_PER_MESSAGE, GetPeers, Peers, encode
from p2p.peer import Direction, Peer
from p2p.peerbook import PeerBook

log = logging.getLogger("fluxchain.p2p")


class PeerExchange:
    """The PEX side of one switch."""

    def __init__(
        self,
        peers: Mapping[str, Peer],
        links: Links,
        book: PeerBook,
        limits: Limits,
        rng: random.Random,
        misbehave: Misbehave,
        own_address: Callable[[], str],
        on_new_addresses: Callable[[], None],
        learnable: Callable[[str], bool],
    ) -> None:
        self._peers = peers
        self._links = links
        self._book = book
        self._limits = limits
        self._rng = rng
        self._misbehave = misbehave
        self._own_address = own_address
        self._on_new_addresses = on_new_addresses
        # What a learned address may point at (`netgroup.LearnRule.allows`): a hostile
        # peer must not make us dial the metadata service or our own host's services.
        self._learnable = learnable

    def request(self, peer: Peer) -> None:
        """Ask `peer` for addresses, unless an answer from it is still awaited."""
        if not peer.peers_requested:
            peer.peers_requested = True
            self._links.send(peer, encode(GetPeers()), droppable=True)

    def exchange(self) -> None:
        """Ask one random peer for addresses while we could use more."""
        outbound = sum(1 for p in self._peers.values() if p.direction is Direction.OUTBOUND)
        if outbound >= self._limits.max_outbound and len(self._book) >= self._book.capacity:
            return
        candidates = [peer for peer in self._peers.values() if not peer.closing]
        if candidates:
            self.request(self._rng.choice(candidates))

    @staticmethod
    def expects_answer(peer: Peer) -> bool:
        """Whether a PEERS frame from `peer` answers a request of ours."""
        return peer.peers_requested

    def on_peers(self, peer: Peer, message: Peers) -> None:
        """Addresses from `peer`: into the book if we asked for them."""
        if not peer.peers_requested:
            self._misbehave(
                peer, PeerReason.UNSOLICITED, POINTS_UNSOLICITED, "PEERS nobody asked for"
            )
            return
        peer.peers_requested = False
        own = self._own_address()
        learnable = [address for address in message.addresses if self._learnable(address)]
        added = sum(
            1
            for address in learnable
            if address != own and self._book.add_discovered(address, source=peer.remote_ip)
        )
        dropped = len(message.addresses) - len(learnable)
        if dropped:
            log.debug(
                "event=peer_addresses_dropped peer=%s count=%d reason=unroutable_address",
                peer.short,
                dropped,
            )
        log.debug("event=peers_received peer=%s count=%d", peer.short, added)
        if added:
            self._on_new_addresses()

    def serve(self, peer: Peer) -> None:
        """Answer `peer`'s GET_PEERS: connected peers first, then a sample of the book."""
        self._links.send(peer, encode(self.answer(peer.address)), droppable=True)

    def answer(self, asker_address: str) -> Peers:
        """The PEERS answer for a node at `asker_address` ("" if it has none):
        connected peers first, then a sample of the book, never the asker itself."""
        connected = [
            other.address
            for other in self._peers.values()
            if other.address and other.address != asker_address
        ]
        self._rng.shuffle(connected)
        addresses = dict.fromkeys(connected[:MAX_PEERS_PER_MESSAGE])
        room = MAX_PEERS_PER_MESSAGE - len(addresses)
        # A seed keeps no peer and dials no one: what it knows is the nodes that asked it
        # before, each seen at its address with its key proven.
        proven = self._limits.seed_mode
        for address in self._book.sample(room, exclude={asker_address, *addresses}, proven=proven):
            addresses[address] = None
        return Peers(tuple(addresses))
