"""A small harness for p2p tests: in-process nodes on 127.0.0.1, a recording host, a raw
peer that speaks (or abuses) the protocol by hand (waits: tests.support.wait).

Every scenario runs inside `run(...)`, which gives it a hard deadline and checks that
no task is left behind once every node has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import aiohttp

from fluxchain.core.crypto import SigningKey, sha256
from p2p.consensus_gossip import ConsensusGossip
from p2p.errors import HandshakeError, PeerReason
from p2p.handshake import LocalNode, new_hello, sign_auth
from p2p.limits import Limits, Rate, default_rates
from p2p.messages import MAX_FRAME, Auth, Hello, Kind, Message, decode, encode, frames_in
from p2p.netgroup import LOOPBACK_NETWORKS
from p2p.network import P2P_PATH, Network, PeerInfo
from p2p.noise import LinkCipher, NNHandshake
from p2p.peerbook import Clock, MemoryPeerStore, PeerStore
from p2p.tx_fetch import TxPool
from tests.support.clock import run_on_clock_loop
from tests.support.wait import wait_until_async

if TYPE_CHECKING:
    from fluxchain.node.node import Node as FullNode

CHAIN_ID = "fluxchain-p2p-test"
GENESIS_HASH = sha256(b"p2p test genesis")


def fast_limits(**overrides: Any) -> Limits:
    """Production limits with timers shrunk so that tests take milliseconds."""
    rates = dict(default_rates())
    rates[Kind.GET_PEERS] = Rate(50, 50)  # peer exchange every 0.1 s in tests
    base = Limits(
        handshake_timeout=2.0,
        connect_timeout=2.0,
        close_timeout=0.5,
        heartbeat=5.0,
        dial_interval=0.05,
        pex_interval=0.1,
        status_interval=0.2,
        save_interval=0.2,
        backoff_base=0.05,
        backoff_cap=0.4,
        rates=MappingProxyType(rates),
        # Every test node is 127.0.0.1, as on a devnet; the eclipse tests turn this off.
        uncapped_networks=LOOPBACK_NETWORKS,
    )
    return replace(base, **overrides)


def limits_with_rates(limits: Limits, **rates: Rate) -> Limits:
    table = dict(limits.rates)
    for name, rate in rates.items():
        table[Kind[name]] = rate
    return replace(limits, rates=MappingProxyType(table))


class RecordingHost:
    """A NetworkHost that records what it is told and serves blocks from a list."""

    def __init__(self, blocks: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self.network: Network | None = None
        self.gossip: list[tuple[str, Kind, bytes]] = []
        self.connected: list[str] = []
        self.disconnected: list[tuple[str, str]] = []
        self.blocks = list(blocks)
        self.invalid: set[bytes] = set()  # payloads this host finds invalid

    def status(self) -> tuple[int, bytes, int]:
        if not self.blocks:
            return 0, GENESIS_HASH, 1
        return len(self.blocks), sha256(self.blocks[-1][0]), 1

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        self.gossip.append((peer_id, kind, payload))
        if payload in self.invalid:
            assert self.network is not None
            self.network.punish(peer_id, 100, "bad_signature")
            return False
        return True

    def get_blocks(self, start_height: int, count: int) -> list[tuple[bytes, bytes]]:
        return self.blocks[start_height - 1 : start_height - 1 + count]

    def on_peer_connected(self, peer_id: str) -> None:
        self.connected.append(peer_id)

    def on_peer_disconnected(self, peer_id: str, reason: str) -> None:
        self.disconnected.append((peer_id, reason))

    def payloads(self, kind: Kind = Kind.TX) -> list[bytes]:
        return [payload for _peer, got, payload in self.gossip if got == kind]


@dataclass
class Node:
    network: Network
    host: RecordingHost
    key: SigningKey

    @property
    def id(self) -> str:
        return self.network.node_id

    @property
    def address(self) -> str:
        return self.network.listen_address

    def peer_ids(self) -> set[str]:
        return {info.peer_id for info in self.network.peers()}

    def peer(self, peer_id: str) -> PeerInfo | None:
        return next((p for p in self.network.peers() if p.peer_id == peer_id), None)


@dataclass
class Cluster:
    """Nodes started by a test; all of them are stopped when the test ends."""

    nodes: list[Node] = field(default_factory=list)

    async def add(
        self,
        *,
        persistent: Iterable[str] = (),
        limits: Limits | None = None,
        key: SigningKey | None = None,
        chain_id: str = CHAIN_ID,
        genesis_hash: bytes = GENESIS_HASH,
        port: int = 0,
        clock: Clock | None = None,
        store: PeerStore | None = None,
        host: RecordingHost | None = None,
        consensus: ConsensusGossip | None = None,
        tx_pool: TxPool | None = None,
        advertise: str | None = None,
        learn_loopback: bool = False,
    ) -> Node:
        """A started node. `learn_loopback`: it learns loopback addresses from peers
        though its limits are a public node's (`uncapped_networks=()`), which no config
        has (a node's own advertised loopback address, or loopback uncapped, is the
        signal): the cap tests' one-machine nodes, which reach each other only there."""
        key = key or SigningKey.generate()
        host = host or RecordingHost()
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        network = Network(
            host,
            key,
            chain_id=chain_id,
            genesis_hash=genesis_hash,
            listen_port=port,
            advertise_address=advertise,
            persistent_peers=persistent,
            limits=limits or fast_limits(),
            store=store or MemoryPeerStore(),
            consensus=consensus,
            tx_pool=tx_pool,
            **extra,
        )
        if learn_loopback:
            network._learn_rule = replace(network._learn_rule, loopback=True)
        host.network = network
        await network.start()
        node = Node(network, host, key)
        self.nodes.append(node)
        return node

    async def stop(self, node: Node) -> None:
        await node.network.stop()
        if node in self.nodes:
            self.nodes.remove(node)

    async def stop_all(self) -> None:
        for node in list(self.nodes):
            await self.stop(node)

    def describe(self) -> str:
        lines = []
        for node in self.nodes:
            peers = ", ".join(
                f"{p.peer_id[:8]}({p.direction.value},h={p.height})" for p in node.network.peers()
            )
            lines.append(f"  {node.id[:8]} @ {node.address}: [{peers}]")
        return "\n".join(lines)


