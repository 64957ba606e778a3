"""The full node: the composition root that wires store, mempool, consensus, p2p and API.

`Node(home).run()` opens the chain, starts the p2p listener and dials peers, syncs if it
is behind, runs consensus, serves the API, and does its duties, until SIGINT/SIGTERM;
then it stops everything in reverse order and returns. A restart resumes from the last
committed block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Final

from aiohttp import web

from consensus.events import ProposalReceived, VoteReceived
from consensus.messages import Proposal
from consensus.signer import FileSignerStore, SignerGuard
from consensus.timeouts import TimeoutParams
from fluxchain.api.server import create_app
from fluxchain.core.block import Block
from fluxchain.core.encoding import as_bytes, as_list, pack, unpack
from fluxchain.core.errors import DecodeError, FluxError, Reason, TxError
from fluxchain.core.tx import Benchmark, Tx
from fluxchain.core.votes import Commit, Vote
from fluxchain.node.agent_link import AgentLink, load_or_create_token
from fluxchain.node.benchmark import cap
from fluxchain.node.driver import Driver, SyncedBlocks, decode_proposal, encode_proposal
from fluxchain.node.duties import Duties, threaded_benchmark
from fluxchain.node.home import Home
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from fluxchain.node.wal import ConsensusWal
from fluxchain.store.chain import Chain
from fluxchain.store.verifier import VerifierPool
from p2p.messages import MAX_FRAME, Kind
from p2p.network import Network
from p2p.peerbook import node_ban_key

log = logging.getLogger("fluxchain.node")

SYNC_BATCH: Final = 50  # blocks per request; several requests go to several peers at once
SYNC_PARALLEL: Final = 3
SYNC_INTERVAL_S: Final = 0.5
ISOLATE_S: Final = 10.0  # SIGUSR1 drill: how long the node stays cut off from its peers
REGOSSIP_S: Final = 2.0  # re-send our last vote if a height makes no progress
STATUS_EVERY_S: Final = 0.2  # well under peers' STATUS rate limit (20/s)
# Txs admitted in one turn of the event loop leave in one TXS frame: a websocket frame
# costs both ends far more than the ~130 bytes of a transfer. A frame closes at either
# bound: 2,000 transfers are ~260 KiB; the byte bound is for large txs (app specs).
MAX_TXS_PER_FRAME: Final = 2_000
MAX_TXS_FRAME_BYTES: Final = 1024 * 1024
# Tx refusals that prove the sender sent garbage (as opposed to racing a nonce or a full pool).
_MALICIOUS: Final = frozenset(
    {
        Reason.BAD_SIGNATURE,
        Reason.MALFORMED,
        Reason.NON_CANONICAL,
        Reason.BAD_FIELD,
        Reason.UNKNOWN_KIND,
        Reason.UNKNOWN_VERSION,
        Reason.TOO_LARGE,
    }
)


class PeerBookInDb:
    """The p2p peer book, kept in the node's LevelDB."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain

    def load(self) -> bytes | None:
        return self._chain.db.get_meta(b"peers")

    def save(self, data: bytes) -> None:
        self._chain.db.put_meta(b"peers", data)


