"""The switch: the peer set, who may connect (admission), whom to dial, and bans.

One `Network` per node. It listens on `GET /p2p` (an aiohttp app served by its own
`AppRunner`/`TCPSite`), dials persistent and discovered peers with a shared
`ClientSession`, runs the handshake, and keeps the connected peers. Its parts:

- `p2p/connection.py` (`Links`): one peer's link: reader, handler and writer tasks,
  the send queue, closing;
- `p2p/relay.py` (`GossipRelay`): gossip flooding with duplicate suppression;
- `p2p/block_requests.py` (`BlockRequests`): asking for blocks, answering requests;
- `p2p/peer_exchange.py` (`PeerExchange`): asking for addresses, answering them;
- `p2p/snapshot_requests.py` (`SnapshotRequests`): state sync's snapshot lists and parts;
- `p2p/proposal_txs.py` (`ProposalTxRequests`): the txs a compact proposal's receiver lacks;
- `p2p/tx_fetch.py` (`TxFetcher`): txs relayed by id: announcements, fetches, answers.

The switch routes each checked frame to the part it belongs to and scores faults;
whatever a connection raises ends that connection, never the node. The host is the only
judge of payloads; it reports bad ones with `punish`. docs/p2p.md is the full description.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
from aiohttp import WSCloseCode, web

from fluxchain.core.crypto import HASH_SIZE, PUBKEY_SIZE, SigningKey
from p2p.block_requests import BlockRequests
from p2p.connection import CLOSE_REFUSED, Links
from p2p.consensus_gossip import ConsensusGossip
from p2p.errors import HandshakeError, P2PError, PeerClosedError, PeerReason
from p2p.handshake import LocalNode, run_handshake
from p2p.limits import (
    POINTS_BAD_ROUND_STATE,
    POINTS_RATE_LIMITED,
    POINTS_UNEXPECTED_MESSAGE,
    LeftScores,
    Limits,
)
from p2p.messages import (
    MAX_WIRE_FRAME,
    Auth,
    Blocks,
    GetBlocks,
    GetPeers,
    GetProposalTxs,
    GetSnapshotPart,
    GetSnapshots,
    GetTxs,
    Gossip,
    Hello,
    Kind,
    Lane,
    Message,
    Peers,
    ProposalTxs,
    RoundState,
    SnapshotOffer,
    SnapshotPart,
    Snapshots,
    Status,
    TxBodies,
    TxIds,
    canonical_address,
    decode,
    encode,
    format_address,
    frames_in,
    kind_of,
    parse_address,
    parse_ip,
    parse_peer_address,
)
from p2p.netgroup import LearnRule, Netgroups, address_group, subnet_of
from p2p.peer import (
    Direction,
    HandshakeWebSocketResponse,
    Peer,
    WebSocket,
    WebSocketChannel,
    gossip_id,
    limit_handshake_frames,
)
from p2p.peer_exchange import PeerExchange
from p2p.peerbook import Clock, PeerBook, PeerStore, ip_ban_key, node_ban_key
from p2p.proposal_txs import ProposalTxRequests, ProposalTxSource
from p2p.relay import GossipRelay
from p2p.snapshot_requests import SnapshotRequests, SnapshotSource
from p2p.tasks import Tasks
from p2p.tx_fetch import TxFetcher, TxPool

__all__ = [
    "CLOSE_REFUSED",
    "NETWORK_KEY",
    "P2P_PATH",
    "Direction",
    "Network",
    "NetworkHost",
    "PeerInfo",
    "gossip_id",
]

log = logging.getLogger("fluxchain.p2p")

P2P_PATH: Final = "/p2p"
# Frames a full node reads from a connection it only answers, looking for GET_PEERS
# (a dialer sends STATUS, then GET_PEERS, maybe a ROUND_STATE or gossip in between).
_FRAMES_BEFORE_GET_PEERS: Final = 8
# The most IPs of one learned name a dial tries, in the resolver's order: enough for
# IPv6 and IPv4 answers with a dead one or two among them, and a stranger's name
# answering hundreds of IPs still costs one dial a few connects.
MAX_DIAL_IPS: Final = 4


class NetworkHost(Protocol):
    """What the node provides to the network. Implemented by fluxchain.node."""

    def status(self) -> tuple[int, bytes, int]:
        """(latest confirmed height, its block hash, the lowest block stored); sent to
        peers in STATUS."""

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        """Validate a gossiped tx/proposal/vote/evidence, delivered once per payload.

        Return True to relay it to the other peers, False to drop it. Call
        `Network.punish` for an invalid one. Should return quickly (queue heavy work):
        the next frame of this peer waits for it.
        """

    def get_blocks(self, start_height: int, count: int) -> list[tuple[bytes, bytes]]:
        """Up to `count` consecutive confirmed (block, commit) from `start_height`."""

    def on_peer_connected(self, peer_id: str) -> None:
        """A peer finished the handshake."""

    def on_peer_disconnected(self, peer_id: str, reason: str) -> None:
        """A connected peer is gone; `reason` is a PeerReason value."""


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A snapshot of one connected peer."""

    peer_id: str  # node key, hex
    node_key: bytes
    address: str  # dialable "host:port", or the remote IP if it advertised none
    direction: Direction
    height: int  # from its latest STATUS
    head_hash: bytes
    score: float  # misbehaviour points, decaying
    connected_at: float  # wall clock
    base: int = 1  # its lowest stored block, from its latest STATUS: none below is asked of it