async def link(dialer: Node, listener: Node) -> None:
    """`dialer` dials `listener` and the two end up linked; a redial of either (a
    persistent peer, an address learned from a HELLO or by peer exchange) may link them
    first, which a loaded machine makes likely, so `duplicate_peer` counts as linked."""
    try:
        assert await dialer.network.connect(listener.address) == listener.id
    except HandshakeError as exc:
        assert exc.reason is PeerReason.DUPLICATE_PEER, exc
    assert listener.id in dialer.peer_ids()


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    nodes = Cluster()
    try:
        yield nodes
    except BaseException as exc:
        exc.add_note("nodes at failure:\n" + nodes.describe())
        raise
    finally:
        await nodes.stop_all()


def run(
    scenario: Callable[[], Coroutine[Any, Any, None]], timeout: float = 20.0, *, clock: bool = False
) -> None:
    """Run one scenario with a hard deadline, then check that it leaked no task. `clock`:
    on a ClockLoop (tests/support/clock.py), whose skips count against the deadline."""

    async def main() -> None:
        async with asyncio.timeout(timeout):
            await scenario()
        current = asyncio.current_task()
        # aiohttp closes transports on the next loop iterations; give them a few.
        for _ in range(20):
            leftover = [t for t in asyncio.all_tasks() if t is not current]
            if not leftover:
                break
            await asyncio.sleep(0.01)
        assert not leftover, f"tasks left behind: {leftover}"

    if clock:
        run_on_clock_loop(main)
    else:
        asyncio.run(main())


