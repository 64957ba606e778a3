"""The switch: websocket peers, gossip with duplicate suppression, block requests, bans.

One `Network` per node. It listens on `GET /p2p` (an aiohttp app served by its own
`AppRunner`/`TCPSite`), dials persistent and discovered peers with a shared
`ClientSession`, and runs per connection:

- a reader (the request handler for inbound peers, a task for outbound ones) that
  decodes and rate-limits every frame, answers STATUS/BLOCKS/PEERS itself and puts
  gossip and requests in the peer's bounded inbox;
- a handler task that hands the inbox to the host (`NetworkHost`) one frame at a time
  and relays what the host accepted;
- a writer task that drains the peer's bounded send queue, with a write timeout.

Whatever one of them raises ends that connection (logged with the peer and reason),
never the node. The host is the only judge of payloads; it reports bad ones with
`punish`. docs/p2p.md is the full description.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from fluxchain.core.crypto import HASH_SIZE, PUBKEY_SIZE, SigningKey
from p2p.consensus_gossip import ConsensusGossip
from p2p.errors import FrameError, HandshakeError, P2PError, PeerReason
from p2p.handshake import LocalNode, run_handshake
from p2p.limits import (
    POINTS_BAD_RESPONSE,
    POINTS_BAD_ROUND_STATE,
    POINTS_INVALID_FRAME,
    POINTS_OVERSIZE_FRAME,
    POINTS_RATE_LIMITED,
    POINTS_UNEXPECTED_MESSAGE,
    POINTS_UNSOLICITED,
    Limits,
)
from p2p.messages import (
    GOSSIP_KINDS,
    MAX_BLOCKS_PER_REQUEST,
    MAX_BLOCKS_RESPONSE_BYTES,
    MAX_FRAME,
    MAX_PEERS_PER_MESSAGE,
    Auth,
    Blocks,
    GetBlocks,
    GetPeers,
    Gossip,
    Hello,
    Kind,
    Peers,
    RoundState,
    Status,
    decode,
    encode,
    format_address,
    kind_of,
    parse_address,
)
from p2p.netgroup import Netgroups, address_group, subnet_of
from p2p.peer import (
    BoundedSet,
    Direction,
    Peer,
    SeenTimes,
    WebSocket,
    WebSocketChannel,
    abort_connection,
    close_reason_of,
    gossip_id,
    is_too_big,
)
from p2p.peerbook import Clock, PeerBook, PeerStore, ip_ban_key, node_ban_key

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
# Private-use websocket close code for every refusal and ban; the close message is the
# PeerReason, so the other side (and an operator reading its log) learns why.
CLOSE_REFUSED: Final = 4000
# Gossip kinds the consensus reactor may send again to a peer that lacks them.
_CONSENSUS_KINDS: Final = frozenset({Kind.PROPOSAL, Kind.VOTE})
# Reasons after which a failed handshake counts against the remote IP: only a broken
# or hostile implementation produces them. (A wrong chain is an honest mistake.)
_HOSTILE_HANDSHAKE: Final = frozenset(
    {PeerReason.BAD_AUTH, PeerReason.UNEXPECTED_MESSAGE, PeerReason.NOT_BINARY}
)


class NetworkHost(Protocol):
    """What the node provides to the network. Implemented by fluxchain.node."""

    def status(self) -> tuple[int, bytes]:
        """(latest confirmed height, its block hash); sent to peers in STATUS."""

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


class Network:
    """The p2p switch of one node. See the module docstring and docs/p2p.md."""

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
        for address in self._persistent:
            self.book.add_persistent(address)
        self._peers: dict[str, Peer] = {}
        self._seen = BoundedSet(self.limits.seen_cache_size)
        self._consensus_seen = SeenTimes(self.limits.seen_cache_size)
        # Per-peer consensus round state, fed by ROUND_STATE frames; the host's consensus
        # gossip loop plans from it (p2p/consensus_gossip.py). None: frames are ignored.
        self.consensus: ConsensusGossip | None = None
        self._dialing: set[str] = set()
        # Inbound connections between the HTTP upgrade and the end of the handshake, by
        # remote IP: they hold slots too, or a slow handshake would dodge the caps.
        self._pending_inbound: Counter[str] = Counter()
        self._open_ws: set[WebSocket] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Tasks that start new work (the maintenance loop, dials): cancelled first.
        self._starters: set[asyncio.Task[Any]] = set()
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
        advertised = self._advertise or format_address(self.listen_host, self.listen_port)
        self._local = LocalNode(self._key, self.chain_id, self.genesis_hash, advertised)
        self._starters.add(self._spawn(self._maintain(), "maintain"))
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
        self.book.load()
        self._session = aiohttp.ClientSession()

    async def _shutdown(self) -> None:
        """on_shutdown: close every websocket with GOING_AWAY, then wait for the tasks."""
        self._stopping = True
        for task in self._starters:
            task.cancel()
        for peer in list(self._peers.values()):
            self._disconnect(peer, PeerReason.SHUTDOWN, "node stopping")
        for ws in list(self._open_ws):
            self._spawn(
                self._close_socket(ws, WSCloseCode.GOING_AWAY, PeerReason.SHUTDOWN),
                "close",
            )
        await self._drain_tasks(self.limits.close_timeout + 1.0)

    async def _close(self) -> None:
        """Clean-up half of the app's cleanup context."""
        self._stopping = True
        await self._drain_tasks(0.0)
        if self._session is not None:
            await self._session.close()
            self._session = None
        try:
            self.book.save()
        except Exception as exc:  # a full disk must not prevent a clean stop
            log.warning("event=peer_book_save_failed error=%r", exc)
        log.info("event=p2p_stopped node=%s", self.node_id[:16])

    async def _drain_tasks(self, grace: float) -> None:
        """Let tasks finish for `grace` seconds, then cancel what is left and await it."""
        pending = {task for task in self._tasks if task is not asyncio.current_task()}
        if pending and grace > 0:
            _done, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"p2p-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._starters.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Every task catches what it expects; anything reaching here is a bug.
            log.error("event=p2p_task_failed task=%s error=%r", task.get_name(), task.exception())

    def _local_node(self) -> LocalNode:
        if self._local is None:
            raise P2PError(PeerReason.NOT_CONNECTED, "the network is not started")
        return self._local

    # -- public operations ------------------------------------------------------------

    def peers(self) -> list[PeerInfo]:
        """Every connected peer, by peer id."""
        now = asyncio.get_running_loop().time()
        return [self._info(peer, now) for _, peer in sorted(self._peers.items())]

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
        )

    def broadcast(self, kind: Kind, payload: bytes, exclude: str | None = None) -> int:
        """Gossip `payload` to every peer but `exclude`; return how many got it queued.

        The payload is marked as seen, so copies relayed back are not delivered to the
        host again. Peers that sent it to us are skipped; calling again re-sends to the
        others (a host re-gossiping its last vote for liveness), whose seen-sets drop it
        if they already had it.
        """
        if kind not in GOSSIP_KINDS:
            raise ValueError(f"{kind!r} is not a gossip kind")
        frame = encode(Gossip(kind, payload))
        if len(frame) > MAX_FRAME:
            raise P2PError(PeerReason.TOO_LARGE, f"gossip frame of {len(frame)} bytes")
        message_id = gossip_id(kind, payload)
        self._seen.add(message_id)
        if kind in _CONSENSUS_KINDS:
            self._consensus_seen.note(message_id, asyncio.get_running_loop().time())
        return self._send_gossip(kind, frame, message_id, self._peers.get(exclude or ""))

    def send_to(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        """Send one gossip payload to one peer (consensus gossip); True if queued.

        The peer's outgoing rate and byte budgets apply as for flooding; a frame they
        refuse is dropped, and the caller's per-peer state sends it again later.
        """
        peer = self._peers.get(peer_id)
        if peer is None or peer.closing or kind not in GOSSIP_KINDS:
            return False
        frame = encode(Gossip(kind, payload))
        now = asyncio.get_running_loop().time()
        bucket = peer.out_rates.get(kind)
        if (bucket is not None and not bucket.take(now)) or not peer.out_bytes.take(
            now, len(frame)
        ):
            peer.dropped_frames += 1
            return False
        return self._send(peer, frame, droppable=True)

    def send_round_state(self, state: RoundState, peer_ids: Iterable[str] | None = None) -> None:
        """Announce our consensus position to `peer_ids` (default: every peer)."""
        frame = encode(state)
        targets = self._peers if peer_ids is None else {p: None for p in peer_ids}
        for peer_id in list(targets):
            peer = self._peers.get(peer_id)
            if peer is not None:
                self._send(peer, frame, droppable=True)

    def forget(self, kind: Kind, payload: bytes) -> None:
        """Let the next copy of `payload` reach the host again.

        For a message the host could not keep yet (consensus: too far ahead, a full
        buffer) but may need later: left marked as seen, it could never come back.
        """
        message_id = gossip_id(kind, payload)
        self._seen.discard(message_id)
        self._consensus_seen.discard(message_id)

    def update_status(self) -> None:
        """Tell every peer our new head (the host calls this after each commit)."""
        frame = self._status_frame()
        for peer in list(self._peers.values()):
            self._send(peer, frame, droppable=True)

    def punish(self, peer_id: str, points: float, reason: str) -> None:
        """Add misbehaviour points to a peer (the host found its payload invalid).

        Past the threshold the peer is disconnected and banned. A peer that has
        already left is banned outright if `points` alone reach the threshold.
        """
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._misbehave(peer, PeerReason.PUNISHED, points, reason)
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
            self._disconnect(peer, reason, "requested by the host")

    async def request_blocks(
        self, peer_id: str, start_height: int, count: int, timeout: float = 10.0
    ) -> list[tuple[bytes, bytes]]:
        """Ask one peer for up to `count` (block, commit) pairs from `start_height`.

        Returns what the peer sent (possibly fewer, possibly none); the host checks
        that the blocks follow and their commits verify. Raises P2PError on timeout,
        disconnect, too many requests in flight, or a response that breaks the rules
        (the peer is also punished for the last).
        """
        if not 1 <= count <= MAX_BLOCKS_PER_REQUEST:
            raise ValueError(f"count must be in [1, {MAX_BLOCKS_PER_REQUEST}]")
        if start_height < 1:
            raise ValueError("start_height starts at 1")
        peer = self._peers.get(peer_id)
        if peer is None or peer.closing:
            raise P2PError(PeerReason.NOT_CONNECTED, f"no peer {peer_id[:16]}")
        if len(peer.pending) >= self.limits.max_inflight_requests:
            raise P2PError(PeerReason.TOO_MANY_REQUESTS, "too many requests in flight")
        request_id = peer.next_request_id
        peer.next_request_id = (request_id + 1) % (2**32)
        future: asyncio.Future[list[tuple[bytes, bytes]]] = (
            asyncio.get_running_loop().create_future()
        )
        peer.pending[request_id] = (future, count)
        try:
            self._send(peer, encode(GetBlocks(request_id, start_height, count)), droppable=False)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            peer.expired_requests.append(request_id)
            raise P2PError(
                PeerReason.TIMEOUT, f"no BLOCKS from {peer.short} within {timeout} s"
            ) from None
        finally:
            peer.pending.pop(request_id, None)

    async def connect(self, address: str) -> str:
        """Dial `address`, run the handshake, and return the peer id.

        Raises P2PError (HandshakeError for refusals) with the reason.
        """
        local = self._local_node()
        if self._session is None or self._stopping:
            raise P2PError(PeerReason.SHUTDOWN, "the network is stopping")
        try:
            host, _port = parse_address(address)
        except ValueError as exc:
            raise P2PError(PeerReason.CONNECT_FAILED, str(exc)) from None
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                ws = await self._session.ws_connect(
                    f"ws://{address}{P2P_PATH}",
                    max_msg_size=MAX_FRAME,
                    compress=0,
                    autoping=True,
                    heartbeat=self.limits.heartbeat,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self.limits.close_timeout),
                )
        except aiohttp.WSServerHandshakeError as exc:
            reason = {403: PeerReason.BANNED, 503: PeerReason.TOO_MANY_PEERS}.get(
                exc.status, PeerReason.CONNECT_FAILED
            )
            raise HandshakeError(reason, f"{address} answered HTTP {exc.status}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise P2PError(PeerReason.CONNECT_FAILED, f"{address}: {exc!r}") from None
        self._open_ws.add(ws)
        try:
            peer = await self._establish(ws, local, Direction.OUTBOUND, address, host)
        except P2PError as exc:
            if exc.reason is PeerReason.SELF_CONNECTION:
                self.book.mark_self(address)
            await self._refuse(ws, exc, Direction.OUTBOUND, address, host)
            self._open_ws.discard(ws)
            raise
        except BaseException:
            self._open_ws.discard(ws)
            await self._close_socket(ws, WSCloseCode.GOING_AWAY, PeerReason.SHUTDOWN)
            raise
        self._spawn(self._run_peer(peer), f"peer-{peer.short}")
        return peer.peer_id

    # -- connection set-up ------------------------------------------------------------

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        remote_ip = request.remote or ""
        if self._stopping or self._local is None:
            raise web.HTTPServiceUnavailable(text=PeerReason.SHUTDOWN.value)
        if remote_ip and self.book.is_banned(ip_ban_key(remote_ip)):
            log.debug("event=inbound_refused remote=%s reason=banned", remote_ip)
            raise web.HTTPForbidden(text=PeerReason.BANNED.value)
        refusal = self._inbound_refusal(remote_ip)
        if refusal is not None:
            log.debug("event=inbound_refused remote=%s reason=%s", remote_ip, refusal.value)
            raise web.HTTPServiceUnavailable(text=refusal.value)
        ws: web.WebSocketResponse = web.WebSocketResponse(
            max_msg_size=MAX_FRAME,
            compress=False,
            autoping=True,
            heartbeat=self.limits.heartbeat,
            timeout=self.limits.close_timeout,
        )
        await ws.prepare(request)
        self._open_ws.add(ws)
        self._pending_inbound[remote_ip] += 1
        try:
            peer = await self._establish(ws, self._local, Direction.INBOUND, "", remote_ip)
        except P2PError as exc:
            await self._refuse(ws, exc, Direction.INBOUND, remote_ip, remote_ip)
            self._open_ws.discard(ws)
            return ws
        except BaseException:
            self._open_ws.discard(ws)
            await self._close_socket(ws, WSCloseCode.GOING_AWAY, PeerReason.SHUTDOWN)
            raise
        finally:
            self._pending_inbound[remote_ip] -= 1
            if self._pending_inbound[remote_ip] <= 0:
                del self._pending_inbound[remote_ip]
        await self._run_peer(peer)
        return ws

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
        if len(remotes) >= self.limits.max_inbound:
            return PeerReason.TOO_MANY_PEERS
        if not remote_ip or self.netgroups.is_exempt(remote_ip):
            return None
        if remotes.count(remote_ip) >= self.limits.max_inbound_per_ip:
            return PeerReason.TOO_MANY_FROM_IP
        subnet = subnet_of(remote_ip)
        same_subnet = sum(1 for ip in remotes if ip and subnet_of(ip) == subnet)
        if same_subnet >= self.limits.max_inbound_per_subnet:
            return PeerReason.TOO_MANY_FROM_SUBNET
        group = address_group(remote_ip)
        same_group = sum(1 for ip in remotes if ip and address_group(ip) == group)
        if same_group >= self.limits.max_inbound_per_group:
            return PeerReason.TOO_MANY_FROM_GROUP
        return None

    async def _establish(
        self,
        ws: WebSocket,
        local: LocalNode,
        direction: Direction,
        dialed_address: str,
        remote_ip: str,
    ) -> Peer:
        """Handshake, then register the peer (replacing or refusing a duplicate)."""
        identity = await run_handshake(
            WebSocketChannel(ws), local, timeout=self.limits.handshake_timeout, admit=self._admit
        )
        if self._stopping:
            raise HandshakeError(PeerReason.SHUTDOWN, "the network is stopping")
        ban = self.book.ban_of(node_ban_key(identity.node_key))
        if ban is not None:
            raise HandshakeError(PeerReason.BANNED, f"node key banned for {ban.reason}")
        address = dialed_address or self._dialable(remote_ip, identity.listen_address)
        existing = self._peers.get(identity.node_id)
        if existing is not None:
            if not self._replaces(existing, direction, identity.node_key):
                raise HandshakeError(PeerReason.DUPLICATE_PEER, "already connected to this node")
            # Both ends apply the same rule, so they keep the same connection.
            self._disconnect(existing, PeerReason.DUPLICATE_PEER, "replaced by a new connection")
            self._detach(existing)
        loop = asyncio.get_running_loop()
        peer = Peer(
            ws, identity, direction, address, remote_ip, self.limits, loop.time(), self._clock()
        )
        self._peers[peer.peer_id] = peer
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
        self._send(peer, self._status_frame(), droppable=False)
        if direction is Direction.OUTBOUND:
            # CometBFT's rule: ask the peers we chose, not the ones that chose us.
            self._request_peers(peer)
        self._call_host(self._host.on_peer_connected, peer.peer_id)
        return peer

    def _admit(self, hello: Hello) -> None:
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
        return format_address(remote_ip, port)

    async def _refuse(
        self, ws: WebSocket, exc: P2PError, direction: Direction, label: str, remote_ip: str
    ) -> None:
        hostile = isinstance(exc, FrameError) or exc.reason in _HOSTILE_HANDSHAKE
        # A key named in a HELLO whose AUTH failed is not proven: banning it would let
        # anyone get any node banned. Only the address is held responsible.
        if hostile and remote_ip and self._ip_bannable(remote_ip):
            self.book.ban(ip_ban_key(remote_ip), self.limits.ban_duration, exc.reason.value)
            log.info(
                "event=peer_banned remote=%s reason=%s duration_s=%d",
                remote_ip,
                exc.reason.value,
                self.limits.ban_duration,
            )
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
        await self._close_socket(ws, CLOSE_REFUSED, exc.reason)

    def _ip_bannable(self, ip: str) -> bool:
        try:
            return self.limits.ban_loopback or not ipaddress.ip_address(ip).is_loopback
        except ValueError:  # a host name we dialed: ban it as given
            return True

    # -- a connected peer ---------------------------------------------------------------

    async def _run_peer(self, peer: Peer) -> None:
        """Run a peer until its connection ends; then tear everything of it down."""
        writer = self._spawn(self._guard(peer, self._write_loop(peer)), f"write-{peer.short}")
        handler = self._spawn(self._guard(peer, self._handle_loop(peer)), f"host-{peer.short}")
        try:
            await self._read_loop(peer)
        except asyncio.CancelledError:
            self._set_reason(peer, PeerReason.SHUTDOWN, "cancelled")
            raise
        except Exception as exc:
            self._set_reason(peer, PeerReason.INTERNAL_ERROR, repr(exc))
            log.info("event=peer_error peer=%s error=%r", peer.short, exc)
        finally:
            writer.cancel()
            handler.cancel()
            await asyncio.gather(writer, handler, return_exceptions=True)
            reason = peer.close_reason or PeerReason.CLOSED
            code = WSCloseCode.GOING_AWAY if reason is PeerReason.SHUTDOWN else CLOSE_REFUSED
            await self._close_socket(peer.ws, code, reason)
            self._open_ws.discard(peer.ws)
            self._detach(peer)
            if peer.direction is Direction.OUTBOUND and reason not in (
                PeerReason.SHUTDOWN,
                PeerReason.DUPLICATE_PEER,
            ):
                # Not a dial failure as such, but it spaces out reconnects to a peer
                # that keeps dropping us; a good handshake resets it.
                self.book.record_failure(peer.address)
                self._wake.set()

    async def _guard(self, peer: Peer, work: Coroutine[Any, Any, None]) -> None:
        """Run a peer's writer or handler; any failure ends the connection, not the node."""
        try:
            await work
        except P2PError as exc:
            self._disconnect(peer, exc.reason, exc.message)
        except (ConnectionError, aiohttp.ClientError) as exc:
            self._disconnect(peer, PeerReason.CLOSED, repr(exc))
        except Exception as exc:
            log.warning("event=peer_task_error peer=%s error=%r", peer.short, exc)
            self._disconnect(peer, PeerReason.INTERNAL_ERROR, repr(exc))

    async def _read_loop(self, peer: Peer) -> None:
        while True:
            msg = await peer.ws.receive()
            if msg.type is WSMsgType.BINARY:
                self._on_frame(peer, msg.data)
            elif msg.type is WSMsgType.TEXT:
                self._misbehave(peer, PeerReason.NOT_BINARY, POINTS_INVALID_FRAME, "text frame")
            elif msg.type is WSMsgType.ERROR:
                if is_too_big(msg.data):
                    self._misbehave(
                        peer, PeerReason.TOO_LARGE, POINTS_OVERSIZE_FRAME, "frame over limit"
                    )
                self._set_reason(peer, PeerReason.CLOSED, repr(msg.data))
                return
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                code, reason = close_reason_of(peer.ws, msg)
                self._set_reason(peer, reason, f"closed by the peer (code {code})")
                return

    def _on_frame(self, peer: Peer, data: bytes) -> None:
        """Check one frame and route it; never blocks, never raises for peer input."""
        if peer.closing:
            return
        now = asyncio.get_running_loop().time()
        # Answers to our own requests are paid for by the request; every other frame
        # spends the peer's byte budget, checked before decoding so that a flood of big
        # frames costs us a length comparison, not a parse.
        if not self._expected_answer(peer, data) and not peer.in_bytes.take(now, len(data)):
            self._misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, "bytes")
            return
        try:
            message = decode(data)
        except FrameError as exc:
            self._misbehave(peer, exc.reason, POINTS_INVALID_FRAME, exc.message)
            return
        kind = kind_of(message)
        bucket = peer.in_rates.get(kind)
        if bucket is not None and not bucket.take(now):
            self._misbehave(peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, kind.name)
            return
        match message:
            case Gossip():
                self._on_gossip(peer, message)
            case Status():
                peer.height, peer.head_hash = message.height, message.head_hash
            case GetBlocks() | GetPeers():
                try:
                    peer.inbox.put_nowait((message, b""))
                except asyncio.QueueFull:
                    self._misbehave(
                        peer, PeerReason.RATE_LIMITED, POINTS_RATE_LIMITED, "inbox full"
                    )
            case Blocks():
                self._on_blocks(peer, message)
            case Peers():
                self._on_peers(peer, message)
            case RoundState():
                self._on_round_state(peer, message)
            case Hello() | Auth():
                self._misbehave(
                    peer,
                    PeerReason.UNEXPECTED_MESSAGE,
                    POINTS_UNEXPECTED_MESSAGE,
                    f"{kind.name} after the handshake",
                )

    @staticmethod
    def _expected_answer(peer: Peer, data: bytes) -> bool:
        """Whether `data` claims to be a BLOCKS or PEERS answer we are waiting for.

        Peeks at the kind byte of a short array header; a frame lying about its kind
        fails to decode right after, so the peek cannot be abused.
        """
        if len(data) < 2 or not 0x91 <= data[0] <= 0x9F:
            return False
        if data[1] == Kind.BLOCKS:
            return bool(peer.pending or peer.expired_requests)
        return data[1] == Kind.PEERS and peer.peers_requested

    def _on_gossip(self, peer: Peer, message: Gossip) -> None:
        message_id = gossip_id(message.kind, message.payload)
        peer.known.add(message_id)
        relay_id = message_id
        if message.kind in _CONSENSUS_KINDS:
            # Consensus messages come back only through a peer's consensus gossip, which
            # sends what our ROUND_STATE says we lack: deliver such a copy again (the
            # first was lost or refused), but relay it no further (b"": no relay).
            now = asyncio.get_running_loop().time()
            if not self._consensus_seen.accept(
                message_id, now, self.limits.consensus_redeliver_after
            ):
                log.debug("event=gossip_duplicate peer=%s kind=%s", peer.short, message.kind.name)
                return
            relay_id = message_id if self._seen.add(message_id) else b""
        elif not self._seen.add(message_id):
            log.debug("event=gossip_duplicate peer=%s kind=%s", peer.short, message.kind.name)
            return
        try:
            peer.inbox.put_nowait((message, relay_id))
        except asyncio.QueueFull:
            # Forget it, so that another peer's copy can still reach the host.
            self._seen.discard(message_id)
            self._consensus_seen.discard(message_id)
            peer.dropped_frames += 1
            log.debug("event=gossip_dropped peer=%s reason=inbox_full", peer.short)

    def _on_round_state(self, peer: Peer, message: RoundState) -> None:
        if self.consensus is None:
            return
        problem = self.consensus.on_round_state(peer.peer_id, message)
        if problem is not None:
            self._misbehave(peer, PeerReason.BAD_ROUND_STATE, POINTS_BAD_ROUND_STATE, problem)

    def _on_blocks(self, peer: Peer, message: Blocks) -> None:
        pending = peer.pending.pop(message.request_id, None)
        if pending is None:
            if message.request_id not in peer.expired_requests:
                self._misbehave(
                    peer, PeerReason.UNSOLICITED, POINTS_UNSOLICITED, "BLOCKS nobody asked for"
                )
            return
        future, count = pending
        if len(message.blocks) > count:
            detail = f"{len(message.blocks)} blocks for a request of {count}"
            if not future.done():
                future.set_exception(P2PError(PeerReason.BAD_RESPONSE, detail))
            self._misbehave(peer, PeerReason.BAD_RESPONSE, POINTS_BAD_RESPONSE, detail)
            return
        if not future.done():
            future.set_result(list(message.blocks))

    def _on_peers(self, peer: Peer, message: Peers) -> None:
        if not peer.peers_requested:
            self._misbehave(
                peer, PeerReason.UNSOLICITED, POINTS_UNSOLICITED, "PEERS nobody asked for"
            )
            return
        peer.peers_requested = False
        own = self._local.listen_address if self._local else ""
        added = sum(
            1
            for address in message.addresses
            if address != own and self.book.add_discovered(address, source=peer.remote_ip)
        )
        log.debug("event=peers_received peer=%s count=%d", peer.short, added)
        if added:
            self._wake.set()

    async def _handle_loop(self, peer: Peer) -> None:
        """Hand the peer's inbox to the host, one frame at a time."""
        while True:
            message, message_id = await peer.inbox.get()
            match message:
                case Gossip():
                    try:
                        relay = await self._host.on_gossip(
                            peer.peer_id, message.kind, message.payload
                        )
                    except Exception as exc:
                        raise P2PError(PeerReason.HOST_ERROR, f"on_gossip: {exc!r}") from exc
                    if relay and message_id and not peer.closing:
                        self._send_gossip(message.kind, encode(message), message_id, peer)
                case GetBlocks():
                    self._serve_blocks(peer, message)
                case GetPeers():
                    self._serve_peers(peer)

    def _serve_blocks(self, peer: Peer, request: GetBlocks) -> None:
        try:
            pairs = self._host.get_blocks(request.start_height, request.count)
        except Exception as exc:
            raise P2PError(PeerReason.HOST_ERROR, f"get_blocks: {exc!r}") from exc
        chosen: list[tuple[bytes, bytes]] = []
        total = 0
        for block, commit in pairs[: request.count]:
            total += len(block) + len(commit)
            if total > MAX_BLOCKS_RESPONSE_BYTES:
                break  # the requester asks again from where this answer stops
            chosen.append((block, commit))
        self._send(peer, encode(Blocks(request.request_id, tuple(chosen))), droppable=False)

    def _serve_peers(self, peer: Peer) -> None:
        connected = [
            other.address for other in self._peers.values() if other.address and other is not peer
        ]
        self._rng.shuffle(connected)
        addresses = dict.fromkeys(connected[:MAX_PEERS_PER_MESSAGE])
        room = MAX_PEERS_PER_MESSAGE - len(addresses)
        for address in self.book.sample(room, exclude={peer.address, *addresses}):
            addresses[address] = None
        self._send(peer, encode(Peers(tuple(addresses))), droppable=True)

    def _request_peers(self, peer: Peer) -> None:
        if not peer.peers_requested:
            peer.peers_requested = True
            self._send(peer, encode(GetPeers()), droppable=True)

    async def _write_loop(self, peer: Peer) -> None:
        timeout = self.limits.write_timeout
        while True:
            frame = await peer.send_queue.get()
            try:
                async with asyncio.timeout(timeout):
                    await peer.ws.send_bytes(frame)
            except TimeoutError:
                raise P2PError(
                    PeerReason.SLOW_PEER, f"a frame took longer than {timeout} s to send"
                ) from None

    # -- sending --------------------------------------------------------------------

    def _send(self, peer: Peer, frame: bytes, *, droppable: bool) -> bool:
        """Queue `frame` for `peer`. A full queue drops gossip, disconnects otherwise."""
        if peer.closing:
            return False
        if peer.send_queue.put(frame):
            return True
        if droppable:
            peer.dropped_frames += 1
            log.debug("event=send_dropped peer=%s reason=queue_full", peer.short)
        else:
            self._disconnect(peer, PeerReason.SLOW_PEER, "send queue full")
        return False

    def _send_gossip(
        self, kind: Kind, frame: bytes, message_id: bytes, exclude: Peer | None
    ) -> int:
        now = asyncio.get_running_loop().time()
        sent = 0
        for peer in list(self._peers.values()):
            if peer is exclude or peer.closing or message_id in peer.known:
                continue
            bucket = peer.out_rates.get(kind)
            if (bucket is not None and not bucket.take(now)) or not peer.out_bytes.take(
                now, len(frame)
            ):
                peer.dropped_frames += 1
                continue
            if self._send(peer, frame, droppable=True):
                sent += 1
        return sent

    def _status_frame(self) -> bytes:
        height, head_hash = self._host.status()
        return encode(Status(height, head_hash))

    # -- misbehaviour and disconnects ------------------------------------------------

    def _misbehave(self, peer: Peer, reason: PeerReason, points: float, detail: str) -> None:
        now = asyncio.get_running_loop().time()
        score = peer.score.add(points, now)
        log.debug(
            "event=misbehaviour peer=%s reason=%s points=%s score=%.0f detail=%r",
            peer.short,
            reason.value,
            points,
            score,
            detail,
        )
        if score < self.limits.ban_threshold or peer.banned:
            return
        # Banned even if it is already leaving: the host often finishes validating a
        # peer's block after the peer has disconnected.
        peer.banned = True
        ban_reason = detail if reason is PeerReason.PUNISHED else reason.value
        self.book.ban(node_ban_key(peer.node_key), self.limits.ban_duration, ban_reason)
        if peer.remote_ip and self._ip_bannable(peer.remote_ip):
            self.book.ban(ip_ban_key(peer.remote_ip), self.limits.ban_duration, ban_reason)
        log.info(
            "event=peer_banned peer=%s remote=%s reason=%s detail=%r duration_s=%d",
            peer.short,
            peer.remote_ip,
            reason.value,
            detail,
            self.limits.ban_duration,
        )
        self._disconnect(peer, reason, detail, wire_reason=PeerReason.BANNED)

    def _set_reason(self, peer: Peer, reason: PeerReason, detail: str) -> None:
        if peer.close_reason is None:
            peer.close_reason = reason
            peer.close_detail = detail

    def _disconnect(
        self,
        peer: Peer,
        reason: PeerReason,
        detail: str,
        wire_reason: PeerReason | None = None,
    ) -> None:
        """Start closing `peer`'s connection; its reader then tears the rest down."""
        self._set_reason(peer, reason, detail)
        if peer.closing:
            return
        peer.closing = True
        wire = wire_reason or reason
        code = WSCloseCode.GOING_AWAY if wire is PeerReason.SHUTDOWN else CLOSE_REFUSED
        self._spawn(self._close_socket(peer.ws, code, wire), f"close-{peer.short}")

    def _detach(self, peer: Peer) -> None:
        """Forget a peer: fail its requests, tell the host, log it. Idempotent."""
        if peer.detached:
            return
        peer.detached = True
        peer.closing = True
        if self._peers.get(peer.peer_id) is peer:
            del self._peers[peer.peer_id]
        reason = peer.close_reason or PeerReason.CLOSED
        for future, _count in peer.pending.values():
            if not future.done():
                future.set_exception(P2PError(PeerReason.NOT_CONNECTED, f"peer gone: {reason}"))
        peer.pending.clear()
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

    async def _close_socket(self, ws: WebSocket, code: int, reason: PeerReason) -> None:
        """Close a websocket, telling the peer why; never raises, never takes longer
        than `close_timeout`.

        Then the TCP connection is shut down in any case: aiohttp's close stops reading
        and leaves the socket open until buffered data drains, which never happens with
        a peer that stopped reading, and our reader would wait forever. The close frame
        itself is already in the kernel's buffer, which a shutdown still delivers.
        """
        try:
            async with asyncio.timeout(self.limits.close_timeout):
                await ws.close(code=code, message=reason.value.encode())
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                abort_connection(ws)
                raise
            # Not our cancellation: aiohttp shares one drain waiter per connection, and
            # a write we cancelled (write timeout) leaves it cancelled for close().
        except Exception as exc:
            log.debug("event=close_failed error=%r", exc)
        abort_connection(ws)

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
                    self._exchange_peers()
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
        taken = {self._group(a) for a in [*(p.address for p in outbound), *self._dialing]}
        for address in candidates:
            if room <= 0:
                break
            group = self._group(address)
            if group in taken:
                continue
            taken.add(group)
            room -= 1
            self._start_dial(address)

    def _group(self, address: str) -> str:
        try:
            return self.netgroups.group(address)
        except ValueError:  # not host:port (an inbound peer's bare IP): a group of its own
            return "unparsed:" + address

    def _start_dial(self, address: str) -> None:
        self._dialing.add(address)
        self.book.record_dial(address)
        self._starters.add(self._spawn(self._dial(address), f"dial-{address}"))

    async def _dial(self, address: str) -> None:
        try:
            await self.connect(address)
        except P2PError as exc:
            level = logging.DEBUG if exc.reason is PeerReason.CONNECT_FAILED else logging.INFO
            log.log(level, "event=dial_failed address=%s reason=%s", address, exc.reason.value)
            if exc.reason not in (PeerReason.DUPLICATE_PEER, PeerReason.SELF_CONNECTION):
                self.book.record_failure(address)
        finally:
            self._dialing.discard(address)

    def _exchange_peers(self) -> None:
        """Ask one random peer for addresses while we could use more."""
        outbound = sum(1 for p in self._peers.values() if p.direction is Direction.OUTBOUND)
        if outbound >= self.limits.max_outbound and len(self.book) >= self.book.capacity:
            return
        candidates = [peer for peer in self._peers.values() if not peer.closing]
        if candidates:
            self._request_peers(self._rng.choice(candidates))


NETWORK_KEY: Final = web.AppKey("p2p_network", Network)


async def _handle_p2p(request: web.Request) -> web.StreamResponse:
    return await request.app[NETWORK_KEY]._accept(request)


async def _network_context(app: web.Application) -> AsyncIterator[None]:
    network = app[NETWORK_KEY]
    await network._open()
    yield
    await network._close()


async def _close_connections(app: web.Application) -> None:
    await app[NETWORK_KEY]._shutdown()