class Network:
    """The p2p switch of one node. See the module docstring and docs/p2p.md.

    The host's API: `start`/`stop`, `peers`, `best_peers_by_height`, `broadcast`,
    `send_to`, `send_round_state`, `forget`, `update_status`, `punish`, `disconnect`,
    `request_blocks`, `request_snapshots`, `request_snapshot_part`, `request_proposal_txs`,
    `connect`, and `book` (bans by the operator). `expects_answer`, `route`, `serve`,
    `on_closed` and `misbehave` are for its own links (`LinkOwner`).
    """

    def __init__(
        self,
        host: NetworkHost,
        key: SigningKey,
        *,
        chain_id: str,
        genesis_hash: bytes,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        advertise_address: str | None = None,
        persistent_peers: Iterable[str] = (),
        limits: Limits | None = None,
        store: PeerStore | None = None,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        consensus: ConsensusGossip | None = None,
        snapshots: SnapshotSource | None = None,
        proposal_txs: ProposalTxSource | None = None,
        tx_pool: TxPool | None = None,
    ) -> None:
        if len(genesis_hash) != HASH_SIZE:
            raise ValueError("genesis_hash must be 32 bytes")
        self._host = host
        self._key = key
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.listen_host = listen_host
        self.listen_port = listen_port
        self._advertise = advertise_address
        self.limits = limits if limits is not None else Limits()
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self.netgroups = Netgroups(self.limits.uncapped_networks)
        self.book = PeerBook(
            clock=clock,
            rng=self._rng,
            store=store,
            netgroups=self.netgroups,
            new_buckets=self.limits.book_new_buckets,
            tried_buckets=self.limits.book_tried_buckets,
            bucket_size=self.limits.book_bucket_size,
            max_bans=self.limits.max_bans,
            backoff_base=self.limits.backoff_base,
            backoff_cap=self.limits.backoff_cap,
            max_failures=self.limits.max_dial_failures,
        )
        self._persistent = list(persistent_peers)
        self._learn_rule = LearnRule.of_node(
            listen_host, advertise_address, self.limits.uncapped_networks
        )
        for text in self._persistent:
            node_key, address = parse_peer_address(text)
            self.book.add_persistent(address, node_key)
        self._peers: dict[str, Peer] = {}
        # Per-peer consensus round state, fed by ROUND_STATE frames; the host's consensus
        # gossip loop plans from it (p2p/consensus_gossip.py). None: frames are ignored.
        self.consensus = consensus
        self._tasks = Tasks()
        self._links = Links(self, self.limits, self._tasks)
        self._relay = GossipRelay(self._peers, self._links, self.limits, host.on_gossip, self._rng)
        self._blocks = BlockRequests(
            self._peers, self._links, self.limits, self.misbehave, host.get_blocks
        )
        # The snapshots this node serves to state-syncing peers (None: it serves none).
        self._snapshots = SnapshotRequests(
            self._peers, self._links, self.limits, self.misbehave, snapshots
        )
        # The txs of proposals this node serves to peers rebuilding a compact proposal.
        self._proposal_txs = ProposalTxRequests(
            self._peers, self._links, self.limits, self.misbehave, proposal_txs
        )
        # Txs relayed by id: announcements out, fetches of announced txs in (issue 22).
        self._tx_fetch = TxFetcher(
            self._peers, self._links, self.limits, self.misbehave, self.forgive, tx_pool
        )
        # Points outliving a connection: a node key's when it comes back, an IP's for its ban.
        self._left_scores = LeftScores(self.limits.score_decay_per_second, self.limits.max_bans)
        self._exchange = PeerExchange(
            self._peers,
            self._links,
            self.book,
            self.limits,
            self._rng,
            self.misbehave,
            own_address=lambda: self._local.listen_address if self._local else "",
            on_new_addresses=self._wake_up,
            learnable=self._learn_rule.allows,
        )
        self._dialing: set[str] = set()
        # Inbound connections between the HTTP upgrade and the end of the handshake, by
        # remote IP: they hold slots too, or a slow handshake would dodge the caps.
        self._pending_inbound: Counter[str] = Counter()
        # Of those, the ones a full node takes only to answer GET_PEERS (`full_answers`).
        self._answering = 0
        self._wake = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._local: LocalNode | None = None
        self._stopping = False

    # -- identity and lifecycle -------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This node's peer id (its node key in hex)."""
        return self._key.public_key.hex()

    @property
    def listen_address(self) -> str:
        """The "host:port" this node advertises (known once `start` has bound)."""
        return self._local_node().listen_address

    def create_app(self) -> web.Application:
        """The aiohttp application serving `GET /p2p` for this network."""
        app = web.Application()
        app[NETWORK_KEY] = self
        app.router.add_get(P2P_PATH, _handle_p2p)
        app.cleanup_ctx.append(_network_context)
        app.on_shutdown.append(_close_connections)
        return app

    async def start(self) -> None:
        """Bind the listener, load the peer book, and start dialing."""
        self._runner = web.AppRunner(
            self.create_app(), access_log=None, shutdown_timeout=self.limits.close_timeout
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.listen_host, self.listen_port)
        await site.start()
        self.listen_port = int(self._runner.addresses[0][1])
        # The config's spelling may be any the resolver reads (`127.1:p`); the wire and
        # every peer's book take the canonical one only.
        advertised = (
            canonical_address(self._advertise)
            if self._advertise
            else format_address(self.listen_host, self.listen_port)
        )
        self._local = LocalNode(self._key, self.chain_id, self.genesis_hash, advertised)
        self._tasks.spawn(self._maintain(), "maintain", starter=True)
        log.info(
            "event=p2p_listening node=%s address=%s persistent_peers=%d",
            self.node_id[:16],
            advertised,
            len(self._persistent),
        )

    async def stop(self) -> None:
        """Close every connection with GOING_AWAY, stop every task, save the book."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _open(self) -> None:
        """Start-up half of the app's cleanup context."""
        self._stopping = False
        self._tx_fetch.open()
        # A book stored by an earlier run may hold what a peer sent before this rule (or
        # a wider one) judged it: it passes the rule as a PEERS answer would.
        self.book.load(learnable=self._learn_rule.allows)
        self._session = aiohttp.ClientSession(middlewares=(_no_redirect,))

    async def _shutdown(self) -> None:
        """on_shutdown: close every websocket with GOING_AWAY, then wait for the tasks."""
        self._stopping = True
        self._tx_fetch.close()
        self._relay.close()
        self._tasks.cancel_starters()
        for peer in list(self._peers.values()):
            self._links.disconnect(peer, PeerReason.SHUTDOWN, "node stopping")
        self._links.close_all()
        await self._tasks.drain(self.limits.close_timeout + 1.0)

    async def _close(self) -> None:
        """Clean-up half of the app's cleanup context."""
        self._stopping = True
        await self._tasks.drain(0.0)
        if self._session is not None:
            await self._session.close()
            self._session = None
        try:
            self.book.save()
        except Exception as exc:  # a full disk must not prevent a clean stop
            log.warning("event=peer_book_save_failed error=%r", exc)
        log.info("event=p2p_stopped node=%s", self.node_id[:16])

    def _local_node(self) -> LocalNode:
        if self._local is None:
            raise P2PError(PeerReason.NOT_CONNECTED, "the network is not started")
        return self._local

    def _wake_up(self) -> None:
        """Run the maintenance loop now (new addresses, a lost outbound peer)."""
        self._wake.set()

    # -- public operations ------------------------------------------------------------

    def frame_counts(self) -> dict[str, dict[str, int]]:
        """Frames sent and received since start, by kind, and websocket messages
        (`p2p.connection.FrameCounts.snapshot`), and the tx relay's ids under "tx_ids"
        (`p2p.tx_fetch.RelayCounts`)."""
        return {**self._links.counts.snapshot(), "tx_ids": self._tx_fetch.counts.snapshot()}

    def peers(self) -> list[PeerInfo]:
        """Every connected peer, by peer id."""
        now = asyncio.get_running_loop().time()
        return [self._info(peer, now) for _, peer in sorted(self._peers.items())]

    def peer_ids(self) -> list[str]:
        """The ids of every connected peer, in no set order: what a per-message caller
        needs, without `peers()`'s snapshot of each (~25 µs for 18 peers; perf14w)."""
        return list(self._peers)

    def peer_group(self, peer_id: str) -> str | None:
        """The address group (/16, IPv6 /32) of a connected peer's IP, as the inbound caps
        count it: what a share per source keys on, since one host's node keys are free
        and its addresses are not. None for a peer not connected, without an IP, or in an
        uncapped network (the operator's own: each of its peers counts alone)."""
        peer = self._peers.get(peer_id)
        if peer is None or not peer.remote_ip or self.netgroups.is_exempt(peer.remote_ip):
            return None
        return "group:" + address_group(peer.remote_ip)

    def is_connected(self, peer_id: str) -> bool:
        """Whether `peer_id` is a connected peer (a task that outlived its message asks)."""
        return peer_id in self._peers

    def best_peers_by_height(self) -> list[PeerInfo]:
        """Connected peers, highest reported height first (then lowest score)."""
        return sorted(self.peers(), key=lambda info: (-info.height, info.score, info.peer_id))

    def _info(self, peer: Peer, now: float) -> PeerInfo:
        return PeerInfo(
            peer_id=peer.peer_id,
            node_key=peer.node_key,
            address=peer.address or peer.remote_ip,
            direction=peer.direction,
            height=peer.height,
            head_hash=peer.head_hash,
            score=peer.score.value(now),
            connected_at=peer.connected_at,
            base=peer.base,
        )

    def broadcast(
        self, kind: Kind, payload: bytes, exclude: str | None = None, lane: Lane | None = None
    ) -> int:
        """Gossip `payload` to every peer but `exclude`; return how many got it queued.
        `lane`: the send-queue lane, if not its kind's (a flush of txs that must reach a
        peer before the proposal queued next, in the consensus lane).

        The payload is marked as seen, so copies relayed back are not delivered to the
        host again. Peers that sent it to us are skipped; calling again re-sends to the
        others (a host re-gossiping its last vote for liveness), whose seen-sets drop it
        if they already had it.
        """
        return self._relay.broadcast(kind, payload, self._peers.get(exclude or ""), lane)

    def relay(self, kind: Kind, payload: bytes, source: str) -> int:
        """Relay a payload from `source` that the host could only judge later (a compact
        proposal rebuilt after fetching txs), as if `on_gossip` had returned True; return
        how many peers got it queued."""
        return self._relay.relay(kind, payload, self._peers.get(source))

    def announce_txs(self, tx_ids: list[bytes], source: str | None = None) -> None:
        """Txs the host admitted from `source` (None: its own): their ids go to every other
        peer not known to hold them, in TX_IDS frames (to a few at once, to the rest at
        their trickle); a peer lacking one fetches it (p2p/tx_fetch.py). The bodies of
        one's own txs go out by `broadcast` instead."""
        self._tx_fetch.announce(tx_ids, self._peers.get(source or ""))

    def note_own_txs(self, tx_ids: list[bytes]) -> None:
        """Txs the host admitted from its own API (their bodies go out by `broadcast`):
        held, so not fetched, and whatever refusals of them were counted are forgotten."""
        self._tx_fetch.note_own(tx_ids)

    def unreceive_txs(self, peer_id: str, tx_ids: list[bytes]) -> None:
        """Txs from `peer_id` the host dropped without a verdict (a frame's rest after
        garbage, so that a peer cannot bury honest txs in its junk): fetched from their
        next announcer, or when announced, not ignored as received lately."""
        self._tx_fetch.unreceive(peer_id, tx_ids)

    def forget_txs(self, tx_ids: list[bytes]) -> None:
        """Txs the host refused for now only (a full mempool): a later announcement of
        them is fetched again rather than ignored as received lately."""
        self._tx_fetch.forget_received(tx_ids)

    def gossip_senders(self, kind: Kind, payload: bytes) -> list[str]:
        """The ids of the peers that sent us `payload` (first copy or duplicate), in the
        order they connected."""
        return [peer.peer_id for peer in self._relay.senders(kind, payload)]

    def send_to(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        """Send one gossip payload to one peer (consensus gossip); True if queued.

        The peer's outgoing rate and byte budgets apply as for flooding; a frame they
        refuse is dropped, and the caller's per-peer state sends it again later.
        """
        return self._relay.send_to(self._peers.get(peer_id), kind, payload)

    def send_round_state(self, state: RoundState, peer_ids: Iterable[str] | None = None) -> None:
        """Announce our consensus position to `peer_ids` (default: every peer)."""
        frame = encode(state)
        targets = self._peers if peer_ids is None else {p: None for p in peer_ids}
        for peer_id in list(targets):
            peer = self._peers.get(peer_id)
            if peer is not None:
                self._links.send(peer, frame, droppable=True)

    def unrelayed(self, kind: Kind, payload: bytes) -> None:
        """The host did not relay this consensus message (it did not keep it, yet): a copy
        that comes again (consensus gossip's re-send) and that the host then keeps is
        relayed, not taken as one flooding already sent on. Its re-delivery stays paced
        as any duplicate's. For the consensus kinds only (PROPOSAL, VOTE)."""
        self._relay.unrelayed(kind, payload)

    def forget(self, kind: Kind, payload: bytes) -> None:
        """Let the next copy of `payload` reach the host again.

        For a message the host could not keep yet (consensus: too far ahead, a full
        buffer) but may need later: left marked as seen, it could never come back.
        """
        self._relay.forget(kind, payload)

    def update_status(self) -> None:
        """Tell every peer our new head (the host calls this after each commit)."""
        frame = self._status_frame()
        for peer in list(self._peers.values()):
            self._links.send(peer, frame, droppable=True)

    def _status_frame(self) -> bytes:
        height, head_hash, base = self._host.status()
        return encode(Status(height, head_hash, base))

    def punish(self, peer_id: str, points: float, reason: str) -> None:
        """Add misbehaviour points to a peer (the host found its payload invalid).

        Past the threshold the peer is disconnected and banned. A peer that has
        already left is banned outright if `points` alone reach the threshold.
        """
        peer = self._peers.get(peer_id)
        if peer is not None:
            self.misbehave(peer, PeerReason.PUNISHED, points, reason)
            return
        if points >= self.limits.ban_threshold:
            with contextlib.suppress(ValueError):
                key = bytes.fromhex(peer_id)
                if len(key) != PUBKEY_SIZE:
                    return
                self.book.ban(node_ban_key(key), self.limits.ban_duration, reason)
                log.info(
                    "event=peer_banned peer=%s reason=%s duration_s=%d",
                    peer_id[:16],
                    reason,
                    self.limits.ban_duration,
                )

    def disconnect(self, peer_id: str, reason: PeerReason = PeerReason.CLOSED) -> None:
        """Close the connection to a peer (no ban)."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._links.disconnect(peer, reason, "requested by the host")

    async def request_blocks(
        self, peer_id: str, start_height: int, count: int, timeout: float = 10.0
    ) -> list[tuple[bytes, bytes]]:
        """Ask one peer for up to `count` (block, commit) pairs from `start_height`.

        Returns what the peer sent (possibly fewer, possibly none); the host checks
        that the blocks follow and their commits verify. Raises P2PError on timeout,
        disconnect, too many requests in flight, or a response that breaks the rules
        (the peer is also punished for the last).
        """
        return await self._blocks.request(peer_id, start_height, count, timeout)

    async def request_snapshots(self, peer_id: str, timeout: float = 10.0) -> list[SnapshotOffer]:
        """The snapshots one peer offers (state sync). Raises P2PError as `request_blocks`."""
        return await self._snapshots.request_list(peer_id, timeout)

    async def request_snapshot_part(
        self, peer_id: str, height: int, index: int, timeout: float = 10.0
    ) -> bytes:
        """Part `index` of a peer's snapshot at `height` (0: the manifest), b"" if the peer
        does not hold it; the host verifies the bytes. Raises P2PError as `request_blocks`."""
        return await self._snapshots.request_part(peer_id, height, index, timeout)

    async def request_proposal_txs(
        self, peer_id: str, block_hash: bytes, tx_ids: list[bytes], timeout: float
    ) -> list[bytes]:
        """The txs `tx_ids` (1 to MAX_PROPOSAL_TXS_PER_REQUEST) of the proposed block
        `block_hash`, from `peer_id`, in order, each hashing to its id. Raises P2PError
        as `request_blocks`, and `not_held` if the peer answers that it lacks some."""
        return await self._proposal_txs.request(peer_id, block_hash, tx_ids, timeout)

    # -- admission: dialing out, accepting, the handshake ------------------------------

    async def connect(self, address: str, *, one_per_group: bool = False) -> str:
        """Dial `address` ("host:port", or "node_key_hex@host:port" to accept only
        that key there), run the handshake, and return the peer id.

        A plain address the book pins to a key (a persistent peer or seed configured
        as key@host:port) is held to that key too. `one_per_group`: a dial the outbound
        diversity rule chose, refused `too_many_from_group` if another outbound peer
        holds the group of the IP its socket reached (`_establish`). Raises P2PError
        (HandshakeError for refusals) with the reason.
        """
        local = self._local_node()
        if self._session is None or self._stopping:
            raise P2PError(PeerReason.SHUTDOWN, "the network is stopping")
        try:
            expected_key, address = parse_peer_address(address)
            host, port = parse_address(address)
        except ValueError as exc:
            raise P2PError(PeerReason.CONNECT_FAILED, str(exc)) from None
        # One spelling a node (the book's key, the peer's address): `0x7f.1:p` dialed is
        # the book's and the connected peer's `127.0.0.1:p`.
        address = format_address(host, port)
        entry = self.book.entry(address)
        configured = entry is not None and entry.persistent
        if expected_key is None and entry is not None:
            expected_key = entry.pinned_key
        if not configured and not self._learn_rule.allows(address):
            # An IP or a loopback name (however it entered the book) is judged before any
            # byte is sent to it; another learned name once resolved, below.
            raise HandshakeError(PeerReason.UNROUTABLE_ADDRESS, f"{address} may not be dialed")
        try:
            async with asyncio.timeout(self.limits.connect_timeout) as budget:
                # The operator's peers and seeds are dialed as configured, never judged
                # (the docker devnet names them): aiohttp's own lookup.
                targets = (
                    [address] if configured else await self._learned_targets(address, host, port)
                )
                ws = await self._open_first(self._session, targets, budget.when())
        except aiohttp.WSServerHandshakeError as exc:
            reason = {403: PeerReason.BANNED, 503: PeerReason.TOO_MANY_PEERS}.get(
                exc.status, PeerReason.CONNECT_FAILED
            )
            raise HandshakeError(reason, f"{address} answered HTTP {exc.status}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise P2PError(PeerReason.CONNECT_FAILED, f"{address}: {exc!r}") from None
        limit_handshake_frames(ws)
        self._links.open_ws.add(ws)
        # The IP the socket reached, not the host dialed: a name is no network, and one
        # host under several names must be one source, one ban (p2p25 2), one outbound
        # diversity group (`_check_group_free`, late25p 2: the dial itself is chosen by
        # name, which cannot be judged before it resolves).
        peername = ws.get_extra_info("peername")
        remote_ip = peername[0] if isinstance(peername, tuple) and peername else host
        try:
            peer = await self._establish(
                ws,
                local,
                Direction.OUTBOUND,
                address,
                remote_ip,
                expected_key=expected_key,
                one_per_group=one_per_group,
            )
        except P2PError as exc:
            # Only a proven self-connection (AUTH signed with our key), never the
            # remote's unsealed close reason, makes us forget the address.
            if exc.reason is PeerReason.SELF_CONNECTION and not isinstance(exc, PeerClosedError):
                self.book.mark_self(address)
            await self._refuse(ws, exc, Direction.OUTBOUND, address)
            self._links.open_ws.discard(ws)
            raise
        except BaseException:
            self._links.open_ws.discard(ws)
            await self._links.close_socket(ws, WSCloseCode.GOING_AWAY, PeerReason.SHUTDOWN)
            raise
        self._tasks.spawn(self._links.run(peer), f"peer-{peer.short}")
        return peer.peer_id

    async def _learned_targets(self, address: str, host: str, port: int) -> list[str]:
        """Where the dial of a learned `address` goes: an IP as it is (`LearnRule.allows`
        judged it); a name resolved here, once, every IP it answers judged by the learn
        rule before any byte is sent, and the allowed IPs' literals dialed in the
        resolver's order (`_open_first`, at most MAX_DIAL_IPS), so that no second lookup
        (aiohttp's) can rebind it to 169.254.169.254, and one dead address of several
        (broken IPv6, a stale A record) does not fail every dial. The book, the peer and
        the logs still know it by `address`. None allowed: `unroutable_address`, a
        failure like any (`_dial`: forgotten after `max_failures`, not redialed for ever
        nor kept in the stored book); a failed lookup is a failed dial."""
        if parse_ip(host) is not None:
            return [address]
        answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        resolved = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
        allowed = [ip for ip in resolved if self._learn_rule.allows_ip(ip)]
        if not allowed:
            raise HandshakeError(
                PeerReason.UNROUTABLE_ADDRESS,
                f"{address} resolves to {', '.join(resolved) or 'nothing'}",
            )
        return [format_address(ip, port) for ip in allowed[:MAX_DIAL_IPS]]

    async def _open_first(
        self, session: aiohttp.ClientSession, targets: list[str], deadline: float | None
    ) -> aiohttp.ClientWebSocketResponse:
        """The websocket of the first of `targets` whose socket connects, tried in order.
        Each but the last has an even share of the time left before `deadline` (the
        dial's `connect_timeout`), so a silent address (a dropped SYN) cannot spend the
        whole dial; one that connected and answered is the dial's, whatever it answers."""
        loop = asyncio.get_running_loop()
        for i, target in enumerate(targets):
            left = len(targets) - i
            share = None if left == 1 or deadline is None else (deadline - loop.time()) / left
            try:
                async with asyncio.timeout(share):
                    return await session.ws_connect(
                        f"ws://{target}{P2P_PATH}",
                        max_msg_size=MAX_WIRE_FRAME,
                        compress=0,
                        autoping=True,
                        heartbeat=self.limits.heartbeat,
                        timeout=aiohttp.ClientWSTimeout(ws_close=self.limits.close_timeout),
                    )
            except (aiohttp.ClientConnectorError, TimeoutError) as exc:
                if left == 1:
                    raise
                log.debug("event=dial_next target=%s error=%r", target, exc)
        raise AssertionError("a dial has at least one target")

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        remote_ip = request.remote or ""
        if self._stopping or self._local is None:
            raise web.HTTPServiceUnavailable(text=PeerReason.SHUTDOWN.value)
        if remote_ip and self.book.is_banned(ip_ban_key(remote_ip)):
            log.debug("event=inbound_refused remote=%s reason=banned", remote_ip)
            raise web.HTTPForbidden(text=PeerReason.BANNED.value)
        refusal = self._inbound_refusal(remote_ip)
        # Full, but a joining node may be asking its seed where the network is.
        answer_only = refusal is PeerReason.TOO_MANY_PEERS
        if answer_only and self._answering < self.limits.full_answers:
            refusal = None
        if self.limits.seed_mode and refusal is None:
            answer_only = True  # a seed answers every node, within the inbound caps
        if refusal is not None:
            log.debug("event=inbound_refused remote=%s reason=%s", remote_ip, refusal.value)
            raise web.HTTPServiceUnavailable(text=refusal.value)
        ws: web.WebSocketResponse = HandshakeWebSocketResponse(
            max_msg_size=MAX_WIRE_FRAME,
            compress=False,
            autoping=True,
            heartbeat=self.limits.heartbeat,
            timeout=self.limits.close_timeout,
        )
        await ws.prepare(request)
        self._links.open_ws.add(ws)
        self._pending_inbound[remote_ip] += 1
        if answer_only:
            self._answering += 1
            try:
                await self._answer_peers_and_close(ws, self._local, remote_ip)
            finally:
                self._answering -= 1
                self._pending_inbound[remote_ip] -= 1
                if self._pending_inbound[remote_ip] <= 0:
                    del self._pending_inbound[remote_ip]
                self._links.open_ws.discard(ws)
            return ws
        try:
            peer = await self._establish(ws, self._local, Direction.INBOUND, "", remote_ip)
        except P2PError as exc:
            await self._refuse(ws, exc, Direction.INBOUND, remote_ip)
            self._links.open_ws.discard(ws)
            return ws
        except BaseException:
            self._links.open_ws.discard(ws)
            await self._links.close_socket(ws, WSCloseCode.GOING_AWAY, PeerReason.SHUTDOWN)
            raise
        finally:
            self._pending_inbound[remote_ip] -= 1
            if self._pending_inbound[remote_ip] <= 0:
                del self._pending_inbound[remote_ip]
        await self._links.run(peer)
        return ws

    async def _answer_peers_and_close(
        self, ws: WebSocket, local: LocalNode, remote_ip: str
    ) -> None:
        """With every inbound slot taken: the handshake as usual (a joining node learns
        addresses only from the node it meant to dial), then one answer to the peer's
        GET_PEERS, within the handshake timeout, and a close with `too_many_peers`. The
        peer never joins the peer set, so it holds no slot and sees no gossip."""
        channel = WebSocketChannel(ws)
        try:
            async with asyncio.timeout(self.limits.handshake_timeout):
                identity, cipher = await run_handshake(
                    channel,
                    local,
                    initiator=False,
                    timeout=self.limits.handshake_timeout,
                    admit=lambda hello: self._admit(hello, None),
                )
                asker = self._dialable(remote_ip, identity.listen_address)
                if self.limits.seed_mode and asker:
                    # Its key is proven and its host is where it connected from: the
                    # next node to ask learns of it.
                    self.book.add_discovered(asker, identity.node_key, source=remote_ip)
                # A dialer sends STATUS, then GET_PEERS; a few frames are enough to
                # find it (whatever comes before is read and dropped).
                for _ in range(_FRAMES_BEFORE_GET_PEERS):
                    # (STATUS and GET_PEERS may come in one BATCH.)
                    frames = frames_in(decode(cipher.open(await channel.receive())))
                    if any(isinstance(frame, GetPeers) for frame in frames):
                        answer = encode(self._exchange.answer(asker))
                        await ws.send_bytes(cipher.seal(answer))
                        log.debug(
                            "event=full_node_answered peer=%s remote=%s",
                            identity.node_id[:16],
                            remote_ip,
                        )
                        break
        except (P2PError, TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            log.debug("event=full_node_answer_failed remote=%s error=%r", remote_ip, exc)
        reason = PeerReason.SEED_MODE if self.limits.seed_mode else PeerReason.TOO_MANY_PEERS
        await self._links.close_socket(ws, CLOSE_REFUSED, reason)

    def _inbound_refusal(self, remote_ip: str) -> PeerReason | None:
        """Why a new inbound connection from `remote_ip` must be refused, if it must.

        Every inbound connection counts, handshaking or connected: all of them against
        `max_inbound`, and, unless the IP is in an uncapped network, those of the same
        IP against `max_inbound_per_ip`, of the same subnet against
        `max_inbound_per_subnet` and of the same address group (/16, IPv6 /32) against
        `max_inbound_per_group`. One IP with a thousand generated keys gets its handful
        of slots and no more, one provider's range its share (eclipse).
        """
        remotes = list(self._pending_inbound.elements())
        remotes += [p.remote_ip for p in self._peers.values() if p.direction is Direction.INBOUND]
        # The caps per IP, subnet and group come first: a connection they refuse is
        # refused even as one that is only answered (a full node's `full_answers`).
        # Connections only answered count against them but not against `max_inbound`.
        slots_taken = len(remotes) - self._answering >= self.limits.max_inbound
        total = PeerReason.TOO_MANY_PEERS if slots_taken else None
        if not remote_ip or self.netgroups.is_exempt(remote_ip):
            return total
        # One IP in any spelling (`::ffff:a.b.c.d` is a.b.c.d), keyed as its ban is.
        key = ip_ban_key(remote_ip)
        if sum(1 for ip in remotes if ip_ban_key(ip) == key) >= self.limits.max_inbound_per_ip:
            return PeerReason.TOO_MANY_FROM_IP
        subnet = subnet_of(remote_ip)
        same_subnet = sum(1 for ip in remotes if ip and subnet_of(ip) == subnet)
        if same_subnet >= self.limits.max_inbound_per_subnet:
            return PeerReason.TOO_MANY_FROM_SUBNET
        group = address_group(remote_ip)
        same_group = sum(1 for ip in remotes if ip and address_group(ip) == group)
        if same_group >= self.limits.max_inbound_per_group:
            return PeerReason.TOO_MANY_FROM_GROUP
        return total

    async def _establish(
        self,
        ws: WebSocket,
        local: LocalNode,
        direction: Direction,
        dialed_address: str,
        remote_ip: str,
        *,
        expected_key: bytes | None = None,
        one_per_group: bool = False,
    ) -> Peer:
        """Handshake, then register the peer (replacing or refusing a duplicate, and,
        `one_per_group`, refusing a second outbound peer of its socket IP's group)."""

        def admit(hello: Hello) -> None:
            self._admit(hello, expected_key)

        identity, cipher = await run_handshake(
            WebSocketChannel(ws),
            local,
            initiator=direction is Direction.OUTBOUND,
            timeout=self.limits.handshake_timeout,
            admit=admit,
        )
        if self._stopping:
            raise HandshakeError(PeerReason.SHUTDOWN, "the network is stopping")
        ban = self.book.ban_of(node_ban_key(identity.node_key))
        if ban is not None:
            raise HandshakeError(PeerReason.BANNED, f"node key banned for {ban.reason}")
        address = dialed_address or self._dialable(remote_ip, identity.listen_address)
        if one_per_group:
            # Checked with no await before the peer is registered, so two dials of one
            # host under two names racing cannot both pass.
            self._check_group_free(remote_ip, dialed_address, identity.node_id)
        existing = self._peers.get(identity.node_id)
        announced: tuple[list[bytes], list[bytes]] = ([], [])
        if existing is not None:
            if not self._replaces(existing, direction, identity.node_key):
                raise HandshakeError(PeerReason.DUPLICATE_PEER, "already connected to this node")
            # Its tx announcements, the only frames lost with it that no protocol sends
            # again (docs/p2p.md, "Duplicate connections"), go on the new link.
            announced = self._tx_fetch.announcements_of(existing)
            # Both ends apply the same rule, so they keep the same connection.
            self._links.disconnect(
                existing, PeerReason.DUPLICATE_PEER, "replaced by a new connection"
            )
            self._detach(existing)
        loop = asyncio.get_running_loop()
        peer = Peer(
            ws,
            identity,
            cipher,
            direction,
            address,
            remote_ip,
            self.limits,
            loop.time(),
            self._clock(),
        )
        # Its own key's points only: those of its IP may be another node's (a NAT).
        carried = self._left_scores.recall(node_ban_key(peer.node_key), loop.time())
        if carried > 0:
            peer.score.add(carried, loop.time())
        self._peers[peer.peer_id] = peer
        if announced[0] or announced[1]:
            self._tx_fetch.announce_again(peer, *announced)
        if direction is Direction.OUTBOUND:
            self.book.record_success(dialed_address, identity.node_key)
        elif address:
            self.book.add_discovered(address, identity.node_key, source=remote_ip)
        log.info(
            "event=peer_connected peer=%s direction=%s address=%s",
            peer.short,
            direction.value,
            address or remote_ip,
        )
        self._links.send(peer, self._status_frame(), droppable=False)
        if direction is Direction.OUTBOUND:
            # CometBFT's rule: ask the peers we chose, not the ones that chose us.
            self._exchange.request(peer)
        self._call_host(self._host.on_peer_connected, peer.peer_id)
        return peer

    def _check_group_free(self, remote_ip: str, address: str, node_id: str) -> None:
        """Refuse a peer dialed at `address` by the outbound diversity rule if another
        outbound peer holds the group of the IP its socket reached: a name is judged only
        once dialed (late25p 2), `a.1-2-3-4.sslip.io` and `b.1-2-3-4.sslip.io` are two
        groups to `_dial_what_is_due` and one host here."""
        group = self._socket_group(remote_ip, address)
        if any(
            p.direction is Direction.OUTBOUND
            and p.peer_id != node_id  # the same node: the duplicate rule decides
            and self._socket_group(p.remote_ip, p.address) == group
            for p in self._peers.values()
        ):
            raise HandshakeError(
                PeerReason.TOO_MANY_FROM_GROUP,
                f"another outbound peer holds {group}, the group of {remote_ip}",
            )

    def _admit(self, hello: Hello, expected_key: bytes | None) -> None:
        """Refuse a HELLO before we sign for it: a banned key, or another key than the
        one we dialed the address by (before AUTH, so an impostor gets no signature)."""
        if expected_key is not None and hello.node_key != expected_key:
            raise HandshakeError(
                PeerReason.WRONG_NODE_KEY,
                f"expected node {expected_key.hex()[:16]}…, {hello.node_key.hex()[:16]}… answered",
            )
        ban = self.book.ban_of(node_ban_key(hello.node_key))
        if ban is not None:
            raise HandshakeError(PeerReason.BANNED, f"node key banned for {ban.reason}")

    def _replaces(self, existing: Peer, direction: Direction, their_key: bytes) -> bool:
        """Keep the connection dialed by the node with the smaller key; on a tie, the old."""
        ours = self._key.public_key
        new_dialer = ours if direction is Direction.OUTBOUND else their_key
        old_dialer = ours if existing.direction is Direction.OUTBOUND else existing.node_key
        return new_dialer < old_dialer

    def _dialable(self, remote_ip: str, advertised: str) -> str:
        """The address to share for an inbound peer: its observed IP, advertised port.

        Taking the host from the connection, not from HELLO, means a peer can only
        advertise itself, never point the network at a third party.
        """
        if not advertised or not remote_ip:
            return ""
        _host, port = parse_address(advertised)
        try:  # a link-local peer's IP with its zone (`fe80::1%eth0`) is dialable nowhere else
            return canonical_address(format_address(remote_ip, port))
        except ValueError:
            return ""

    async def _refuse(self, ws: WebSocket, exc: P2PError, direction: Direction, label: str) -> None:
        # No ban, neither of the key nor of the address: before AUTH nothing is
        # proven. The key exchange is unauthenticated (Noise NN), so a man in the middle
        # can finish it with either end and send anything sealed or not; a key named in
        # a HELLO whose AUTH failed may be anyone's; a close frame is unsealed. A ban for
        # any of it would let someone on the path get an honest node banned. Inbound
        # slots per IP/subnet/group and the handshake timeout bound what a stranger
        # sending garbage costs us.
        # Refusals that repeat by design (a banned or duplicate peer redialing) stay
        # out of the operator's log; the first one was logged when it happened.
        quiet = (PeerReason.DUPLICATE_PEER, PeerReason.BANNED, PeerReason.SHUTDOWN)
        level = logging.DEBUG if exc.reason in quiet else logging.INFO
        log.log(
            level,
            "event=handshake_failed direction=%s remote=%s reason=%s detail=%r",
            direction.value,
            label,
            exc.reason.value,
            exc.message,
        )
        await self._links.close_socket(ws, CLOSE_REFUSED, exc.reason)

    def _ip_bannable(self, ip: str) -> bool:
        parsed = parse_ip(ip)  # None: a dialed name whose socket gave no address: ban it
        return self.limits.ban_loopback or parsed is None or not parsed.is_loopback

    # -- frames of a connected peer (LinkOwner) -----------------------------------------

    def expects_answer(self, peer: Peer, data: bytes) -> bool:
        """Whether `data` claims to be a BLOCKS or PEERS answer we are waiting for.

        Peeks at the kind byte of a short array header; a frame lying about its kind
        fails to decode right after, so the peek cannot be abused.
        """
        if len(data) < 2 or not 0x91 <= data[0] <= 0x9F:
            return False
        if data[1] == Kind.BLOCKS:
            return self._blocks.expects_answer(peer)
        if data[1] in (Kind.SNAPSHOTS, Kind.SNAPSHOT_PART):
            return self._snapshots.expects_answer(peer)
        if data[1] == Kind.PROPOSAL_TXS:
            return self._proposal_txs.expects_answer(peer)
        if data[1] == Kind.TX_BODIES:
            return self._tx_fetch.expects_answer(peer)
        return data[1] == Kind.PEERS and self._exchange.expects_answer(peer)

    def route(self, peer: Peer, message: Message) -> None:
        """Give a checked frame to the part it belongs to; never blocks."""
        match message:
            case Gossip():
                self._relay.on_gossip(peer, message)
            case Status():
                peer.height, peer.head_hash = message.height, message.head_hash
                peer.base = message.base
            case GetBlocks() | GetPeers() | GetSnapshots() | GetSnapshotPart():
                if not self._links.enqueue(peer, message, b""):
                    self.misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, "inbox full")
            case Blocks():
                self._blocks.on_blocks(peer, message)
            case Peers():
                self._exchange.on_peers(peer, message)
            case Snapshots():
                self._snapshots.on_snapshots(peer, message)
            case SnapshotPart():
                self._snapshots.on_part(peer, message)
            case ProposalTxs() | GetProposalTxs() | TxIds() | GetTxs() | TxBodies():
                self._on_tx_frame(peer, message)
            case RoundState():
                self._on_round_state(peer, message)
            case Hello() | Auth():
                self.misbehave(
                    peer,
                    PeerReason.UNEXPECTED_MESSAGE,
                    POINTS_UNEXPECTED_MESSAGE,
                    f"{kind_of(message).name} after the handshake",
                )

    async def serve(self, peer: Peer, message: Message, message_id: bytes) -> None:
        """Act on one item of the peer's inbox (in its handler task)."""
        match message:
            case Gossip():
                await self._relay.deliver(peer, message, message_id)
                self._tx_fetch.handled(peer, message)  # fetched txs: their fetches end
            case GetBlocks():
                if message.start_height < self._host.status()[2]:
                    # Pruned (state-synced): our STATUS, naming our base, goes ahead of
                    # the empty answer, so the asker sees why it is empty (no fault).
                    self._links.send(peer, self._status_frame(), droppable=False)
                self._blocks.serve(peer, message)
            case GetPeers():
                self._exchange.serve(peer)
            case GetSnapshots():
                self._snapshots.serve_list(peer, message)
            case GetSnapshotPart():
                self._snapshots.serve_part(peer, message)

    def _on_tx_frame(
        self, peer: Peer, message: ProposalTxs | GetProposalTxs | TxIds | GetTxs | TxBodies
    ) -> None:
        """A tx request, answer or announcement, taken at once rather than queued behind
        the peer's gossip in its inbox: the asker's round (or tx) waits for it, and each is
        a few map lookups. Fetched txs then wait in the inbox like pushed ones."""
        if isinstance(message, ProposalTxs | GetProposalTxs):
            self._proposal_txs.on_frame(peer, message)
        else:
            self._tx_fetch.on_frame(peer, message)

    def _on_round_state(self, peer: Peer, message: RoundState) -> None:
        if self.consensus is None:
            return
        problem = self.consensus.on_round_state(peer.peer_id, message)
        if problem is not None:
            self.misbehave(peer, PeerReason.BAD_ROUND_STATE, POINTS_BAD_ROUND_STATE, problem)
            return
        # A node at height h has committed h - 1: its ROUND_STATE says what its STATUS
        # would, and the host sends no STATUS after a commit that one already told
        # (issue 22, wan23v). A claim like STATUS's: block sync checks what it serves.
        peer.height = max(peer.height, message.height - 1)

    def on_closed(self, peer: Peer, reason: PeerReason) -> None:
        """A connection ended: forget the peer; space out redials of one that dropped us."""
        self._detach(peer)
        if peer.direction is Direction.OUTBOUND and reason not in (
            PeerReason.SHUTDOWN,
            PeerReason.DUPLICATE_PEER,
        ):
            # Not a dial failure as such, but it spaces out reconnects to a peer
            # that keeps dropping us; a good handshake resets it.
            self.book.record_failure(peer.address)
            # A full node or a seed that only answered us: the handshake it gave us reset
            # the backoff, so without a hold-off every node it cannot take would redial
            # it (a full handshake) every `backoff_base`. A seed answers with what it
            # knows when asked, and many nodes may be joining at once: while this node
            # has found few peers, it asks the seed again after the backoff only.
            looking = reason is PeerReason.SEED_MODE and len(self._peers) < self.limits.max_outbound
            if reason in (PeerReason.TOO_MANY_PEERS, PeerReason.SEED_MODE) and not looking:
                self.book.hold_off(peer.address, self.limits.backoff_cap)
            self._wake.set()

    # -- misbehaviour and disconnects ------------------------------------------------

    def misbehave(self, peer: Peer, reason: PeerReason, points: float, detail: str) -> None:
        """Score a peer's fault; past `ban_threshold` ban its key (and IP) and disconnect.
        The points count toward its IP's too, and past the threshold there ban the IP alone
        (an attacker changing keys behind it): its other keys are not to blame."""
        now = asyncio.get_running_loop().time()
        score = peer.score.add(points, now)
        ip_key = self._ip_ban_key(peer)
        ip_score = 0.0 if ip_key is None else self._left_scores.add(ip_key, points, now)
        log.debug(
            "event=misbehaviour peer=%s reason=%s points=%s score=%.0f ip_score=%.0f detail=%r",
            peer.short,
            reason.value,
            points,
            score,
            ip_score,
            detail,
        )
        if peer.banned:
            return
        if score >= self.limits.ban_threshold:
            keys = self._ban_keys(peer)
        elif ip_key is not None and ip_score >= self.limits.ban_threshold:
            keys = [ip_key]
        else:
            return
        # Banned even if it is already leaving: the host often finishes validating a
        # peer's block after the peer has disconnected.
        peer.banned = True
        ban_reason = detail if reason is PeerReason.PUNISHED else reason.value
        for key in keys:
            self.book.ban(key, self.limits.ban_duration, ban_reason)
        log.info(
            "event=peer_banned peer=%s remote=%s reason=%s detail=%r duration_s=%d keys=%s",
            peer.short,
            peer.remote_ip,
            reason.value,
            detail,
            self.limits.ban_duration,
            ",".join(key.split(":", 1)[0] for key in keys),
        )
        self._links.disconnect(peer, reason, detail, wire_reason=PeerReason.BANNED)

    def forgive(self, peer: Peer, points: float) -> None:
        """Take back `points` a peer earned (and its IP with it) for a fault it made good
        since: a late answer delivering what was scored undelivered at its deadline."""
        now = asyncio.get_running_loop().time()
        peer.score.take_back(points, now)
        ip_key = self._ip_ban_key(peer)
        if ip_key is not None:
            self._left_scores.take_back(ip_key, points, now)

    def _ban_keys(self, peer: Peer) -> list[str]:
        """What a peer is banned by: its node key, and its IP where an IP may be banned."""
        ip_key = self._ip_ban_key(peer)
        return [node_ban_key(peer.node_key), *([] if ip_key is None else [ip_key])]

    def _ip_ban_key(self, peer: Peer) -> str | None:
        """The ban key of a peer's IP, if an IP may be banned (`_ip_bannable`)."""
        if peer.remote_ip and self._ip_bannable(peer.remote_ip):
            return ip_ban_key(peer.remote_ip)
        return None

    def _detach(self, peer: Peer) -> None:
        """Forget a peer: fail its requests, tell the host, log it. Idempotent."""
        if peer.detached:
            return
        peer.detached = True
        peer.closing = True
        # Under its key only (its IP's points were added as earned), banned or not: a ban
        # outlasts them, and a peer dropped for its IP's points keeps its own.
        now = asyncio.get_running_loop().time()
        self._left_scores.remember(node_ban_key(peer.node_key), peer.score.value(now), now)
        if self._peers.get(peer.peer_id) is peer:
            del self._peers[peer.peer_id]
        reason = peer.close_reason or PeerReason.CLOSED
        self._blocks.fail_pending(peer, reason)
        self._snapshots.fail_pending(peer, reason)
        self._proposal_txs.fail_pending(peer, reason)
        self._tx_fetch.forget_peer(peer)
        if self.consensus is not None:
            self.consensus.forget(peer.peer_id)
        level = logging.DEBUG if reason is PeerReason.DUPLICATE_PEER else logging.INFO
        log.log(
            level,
            "event=peer_disconnected peer=%s direction=%s reason=%s detail=%r dropped=%d",
            peer.short,
            peer.direction.value,
            reason.value,
            peer.close_detail,
            peer.dropped_frames,
        )
        self._call_host(self._host.on_peer_disconnected, peer.peer_id, reason.value)

    def _call_host(self, callback: Any, *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:  # a host bug must not take the p2p layer down with it
            log.warning("event=host_callback_failed callback=%s error=%r", callback, exc)

    # -- maintenance ------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Dial, exchange peers, heartbeat STATUS, and save the book, periodically."""
        loop = asyncio.get_running_loop()
        next_pex = next_status = next_save = loop.time()
        while not self._stopping:
            try:
                self._dial_what_is_due()
                now = loop.time()
                if now >= next_pex:
                    next_pex = now + self.limits.pex_interval
                    self._exchange.exchange()
                if now >= next_status:
                    next_status = now + self.limits.status_interval
                    self.update_status()
                if now >= next_save:
                    next_save = now + self.limits.save_interval
                    self.book.prune_bans()
                    if self.book.dirty:
                        self.book.save()
            except Exception as exc:  # keep maintaining; report the bug
                log.error("event=p2p_maintenance_failed error=%r", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.limits.dial_interval):
                    await self._wake.wait()

    def _dial_what_is_due(self) -> None:
        connected_keys = {peer.node_key for peer in self._peers.values()}
        connected_addresses = {peer.address for peer in self._peers.values()}

        def dialable(address: str, node_key: bytes | None) -> bool:
            return (
                address not in self._dialing
                and address not in connected_addresses
                and node_key not in connected_keys
            )

        for entry in self.book.due(persistent=True):
            if dialable(entry.address, entry.node_key):
                self._start_dial(entry.address)
        if self.limits.seed_mode:
            return  # a seed keeps no peer: it only answers, and asks its own seeds
        outbound = [p for p in self._peers.values() if p.direction is Direction.OUTBOUND]
        room = self.limits.max_outbound - len(outbound) - len(self._dialing)
        if room <= 0:
            return
        candidates = [
            entry.address
            for entry in self.book.due(persistent=False)
            if dialable(entry.address, entry.node_key)
        ]
        self._rng.shuffle(candidates)
        # One outbound connection per network group (Bitcoin Core's rule): the peers
        # this node picks itself are spread over as many networks as it knows, so an
        # attacker holding one network cannot become all of them.
        # A connected peer counts by the IP its socket reached (the group of an IP
        # under many names, late25p 2); a dial under way by its address, a name not
        # resolved yet, and `_establish` drops it if its IP's group is held by then.
        taken = {self._socket_group(p.remote_ip, p.address) for p in outbound}
        taken.update(self._group(a) for a in self._dialing)
        for address in candidates:
            if room <= 0:
                break
            group = self._group(address)
            if group in taken:
                continue
            taken.add(group)
            room -= 1
            self._start_dial(address, one_per_group=True)

    def _group(self, address: str) -> str:
        try:
            return self.netgroups.group(address)
        except ValueError:  # not host:port (an inbound peer's bare IP): a group of its own
            return "unparsed:" + address

    def _socket_group(self, remote_ip: str, address: str) -> str:
        """The outbound diversity group of a peer dialed at `address` whose socket
        reached `remote_ip`: that IP's, as the inbound caps and sources count it, unless
        it is in an uncapped network (each of the operator's peers counts alone) or the
        socket gave none."""
        if not remote_ip:
            return self._group(address)
        if self.netgroups.is_exempt(remote_ip):
            return "exempt:" + address
        return address_group(remote_ip)

    def _start_dial(self, address: str, *, one_per_group: bool = False) -> None:
        self._dialing.add(address)
        self.book.record_dial(address)
        self._tasks.spawn(
            self._dial(address, one_per_group=one_per_group), f"dial-{address}", starter=True
        )

    async def _dial(self, address: str, *, one_per_group: bool = False) -> None:
        try:
            await self.connect(address, one_per_group=one_per_group)
        except P2PError as exc:
            level = logging.DEBUG if exc.reason is PeerReason.CONNECT_FAILED else logging.INFO
            log.log(level, "event=dial_failed address=%s reason=%s", address, exc.reason.value)
            if exc.reason is PeerReason.TOO_MANY_FROM_GROUP and not isinstance(
                exc, PeerClosedError
            ):
                # Our own diversity rule, not the peer's fault: no failure counted (the
                # book forgets an address after `max_failures`), dialed again after
                # `backoff_cap`, when its group's outbound peer may have gone.
                self.book.hold_off(address, self.limits.backoff_cap)
            elif exc.reason not in (PeerReason.DUPLICATE_PEER, PeerReason.SELF_CONNECTION):
                self.book.record_failure(address)
        finally:
            self._dialing.discard(address)


NETWORK_KEY: Final = web.AppKey("p2p_network", Network)


async def _no_redirect(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """The dial's session middleware: `ws_connect` would follow a redirect (aiohttp's
    `allow_redirects` is not among its arguments), and a peer's address answering `302
    Location: http://169.254.169.254/` would have us fetch what no rule judged. A dial
    never follows one, to any address: its answer fails the upgrade (HTTP 3xx)."""
    response = await handler(request)
    if 300 <= response.status < 400:
        response.close()
        raise aiohttp.WSServerHandshakeError(
            response.request_info,
            (response,),
            status=response.status,
            message="a redirect, not followed",
            headers=response.headers,
        )
    return response


async def _handle_p2p(request: web.Request) -> web.StreamResponse:
    return await request.app[NETWORK_KEY]._accept(request)


async def _network_context(app: web.Application) -> AsyncIterator[None]:
    network = app[NETWORK_KEY]
    await network._open()
    yield
    await network._close()


async def _close_connections(app: web.Application) -> None:
    await app[NETWORK_KEY]._shutdown()