class RawPeer:
    """A hand-driven client of a node's /p2p endpoint, for crafted and hostile frames.

    It dials, so it initiates the key exchange (`secure`); from then on `send`,
    `send_raw` and `receive` seal and open frames with the link's cipher, as a real peer
    does, and `send_wire` puts bytes on the websocket as they are (what an on-path
    attacker without the keys can do).
    """

    def __init__(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, key: SigningKey
    ) -> None:
        self.session = session
        self.ws = ws
        self.key = key
        self.cipher: LinkCipher | None = None
        self.unbatched: deque[Message] = deque()  # frames of a BATCH not yet returned

    @classmethod
    async def connect(
        cls, address: str, key: SigningKey | None = None, *, local_ip: str | None = None
    ) -> RawPeer:
        """Open the websocket; `local_ip` binds our end (any 127.x.y.z works on Linux)."""
        connector = aiohttp.TCPConnector(local_addr=(local_ip, 0)) if local_ip else None
        session = aiohttp.ClientSession(connector=connector)
        try:
            ws = await session.ws_connect(
                f"ws://{address}{P2P_PATH}", max_msg_size=2 * MAX_FRAME, compress=0
            )
        except BaseException:
            await session.close()
            raise
        return cls(session, ws, key or SigningKey.generate())

    @property
    def id(self) -> str:
        return self.key.public_key.hex()

    async def handshake(
        self,
        *,
        chain_id: str = CHAIN_ID,
        genesis_hash: bytes = GENESIS_HASH,
        version: int | None = None,
        corrupt_signature: bool = False,
    ) -> Hello:
        """Do our half of the handshake by hand; return the node's HELLO."""
        cipher = self.cipher or await self.secure()
        local = LocalNode(self.key, chain_id, genesis_hash, "")
        hello = new_hello(local, b"\x07" * 32)
        if version is not None:
            hello = replace(hello, version=version)
        await self.send(hello)
        theirs = await self.receive()
        assert isinstance(theirs, Hello), theirs
        auth = sign_auth(local, cipher.handshake_hash, theirs)
        if corrupt_signature:
            auth = Auth(bytes([auth.signature[0] ^ 1]) + auth.signature[1:])
        await self.send(auth)
        return theirs

    async def secure(self) -> LinkCipher:
        """Run the key exchange (we dialed, so we initiate); later frames are sealed."""
        noise = NNHandshake(initiator=True)
        await self.ws.send_bytes(noise.write_message_1())
        msg = await self.ws.receive(timeout=3.0)
        assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
        noise.read_message_2(msg.data)
        self.cipher = noise.finish()
        return self.cipher

    async def send(self, message: Message) -> None:
        await self.send_raw(encode(message))

    async def send_raw(self, data: bytes) -> None:
        """Send `data` as one frame: sealed once the link is secured, as it is before."""
        await self.send_wire(data if self.cipher is None else self.cipher.seal(data))

    async def send_wire(self, data: bytes) -> None:
        """Put `data` on the websocket as it is, sealed or not."""
        await self.ws.send_bytes(data)

    async def receive(self, timeout: float = 3.0) -> Message:
        """The next frame the node sent: a BATCH is taken apart, its frames returned one
        by one in order, as the node's own reader takes them."""
        if self.unbatched:
            return self.unbatched.popleft()
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.BINARY, (msg.type, msg.data, msg.extra)
        self.unbatched.extend(self.frames_of(msg.data))
        return self.unbatched.popleft()

    def frames_of(self, data: bytes) -> list[Message]:
        """The frames in a binary websocket message the node sent (opened once secured):
        one, or those of a BATCH in order."""
        return frames_in(decode(data if self.cipher is None else self.cipher.open(data)))

    async def receive_kind(self, kind: type[Any], timeout: float = 3.0) -> Any:
        """The next frame of type `kind`, skipping others (STATUS, GET_PEERS…)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive(timeout)
                if isinstance(message, kind):
                    return message

    async def closed_with(self, timeout: float = 3.0) -> tuple[int | None, str]:
        """Read until the node closes the connection; return (close code, reason)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    return msg.data, msg.extra or ""
                if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return self.ws.close_code, ""
                if msg.type is aiohttp.WSMsgType.ERROR:
                    return self.ws.close_code, repr(msg.data)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self.session.close()


@contextlib.asynccontextmanager
async def raw_peer(address: str, key: SigningKey | None = None) -> AsyncIterator[RawPeer]:
    peer = await RawPeer.connect(address, key)
    try:
        yield peer
    finally:
        await peer.close()


@contextlib.asynccontextmanager
async def accepted_raw_peer(
    address: str, chain_id: str, genesis_hash: bytes, peers: Callable[[], Iterable[str]]
) -> AsyncIterator[RawPeer]:
    """A raw peer that completed the handshake and that the node lists among `peers()`
    (its peer ids), so that what it sends next is judged as a peer's."""
    async with raw_peer(address) as peer:
        await peer.handshake(chain_id=chain_id, genesis_hash=genesis_hash)
        await wait_until_async(lambda: peer.id in set(peers()), what="the raw peer connected")
        yield peer


@contextlib.asynccontextmanager
async def node_raw_peer(node: FullNode) -> AsyncIterator[RawPeer]:
    """`accepted_raw_peer` on a running full node's p2p port, its chain and its peers."""
    async with accepted_raw_peer(
        f"127.0.0.1:{node.config.p2p_port}",
        node.genesis.chain_id,
        node.chain.genesis_hash,
        lambda: (p.peer_id for p in node.network.peers()),
    ) as peer:
        yield peer