class Node:
    """One fluxchain node process."""

    def __init__(self, home: Home, *, timeouts: TimeoutParams | None = None) -> None:
        self.home = home
        self.config = home.config()
        self.genesis = home.genesis()
        self.key = home.node_key()
        self.timeouts = timeouts
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_progress = time.monotonic()
        self._status_pending = False
        self._outgoing_txs: list[bytes] = []
        self._outgoing_bytes = 0

    async def run(self) -> None:
        """Start everything, wait for a stop signal, stop everything."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, self.isolate, ISOLATE_S)
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def start(self) -> None:
        cfg = self.config
        # Forked first, before the chain's files are open or any thread runs. The importing
        # process verifies beside its workers, so one worker per other core.
        self.verifier = VerifierPool((os.cpu_count() or 1) - 1)
        self.chain = Chain.open(self.home.data, self.genesis)
        self.chain.use_verifier(self.verifier)
        agent = AgentLink(load_or_create_token(self.home.path), expected=cfg.agent)
        self.service = NodeService(self.chain, Mempool(), agent)
        self.guard = SignerGuard(self.key, self.genesis.chain_id, FileSignerStore(self.home.path))
        self.network = Network(
            self,
            self.key,
            chain_id=self.genesis.chain_id,
            genesis_hash=self.chain.genesis_hash,
            listen_host=cfg.p2p_host,
            listen_port=cfg.p2p_port,
            persistent_peers=cfg.persistent_peers,
            store=PeerBookInDb(self.chain),
        )
        self.service.gossip = self._gossip_tx
        self.service.peer_count = lambda: len(self.network.peers())
        self.duties = Duties(
            self.key,
            self.chain.params,
            lambda: self.chain.state,
            self.service.next_nonce,
            self.service.submit,
            self._benchmark,
            unfit=agent.problem,
        )
        self.driver = Driver(
            self.service,
            self.key,
            self.guard,
            self,
            self.timeouts,
            on_commit=self._on_commit,
            wal=ConsensusWal(self.home.path / "consensus.wal"),
            on_refused=self._forget_refused,
        )
        self.service.consensus_round = lambda: self.driver.round
        await self.network.start()
        self.api_runner = web.AppRunner(create_app(self.service), access_log=None)
        await self.api_runner.setup()
        await web.TCPSite(self.api_runner, cfg.api_host, cfg.api_port).start()
        self.driver.start()
        self._tasks = [
            asyncio.get_running_loop().create_task(self._sync_loop(), name="sync"),
        ]
        log.info(
            "node started moniker=%s height=%d p2p=%s:%d api=%s:%d key=%s",
            cfg.moniker,
            self.chain.height,
            cfg.p2p_host,
            cfg.p2p_port,
            cfg.api_host,
            cfg.api_port,
            self.key.public_key.hex()[:16],
        )
        if cfg.duties:
            self.duties.on_committed(self.chain.height, attest=False)

    async def _benchmark(self) -> Benchmark:
        """The machine's benchmark, lowered to what the agent's runtime can give."""
        bench = await threaded_benchmark(self.home.data, self.config.bandwidth_mbit)
        capacity = self.service.agent.capacity()
        if capacity is None:
            return bench
        return cap(bench, cores=capacity.cores, ram_mb=capacity.ram_mb, disk_gb=capacity.disk_gb)

    async def stop(self) -> None:
        """Stop in reverse order of start; the chain is closed last, after every writer."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.driver.stop()
        await self.api_runner.cleanup()
        await self.network.stop()
        self.verifier.close()
        if self.driver.wal is not None:
            self.driver.wal.close()
        self.chain.close()
        log.info("node stopped height=%d", self.chain.height)

    def isolate(self, seconds: float) -> None:
        """Drop every peer and refuse them for `seconds` (SIGUSR1: a partition drill)."""
        peers = self.network.peers()
        for peer in peers:
            self.network.book.ban(node_ban_key(peer.node_key), seconds, "isolated by operator")
            self.network.disconnect(peer.peer_id)
        log.warning("isolated from peers=%d for %.0fs", len(peers), seconds)

    # -- gossip out ------------------------------------------------------------------------

    def _broadcast(self, kind: Kind, payload: bytes) -> None:
        self.network.broadcast(kind, payload)

    def _gossip_tx(self, tx: Tx) -> None:
        """Queue an admitted tx for the TXS frame that leaves when this loop turn ends."""
        if not self._outgoing_txs:
            asyncio.get_running_loop().call_soon(self._flush_txs)
        self._outgoing_txs.append(tx.raw)
        self._outgoing_bytes += len(tx.raw)
        if (
            len(self._outgoing_txs) >= MAX_TXS_PER_FRAME
            or self._outgoing_bytes >= MAX_TXS_FRAME_BYTES
        ):
            self._flush_txs()

    def _flush_txs(self) -> None:
        if self._outgoing_txs:
            batch, self._outgoing_txs, self._outgoing_bytes = self._outgoing_txs, [], 0
            self._broadcast(Kind.TXS, pack(batch))

    def broadcast_proposal(self, payload: bytes) -> None:
        self.network.broadcast(Kind.PROPOSAL, payload)

    def broadcast_vote(self, payload: bytes) -> None:
        self.network.broadcast(Kind.VOTE, payload)

    def _forget_refused(self, message: Proposal | Vote, block_bytes: bytes) -> None:
        """Consensus could not keep this message now: let a peer's next copy through."""
        if isinstance(message, Vote):
            self.network.forget(Kind.VOTE, pack(message.to_fields()))
        else:
            self.network.forget(Kind.PROPOSAL, encode_proposal(message, block_bytes))

    def _on_commit(self, height: int) -> None:
        self._last_progress = time.monotonic()
        if not self._status_pending:
            # Sync commits hundreds of blocks a second; peers rate-limit STATUS, so tell
            # them at most once per STATUS_EVERY_S, with the height reached by then.
            self._status_pending = True
            asyncio.get_running_loop().call_later(STATUS_EVERY_S, self._send_status)
        if self.config.duties:
            self.duties.on_committed(height)

    def _send_status(self) -> None:
        self._status_pending = False
        self.network.update_status()

    # -- NetworkHost -----------------------------------------------------------------------

    def status(self) -> tuple[int, bytes]:
        return self.chain.height, self.chain.head_hash

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        chain_id = self.genesis.chain_id
        try:
            if kind is Kind.TX:
                return self._on_txs(peer_id, [payload])
            if kind is Kind.TXS:
                return self._on_txs(peer_id, _decode_txs_payload(payload))
            if kind is Kind.VOTE:
                vote = Vote.from_fields(unpack(payload))
                if not vote.verify(chain_id):
                    raise DecodeError(Reason.BAD_SIGNATURE, "vote signature")
                if vote.height < self.chain.height:
                    return False  # old news; peers that need it sync the block instead
                self.driver.submit(VoteReceived(vote))
                return True
            if kind is Kind.PROPOSAL:
                proposal, block_bytes = decode_proposal(payload, self.chain.params.max_block_bytes)
                if not proposal.verify(chain_id):
                    raise DecodeError(Reason.BAD_SIGNATURE, "proposal signature")
                if proposal.height <= self.chain.height:
                    return False
                self.driver.submit(ProposalReceived(proposal, block_bytes))
                return True
        except FluxError as exc:
            self.network.punish(peer_id, 100, f"{kind.name.lower()}: {exc.reason}")
            return False
        return False  # EVIDENCE travels as an EVIDENCE tx

    def _on_txs(self, peer_id: str, raws: list[bytes]) -> bool:
        """Admit gossiped txs; relay the frame if any of them was new and valid."""
        relay, garbage = False, None
        for raw in raws:
            try:
                self.service.submit(raw, from_peer=True)
            except TxError as exc:
                if exc.reason in _MALICIOUS:
                    garbage = exc.reason
                continue
            relay = True
        if garbage is not None:
            self.network.punish(peer_id, 25, f"tx: {garbage}")
        return relay

    def get_blocks(self, start_height: int, count: int) -> list[tuple[bytes, bytes]]:
        out = []
        for height in range(start_height, min(start_height + count, self.chain.height + 1)):
            block = self.chain.get_block_bytes(height)
            commit = self.chain.get_commit(height)
            if block is None or commit is None:
                break
            out.append((block, pack(commit.to_fields())))
        return out

    def on_peer_connected(self, peer_id: str) -> None:
        log.info("peer connected peer=%s", peer_id[:16])

    def on_peer_disconnected(self, peer_id: str, reason: str) -> None:
        log.info("peer disconnected peer=%s reason=%s", peer_id[:16], reason)

    # -- block sync ------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        """Fetch finalized blocks from peers that are ahead; the driver imports them."""
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                await self._sync_once()
                self._regossip_if_stuck()
            except Exception:
                log.exception("sync round failed")

    async def _sync_once(self) -> None:
        peers = [p for p in self.network.best_peers_by_height() if p.height > self.chain.height]
        behind = (peers[0].height - self.chain.height) if peers else 0
        self.service.syncing = behind > 1
        if not peers:
            return
        start = self.chain.height + 1
        requests = []
        for i in range(SYNC_PARALLEL):
            first = start + i * SYNC_BATCH
            holders = [p for p in peers if p.height >= first]
            if not holders:
                break
            peer = holders[i % len(holders)]
            count = min(SYNC_BATCH, peer.height - first + 1)
            requests.append((peer.peer_id, self.network.request_blocks(peer.peer_id, first, count)))
        results = await asyncio.gather(*(r for _, r in requests), return_exceptions=True)
        fetched: list[tuple[Block, Commit]] = []
        expected = start
        for (peer_id, _), result in zip(requests, results, strict=True):
            if isinstance(result, BaseException):
                log.info("block request failed peer=%s: %s", peer_id[:16], result)
                break
            for block_bytes, commit_bytes in result:
                try:
                    block = Block.decode(
                        block_bytes,
                        self.chain.params.max_block_bytes,
                        self.chain.params.max_block_txs,
                    )
                    commit = Commit.from_fields(unpack(commit_bytes))
                except DecodeError as exc:
                    self.network.punish(peer_id, 100, f"blocks: {exc.reason}")
                    break
                if block.height != expected or commit.block_hash != block.hash():
                    self.network.punish(peer_id, 50, "blocks: out of order or mismatched commit")
                    break
                fetched.append((block, commit))
                expected += 1
        if fetched:
            self.driver.submit(SyncedBlocks(tuple(fetched)))

    def _regossip_if_stuck(self) -> None:
        """A height without progress re-sends our proposal and last vote: lost gossip heals."""
        if time.monotonic() - self._last_progress < REGOSSIP_S:
            return
        self._last_progress = time.monotonic()
        last = self.guard.last_vote()
        if last is not None and last.height == self.chain.height + 1:
            self.network.broadcast(Kind.VOTE, pack(last.to_fields()))


def _decode_txs_payload(payload: bytes) -> list[bytes]:
    """The tx encodings of a TXS frame: a non-empty array of byte strings."""
    items = as_list(
        unpack(payload, max_bytes=MAX_FRAME, max_array=MAX_TXS_PER_FRAME),
        "txs",
        max_len=MAX_TXS_PER_FRAME,
    )
    if not items:
        raise DecodeError(Reason.BAD_FIELD, "txs: an empty batch")
    return [as_bytes(item, f"txs[{i}]") for i, item in enumerate(items)]
