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
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Final

from aiohttp import web

from consensus.errors import ConsensusError
from consensus.events import ProposalReceived, VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from consensus.signer import FileSignerStore, SignerGuard
from consensus.timeouts import TimeoutParams
from fluxchain.api.budget import ReadBudget
from fluxchain.api.forwarded import parse_proxies
from fluxchain.api.p2p_metrics import FrameCollector
from fluxchain.api.routes import METRICS
from fluxchain.api.server import create_app
from fluxchain.core.block import Block
from fluxchain.core.crypto import sha256
from fluxchain.core.encoding import as_bytes, as_list, pack, unpack
from fluxchain.core.errors import DecodeError, FluxError, Reason, StoreError, TxError, TxStateError
from fluxchain.core.tx import Benchmark, Tx
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit, Vote
from fluxchain.node.admission import TxAdmission
from fluxchain.node.agent_link import AgentLink, load_or_create_token
from fluxchain.node.app_reports import ReportHosts
from fluxchain.node.benchmark import cap
from fluxchain.node.compact import (
    CompactProposal,
    assemble,
    check_compact_proposal,
    encode_compact_proposal,
    gather,
    parse_compact_proposal,
)
from fluxchain.node.driver import (
    Driver,
    SyncedBlocks,
    check_proposal_block,
    check_proposal_round,
    decode_proposal_head,
    encode_proposal,
    proposal_of,
)
from fluxchain.node.duties import Duties, probe_hosts, threaded_benchmark
from fluxchain.node.home import Home, NodeConfig
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from fluxchain.node.statesync import StateSync, TrustedHeader, write_synced_state
from fluxchain.node.sync import BlockSync, ImportOutcome, SyncedBlock
from fluxchain.node.sync_checks import SyncChecker
from fluxchain.node.txs_sources import Trust, TxsSource, next_txs_source
from fluxchain.node.wal import ConsensusWal
from fluxchain.store.chain import Chain
from fluxchain.store.snapshots import Manifest, build_snapshot
from fluxchain.store.verifier import VerifierPool
from p2p.consensus_gossip import (
    ConsensusGossip,
    LocalConsensus,
    SendProposal,
    announce_due,
    committed_announcement,
)
from p2p.errors import P2PError
from p2p.limits import Limits
from p2p.messages import MAX_FRAME, MAX_PROPOSAL_TXS_PER_REQUEST, Kind, Lane, RoundState
from p2p.network import Direction, Network, PeerInfo
from p2p.peerbook import node_ban_key

log = logging.getLogger("fluxchain.node")

SYNC_INTERVAL_S: Final = 0.5  # how often a stuck height is looked at for re-gossip
ISOLATE_S: Final = 10.0  # SIGUSR1 drill: how long the node stays cut off from its peers
REGOSSIP_S: Final = 2.0  # re-send our last vote if a height makes no progress
STATUS_EVERY_S: Final = 0.2  # well under peers' STATUS rate limit (20/s)
# Consensus gossip (p2p/consensus_gossip.py): every tick, announce our round state if it
# changed (else every ANNOUNCE_EVERY_S, a heartbeat that also repairs a lost one) and send
# each peer what it lacks. A message sent is not sent again for RESEND_AFTER_MS: long
# enough for the peer's next announcement to show it arrived, short enough to heal loss
# well within a round. Well under peers' ROUND_STATE rate limit (25/s).
CONSENSUS_GOSSIP_S: Final = 0.1
ANNOUNCE_EVERY_S: Final = 1.0
# A change of our step or of the votes we hold alone is announced at most this often
# (issue 22, wan22i): 32 votes a height arrive over several ticks, each change was a frame
# to every peer, and peers read our bits only when their resend time (RESEND_AFTER_MS) has
# passed (and nothing reads our step). A new height, round or proposal goes out at once.
ANNOUNCE_VOTES_EVERY_S: Final = 0.5
RESEND_AFTER_MS: Final = 1_500
# A message relayed on (fan-out: a few peers at random, p2p/limits.py; a vote: one) reached
# only some of our peers; the others are held back only this long, until their
# announcements can show they got it from elsewhere (a vote: from its signer; within
# ANNOUNCE_VOTES_EVERY_S and a round trip), then consensus gossip sends it to any peer
# still lacking it. The full RESEND_AFTER_MS here let a relay whose picks were Sybils (or
# just unlucky) delay every skipped honest peer 1.5 s a hop (review rev10).
RELAYED_HOLD_MS: Final = 600
# A signed vote of height chain.height + 1 from a key outside that height's validator set:
# honest peers never relay one (they check membership first). Ten of them ban the peer.
POINTS_NON_VALIDATOR_VOTE: Final = 10
# Txs admitted in one turn of the event loop leave in one TXS frame: a websocket frame
# costs both ends far more than the ~130 bytes of a transfer. A frame closes at either
# bound: 2,000 transfers are ~260 KiB; the byte bound is for large txs (app specs).
MAX_TXS_PER_FRAME: Final = 2_000
MAX_TXS_FRAME_BYTES: Final = 1024 * 1024
# Gossiped txs admitted in one turn of the event loop: a full TXS frame (~50 µs a tx) would
# hold the loop for ~100 ms, and votes and the consensus task would wait behind it
# (issue 24).
TXS_PER_TURN: Final = 50  # ~2.5 ms a turn; as API admission (api/shedding.py)
# How long a locally admitted tx waits for others to share its TXS frame. An API batch is
# admitted over many short turns (api/shedding.py `txs_per_turn`); a frame per turn
# would be a frame per 50 txs, each with its own encryption, websocket and relay costs at
# every peer. 20 ms is ~400 txs of admission, and nothing beside a 1 s block interval.
TXS_GOSSIP_WAIT_S: Final = 0.02
# Compact proposals (fluxchain/node/compact.py): how long the peer that sent one has to
# answer for the txs we lack. Two of the WAN testnet's widest round trips (160 ms) and
# a loaded peer's turn, well within the 3 s propose timeout; past it, the full block
# comes from consensus gossip (RESEND_AFTER_MS after the compact proposal was sent).
PROPOSAL_TXS_TIMEOUT_S: Final = 1.0
# Peers asked in turn for a compact proposal's missing txs, of each group of
# fluxchain/node/txs_sources.py (validators, peers we dialed, the rest; holders apart
# from relayers), before the node waits for the full block: each costs at most
# PROPOSAL_TXS_TIMEOUT_S, and three fit the propose timeout. Groups are capped apart
# (rev15b 2, fix16b 1), so that peers that never answer (Sybils claiming or relaying
# every proposal) cannot use up the turns of a peer that holds the txs.
MAX_PROPOSAL_TXS_SOURCES: Final = 3
# Peers asked for a compact proposal's txs that did not deliver them, remembered (the
# latest, at most this many) so that they come after untried peers of their group next
# time, until they deliver: a validator claiming every proposal and never answering was
# asked first at every height (rev16b 1).
MAX_TXS_SOURCES_FAILED: Final = 256
# Other proposals of a block being rebuilt (re-proposals of later rounds) kept to be
# handed on with the rebuilt bytes (rev15b 3); one per round is honest, so a few do.
MAX_PROPOSALS_AWAITING_REBUILD: Final = 4
# COMPACT_PROPOSAL payloads of proposals handed to consensus, kept so that one consensus
# refuses for now can be let through the seen-cache again (rev15b 1): a few heights'.
COMPACT_PAYLOADS_TAKEN: Final = 64
# Tx refusals that prove the sender sent garbage (as opposed to racing a nonce or a full pool).
# Each depends on the tx's bytes alone, never on state, height or validators, so an honest
# peer, which admits a tx before relaying it, never sends one. So do a node key's and a
# VRF key's proofs (`tx.check_key_proof`: the tx's sender, nonce and keys and the chain id,
# which `check_stateless_rules` has made the tx's own): unpunished, a peer's unsigned
# registrations with a bad VRF proof cost a pairing check each for ever (rev22v).
# So does evidence whose votes do not prove an equivocation (`bad_evidence_votes`: unsigned,
# of another chain, not conflicting, or out of order; `votes.check_equivocation`). Not
# BAD_EVIDENCE, which refuses evidence of a height this node has not reached
# (`core.admission.check_fee_free`, `nodes.check_evidence`): an honest peer ahead relays it.
# A refusal by a handler's dry run (`TxStateError`) is never one, whatever its reason: an
# honest node pools a paid tx beyond its sender's next nonce without that dry run, and
# judges on its own state (rev23adm 2); the bytes-only rules a handler had are stateless
# rules now (`tx.check_stateless_rules`), so an honest node never pools what they refuse.
_MALICIOUS: Final = frozenset(
    {
        Reason.BAD_SIGNATURE,
        Reason.MALFORMED,
        Reason.NON_CANONICAL,
        Reason.BAD_FIELD,
        Reason.UNKNOWN_KIND,
        Reason.UNKNOWN_VERSION,
        Reason.TOO_LARGE,
        Reason.BAD_KEY_PROOF,
        Reason.BAD_VRF_KEY,
        Reason.BAD_EVIDENCE_VOTES,
    }
)
# What a peer is charged for a frame that holds one (the frame stops there).
POINTS_GARBAGE_TX: Final = 25


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

    # The consensus driver this node runs. Only tests change it: the devnet's byzantine
    # validator (tests/integration/byzantine.py) runs a misbehaving subclass.
    driver_class: type[Driver] = Driver

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
        # Timers that touch the chain or the network: cancelled at the stop, before those close.
        self._status_timer: asyncio.TimerHandle | None = None
        self._txs_timer: asyncio.TimerHandle | None = None
        self._outgoing_txs: list[bytes] = []
        self._outgoing_bytes = 0
        self.consensus_gossip = ConsensusGossip(RESEND_AFTER_MS, self_id=self.key.public_key.hex())
        self._announced: RoundState | None = None
        # Each connected peer's source, as the strangers' share counts them (`_source`).
        self._sources: dict[str, str] = {}
        self._announced_at = 0.0
        self._last_commit: Commit | None = None
        self._behind = 0  # heights the best peer claims ahead of us (block sync's hint)
        # `run` raises it once stopped: a StoreError, or the consensus task's end (driver.py).
        self.storage_failure: FluxError | None = None
        self._snapshotting: asyncio.Future[None] | None = None  # a snapshot being taken
        self._offers: dict[int, tuple[bytes, int]] = {}  # height -> (manifest hash, parts)
        # Compact proposals waiting for txs from a peer, by block hash (one fetch each).
        self._rebuilding: dict[bytes, asyncio.Task[None]] = {}
        # Other proposals of a block being rebuilt, by block hash then signature: each
        # with the peer that sent it and its COMPACT_PROPOSAL payload.
        self._awaiting_rebuild: dict[bytes, dict[bytes, tuple[str, Proposal, bytes]]] = {}
        # Peers asked for a compact proposal's txs that failed to deliver them (bounded:
        # MAX_TXS_SOURCES_FAILED).
        self._txs_sources_failed: OrderedDict[str, None] = OrderedDict()
        # The COMPACT_PROPOSAL payloads of proposals handed to consensus, by signature.
        self._compact_taken: dict[bytes, bytes] = {}
        # COMPACT_PROPOSAL payloads consensus gossip sends (`_compact_payload`), by the
        # proposal's signature, of one height.
        self._compact_payloads: dict[bytes, bytes] = {}
        self._compact_height = 0
        # The txs of the proposed blocks the engine holds, by block hash then tx id.
        self._held_txs: dict[bytes, dict[bytes, bytes]] = {}

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
        if self.storage_failure is not None:
            raise self.storage_failure  # the CLI exits non-zero with its reason

    def _storage_failed(self, error: StoreError) -> None:
        """This node's disk failed or holds damaged data: stop, never run on from it."""
        if self.storage_failure is None:
            log.error("stopping: storage failed: %s: %s", error.reason, error.message)
            self.storage_failure = error
        self._stopping.set()

    def _consensus_stopped(self, error: ConsensusError) -> None:
        """The consensus task ended while the node ran: stop, never serve on without voting."""
        if self.storage_failure is None:
            self.storage_failure = error
        self._stopping.set()

    def request_stop(self) -> None:
        self._stopping.set()

    async def start(self) -> None:
        cfg = self.config
        # Forked first, before the chain's files are open or any thread runs. The importing
        # process verifies beside its workers, so one worker per other core.
        # Synced blocks' header signatures, verified ahead of their import on a process of
        # their own (fluxchain/node/sync_checks.py), where a core is free for it. Forked
        # before the verifier processes: forked after them, it would hold their pipes open
        # and they would not see the node close them.
        self.sync_checker = SyncChecker() if (os.cpu_count() or 1) > 1 else None
        self.verifier = VerifierPool((os.cpu_count() or 1) - 1)
        try:
            self.chain = Chain.open(self.home.data, self.genesis, self.verifier)
        except BaseException:  # a damaged home (StoreError): the node stops before it runs
            self._close_checkers()
            raise
        try:
            await self._state_sync_if_new()
        except BaseException:
            self._close_checkers()
            self.chain.close()
            raise
        admission = TxAdmission(self.chain)
        agent = AgentLink(load_or_create_token(self.home.path), expected=cfg.agent)
        report_hosts = ReportHosts(cfg.reports_from_loopback, cfg.reports_from_private)
        self.network = Network(
            self,
            self.key,
            chain_id=self.genesis.chain_id,
            genesis_hash=self.chain.genesis_hash,
            listen_host=cfg.p2p_host,
            listen_port=cfg.p2p_port,
            advertise_address=cfg.p2p_advertise or None,
            persistent_peers=configured_peers(cfg),
            limits=Limits(uncapped_networks=cfg.p2p_uncapped_networks, seed_mode=cfg.seed_mode),
            store=PeerBookInDb(self.chain),
            consensus=self.consensus_gossip,
            snapshots=self,
            proposal_txs=self,
            tx_pool=self,
        )
        self.service = NodeService(
            self.chain,
            Mempool(),
            agent,
            admission=admission,
            gossip=self._gossip_tx,
            relay=self.network.announce_txs,
            refetch=self.network.forget_txs,
            peer_count=self._peer_count,
            consensus_round=self._consensus_round,
            syncing=self._syncing,
            storage_failed=self._storage_failed,
            node_key=self.key,
            report_hosts=report_hosts,
        )
        self.guard = SignerGuard(
            self.key,
            self.genesis.chain_id,
            FileSignerStore(self.home.path),
            signing_height=self.chain.height + 1,
        )
        self.duties = Duties(
            self.key,
            self.chain.params,
            lambda: self.chain.state,
            self.service.next_nonce,
            self.service.submit,
            self._benchmark,
            probe_hosts=probe_hosts(report_hosts, cfg.p2p_host, cfg.p2p_advertise or None),
            unfit=agent.problem,
        )
        self._checked_txs = admission.checked
        self.driver = self.driver_class(
            self.chain,
            self.service,
            self.key,
            self.guard,
            self,
            self.timeouts,
            on_commit=self._on_commit,
            wal=ConsensusWal(self.home.path / "consensus.wal"),
            on_refused=self._forget_refused,
            on_storage_failure=self._storage_failed,
            on_failure=self._consensus_stopped,
            checked_txs=admission.verified,
        )
        await self.network.start()
        api_app = create_app(
            self.service,
            trusted_proxies=parse_proxies(cfg.api_trusted_proxies),
            read_budget=ReadBudget(cfg.read_limits()),
        )
        api_app[METRICS].registry.register(FrameCollector(self.network.frame_counts))
        self.api_runner = web.AppRunner(api_app, access_log=None)
        await self.api_runner.setup()
        await web.TCPSite(self.api_runner, cfg.api_host, cfg.api_port).start()
        api_port = int(self.api_runner.addresses[0][1])  # the OS's pick when configured as 0
        self.home.write_ports(self.network.listen_port, api_port)
        self.driver.start()
        self.sync = BlockSync(
            self.chain,
            self.network,
            self._import_synced,
            on_behind=self._set_behind,
            checker=self.sync_checker,
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.sync.run(), name="sync"),
            loop.create_task(self._regossip_loop(), name="regossip"),
            loop.create_task(self._consensus_gossip_loop(), name="consensus-gossip"),
        ]
        log.info(
            "node started moniker=%s height=%d p2p=%s:%d api=%s:%d key=%s",
            cfg.moniker,
            self.chain.height,
            cfg.p2p_host,
            self.network.listen_port,
            cfg.api_host,
            api_port,
            self.key.public_key.hex()[:16],
        )
        if cfg.duties:
            self.duties.on_committed(self.chain.height, attest=False)

    def _peer_count(self) -> int:
        return len(self.network.peer_ids())

    def _consensus_round(self) -> int:
        return self.driver.round

    def _syncing(self) -> bool:
        return self._behind > 1

    async def _benchmark(self) -> Benchmark:
        """The machine's benchmark, lowered to what the agent's runtime can give."""
        bench = await threaded_benchmark(self.home.data, self.config.bandwidth_mbit)
        capacity = self.service.agent.capacity()
        if capacity is None:
            return bench
        return cap(bench, cores=capacity.cores, ram_mb=capacity.ram_mb, disk_gb=capacity.disk_gb)

    async def stop(self) -> None:
        """Stop in reverse order of start; the chain is closed last, after every writer."""
        for task in [*self._tasks, *self._rebuilding.values()]:
            task.cancel()
        for task in [*self._tasks, *self._rebuilding.values()]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._snapshotting is not None:
            with contextlib.suppress(Exception):
                await self._snapshotting  # its thread writes to the chain's database
        await self.driver.stop()
        await self.api_runner.cleanup()
        for timer in (self._status_timer, self._txs_timer):
            if timer is not None:
                timer.cancel()
        await self.network.stop()
        self._close_checkers()
        if self.driver.wal is not None:
            self.driver.wal.close()
        self.guard.close()
        self.chain.close()
        admission = self.service.admission
        log.info(
            "node stopped height=%d tx signatures verified by admission=%d by block checks=%d;"
            " copies of txs verified here before admitted unverified=%d",
            self.chain.height,
            admission.signatures_verified,
            self.chain.signatures_verified,
            admission.block_verified_taken,
        )

    def _close_checkers(self) -> None:
        if self.sync_checker is not None:
            self.sync_checker.close()
        self.verifier.close()

    def isolate(self, seconds: float) -> None:
        """Drop every peer and refuse them for `seconds` (SIGUSR1: a partition drill)."""
        peers = self.network.peers()
        for peer in peers:
            self.network.book.ban(node_ban_key(peer.node_key), seconds, "isolated by operator")
            self.network.disconnect(peer.peer_id)
        log.warning("isolated from peers=%d for %.0fs", len(peers), seconds)

    # -- gossip out ------------------------------------------------------------------------

    def _broadcast(self, kind: Kind, payload: bytes, lane: Lane | None = None) -> None:
        self.network.broadcast(kind, payload, lane=lane)

    def _gossip_tx(self, tx: Tx) -> None:
        """Queue an admitted tx for the TXS frame that leaves TXS_GOSSIP_WAIT_S after its
        first tx (or once full); the tx relay holds it from now (no refusal counted)."""
        self.network.note_own_txs([tx.id])
        if not self._outgoing_txs:
            self._txs_timer = asyncio.get_running_loop().call_later(
                TXS_GOSSIP_WAIT_S, self._flush_txs
            )
        self._outgoing_txs.append(tx.raw)
        self._outgoing_bytes += len(tx.raw)
        if (
            len(self._outgoing_txs) >= MAX_TXS_PER_FRAME
            or self._outgoing_bytes >= MAX_TXS_FRAME_BYTES
        ):
            self._flush_txs()

    def _flush_txs(self, lane: Lane | None = None) -> None:
        if self._txs_timer is not None:
            # A frame that left full must not leave its successor's first txs early.
            self._txs_timer.cancel()
            self._txs_timer = None
        if self._outgoing_txs:
            batch, self._outgoing_txs, self._outgoing_bytes = self._outgoing_txs, [], 0
            self._broadcast(Kind.TXS, pack(batch), lane)

    def broadcast_proposal(self, payload: bytes) -> None:
        """Our proposal goes out compact (header and tx ids): every peer holds nearly all
        of its txs already, and asks us for the rest (`proposal_txs`)."""
        proposal = proposal_of(payload)
        block_bytes = as_bytes(as_list(unpack(payload), "proposal", length=2)[1], "block")
        # Txs we admitted in the last TXS_GOSSIP_WAIT_S are in the block and nowhere else
        # yet: sent ahead on each link, they are admitted before the compact proposal is
        # read, instead of every validator asking us for them (issue 22, wan15b). In the
        # consensus lane, or the proposal would overtake them (fix16f); still bulk for
        # the byte budget and queue reserve.
        self._flush_txs(Lane.CONSENSUS)
        self.network.broadcast(Kind.COMPACT_PROPOSAL, self._compact_payload(proposal, block_bytes))
        # A peer's copy of a block must not be sent to it again by consensus gossip before
        # its ROUND_STATE shows it.
        self._flooded(proposal.signature)

    def broadcast_vote(self, payload: bytes) -> None:
        """Our own vote to every peer, with our ROUND_STATE if one is due now: queued in
        the same turn, each link's writer sends both as one BATCH message. A prevote
        mostly follows a proposal checked in the same step, which is announced at once
        (`announce_due`); the gossip tick, up to CONSENSUS_GOSSIP_S later, sent it to the
        18 peers as 18 messages of their own (issue 22, idle22)."""
        self.network.broadcast(Kind.VOTE, payload)
        self._flooded(Vote.from_fields(unpack(payload)).signature)
        try:
            local = self._local_consensus()
            if local is not None:
                self._announce(self.consensus_gossip.announcement(local))
        except Exception:  # the tick announces it then; the driver's step must go on
            log.exception("round state announcement failed")

    def _flooded(self, signature: bytes, source: str | None = None) -> None:
        """We just sent this message to our peers: consensus gossip waits before sending it
        again. Our own (no `source`) went to every peer; one relayed from `source` went to
        a fan-out of them (a vote: one), so the rest wait only RELAYED_HOLD_MS."""
        peers = [peer_id for peer_id in self.network.peer_ids() if peer_id != source]
        now = _now_ms()
        if source is not None:
            now -= RESEND_AFTER_MS - RELAYED_HOLD_MS
        self.consensus_gossip.on_sent_to_all(peers, signature, now, held=source is not None)

    # -- consensus gossip (p2p/consensus_gossip.py decides, this loop sends) ------------

    async def _consensus_gossip_loop(self) -> None:
        """Announce our round state and send each peer the proposal and votes it lacks."""
        while True:
            await asyncio.sleep(CONSENSUS_GOSSIP_S)
            try:
                self._consensus_gossip_once()
            except Exception:  # gossip must outlive any one bad tick
                log.exception("consensus gossip round failed")

    def _local_consensus(self) -> LocalConsensus | None:
        engine = self.driver.engine
        if engine.validators is None or engine.height != self.chain.height + 1:
            return None  # between a commit and the next height: nothing to offer yet
        if self.chain.height and (
            self._last_commit is None or self._last_commit.height != self.chain.height
        ):
            self._last_commit = self.chain.get_commit(self.chain.height)
        proposals = [
            held for held in self.driver.proposals_held.values() if held[0].height == engine.height
        ]
        return LocalConsensus(
            height=engine.height,
            round=engine.round,
            step=engine.step_,
            validators=engine.validators,
            votes=engine.votes,
            proposals=proposals,
            last_commit=self._last_commit if self.chain.height else None,
            queued=self.driver.queued_votes(),
        )

    def _consensus_gossip_once(self) -> None:
        local = self._local_consensus()
        if local is None:
            # Between a commit and the next height: we need nothing of the last, and hold
            # of the next only what the engine buffered; say so, and send nothing.
            if self.chain.height:
                engine = self.driver.engine
                if engine.height == self.chain.height:  # its buffer is of our next height
                    buffered, votes = engine.buffered()
                    state = committed_announcement(
                        self.chain.height, buffered, votes, engine.next_validators
                    )
                else:  # blocks imported past the engine (sync): it buffered nothing of ours
                    state = committed_announcement(self.chain.height)
                self._announce(state)
            return
        gossip = self.consensus_gossip
        self._announce(gossip.announcement(local))
        now_ms = _now_ms()
        for peer_id in sorted(self.network.peer_ids()):
            sends = gossip.plan(peer_id, local, now_ms)
            for send in sends:
                if isinstance(send, SendProposal) and send.compact:
                    payload = self._compact_payload(send.proposal, send.block_bytes)
                    self.network.send_to(peer_id, Kind.COMPACT_PROPOSAL, payload)
                elif isinstance(send, SendProposal):
                    payload = encode_proposal(send.proposal, send.block_bytes)
                    self.network.send_to(peer_id, Kind.PROPOSAL, payload)
                else:
                    self.network.send_to(peer_id, Kind.VOTE, pack(send.vote.to_fields()))
            if sends:
                # Flooding covers a healthy network; this line means a peer was missing
                # messages (lost, refused, or sent while it was cut off) and got them now.
                proposals = sum(isinstance(send, SendProposal) for send in sends)
                compact = sum(isinstance(send, SendProposal) and send.compact for send in sends)
                log.info(
                    "consensus gossip sent peer=%s height=%d round=%d proposals=%d "
                    "compact=%d votes=%d",
                    peer_id[:16],
                    local.height,
                    gossip.peer(peer_id).round,
                    proposals,
                    compact,
                    len(sends) - proposals,
                )

    def _compact_payload(self, proposal: Proposal, block_bytes: bytes) -> bytes:
        """The COMPACT_PROPOSAL of a proposal the engine holds, encoded once per proposal
        (decoding its block for each peer would cost more than the full send saves)."""
        payload = self._compact_payloads.get(proposal.signature)
        if payload is None:
            params = self.chain.params
            block = Block.decode(block_bytes, params.max_block_bytes, params.max_block_txs)
            payload = encode_compact_proposal(proposal, block)
            if proposal.height != self._compact_height:  # one height's proposals at a time
                self._compact_payloads.clear()
                self._compact_height = proposal.height
            self._compact_payloads[proposal.signature] = payload
        return payload

    def _announce(self, state: RoundState) -> None:
        """Send our ROUND_STATE to every peer if `announce_due` says so."""
        now = time.monotonic()
        if announce_due(
            self._announced,
            state,
            now - self._announced_at,
            ANNOUNCE_EVERY_S,
            ANNOUNCE_VOTES_EVERY_S,
        ):
            self.network.send_round_state(state)
            self._announced, self._announced_at = state, now

    def _forget_refused(self, message: Proposal | Vote, block_bytes: bytes) -> None:
        """Consensus could not keep this message now: let a peer's next copy through."""
        if isinstance(message, Vote):
            self.network.forget(Kind.VOTE, pack(message.to_fields()))
        else:
            self.network.forget(Kind.PROPOSAL, encode_proposal(message, block_bytes))
            # Consensus gossip sends the compact copy first: it must come through too.
            compact = self._compact_taken.pop(message.signature, None)
            if compact is not None:
                self.network.forget(Kind.COMPACT_PROPOSAL, compact)

    def _on_commit(self, height: int) -> None:
        self._last_progress = time.monotonic()
        if not self._status_pending:
            # Sync commits hundreds of blocks a second; peers rate-limit STATUS, so tell
            # them at most once per STATUS_EVERY_S, with the height reached by then.
            self._status_pending = True
            self._status_timer = asyncio.get_running_loop().call_later(
                STATUS_EVERY_S, self._send_status
            )
        if self.config.duties:
            self.duties.on_committed(height)
        interval = self.config.snapshot_interval
        if interval and height % interval == 0:
            self._take_snapshot(height)

    def _send_status(self) -> None:
        self._status_pending, self._status_timer = False, None
        announced = self._announced
        if announced is not None and announced.height == self.chain.height + 1:
            # Our ROUND_STATE of the next height went out since the commit, and a peer
            # reads our height from it (Network: a ROUND_STATE at h says h - 1 is
            # committed): a STATUS to every peer on every commit said it again, ~20
            # frames a second a node at one height a second (issue 22, wan23v). Block
            # sync, which commits faster than it announces, and the base (the network's
            # STATUS heartbeat) still go by STATUS.
            return
        self.network.update_status()

    # -- NetworkHost -----------------------------------------------------------------------

    def status(self) -> tuple[int, bytes, int]:
        return self.chain.height, self.chain.head_hash, self.chain.base_height

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        try:
            if kind in (Kind.TX, Kind.TXS):
                # Relayed by id, not by body (issue 22): the txs we admitted are announced
                # to the peers not known to hold them, which fetch the ones they lack.
                raws = [payload] if kind is Kind.TX else _decode_txs_payload(payload)
                admitted: list[bytes] = []
                await self._on_txs(peer_id, raws, admitted)
                self.network.announce_txs(admitted, peer_id)
                return False
            if kind is Kind.VOTE:
                return self._on_vote(peer_id, Vote.from_fields(unpack(payload)))
            if kind is Kind.PROPOSAL:
                if await self._on_proposal(peer_id, payload):
                    return True
                # Not kept (an equivocation's extra block, say), or not yet: if votes
                # point at it later, the copy consensus gossip sends then (a full
                # PROPOSAL, its re-delivery paced) is relayed (rev24w 2).
                self.network.unrelayed(kind, payload)
                return False
            if kind is Kind.COMPACT_PROPOSAL:
                # Not unmarked when not relayed: a compact copy's delivery is not paced,
                # each would be checked again, its signature too.
                return await self._on_compact_proposal(peer_id, payload)
        except FluxError as exc:
            self.network.punish(peer_id, 100, f"{kind.name.lower()}: {exc.reason}")
            return False
        return False  # EVIDENCE travels as an EVIDENCE tx

    async def _on_proposal(self, peer_id: str, payload: bytes) -> bool:
        """A gossiped full proposal: checked cheapest first, then handed to consensus;
        whether to relay it (`_take_proposal`). Raises DecodeError for junk."""
        chain_id = self.genesis.chain_id
        params = self.chain.params
        proposal, block_bytes = decode_proposal_head(payload, params.max_block_bytes)
        if self._held_copy(proposal, block_bytes):
            # A copy of what the engine holds, its block not decoded. Its sender
            # holds it too: noted, so that gossip does not send it back.
            self.consensus_gossip.on_received(peer_id, proposal, None)
            return False
        if proposal.height <= self.chain.height:
            # Old news, dropped before its block is decoded or its signature
            # checked (red23a 5: any committed block, re-signed by any key, was
            # decoded first); peers a height behind re-send the head block's.
            if proposal.block_hash == self.chain.head_hash:
                self._check_head_copy(proposal, block_bytes)
            return False
        if not self._check_proposer(proposal):
            self.network.forget(Kind.PROPOSAL, payload)  # may come again
            return False
        if not proposal.verify(chain_id):
            raise DecodeError(Reason.BAD_SIGNATURE, "proposal signature")
        # The tx ids checked here are the block check's too: its tx_root is
        # computed once (as a rebuilt compact proposal's is).
        ids = check_proposal_block(
            proposal, block_bytes, params.max_block_bytes, params.max_block_txs
        )
        return await self._take_proposal(peer_id, proposal, block_bytes, ids)

    def _held_copy(self, proposal: Proposal, block_bytes: bytes) -> bool:
        """Whether a full proposal is one the engine holds, block bytes and all, so that
        its block need not be decoded. Raise DecodeError(bad_proposal) for other bytes
        under a held proposal: the encoding is canonical, so no other bytes are its block
        (rev17a 1: junk sent under a held proposal's fields went unpunished)."""
        if not self.driver.holds(proposal):
            return False
        held = self.driver.engine.proposal(proposal.round, proposal.block_hash)
        if held is None or held[0] != proposal:
            return False  # another signature or lock round: checked in full
        if held[1] != block_bytes:
            raise DecodeError(Reason.BAD_PROPOSAL, "other block bytes under a held proposal")
        return True

    def _check_head_copy(self, proposal: Proposal, block_bytes: bytes) -> None:
        """Check a stale proposal under the head block's hash, which peers a height behind
        re-send, cheapest test first: its fields against the head (height, round, that
        round's proposer of the set that signed it), then its bytes against the stored
        block (a read and a compare, never a decode: the encoding is canonical), then its
        signature. Each frame may differ, so a forged copy must cost its sender, not a read
        of the head block each (review rev23a 3).

        Raise DecodeError (bad_proposal, bad_signature) for anything but a true copy.
        """
        chain = self.chain
        head = chain.head
        if head is None or proposal.height != chain.height:
            raise DecodeError(Reason.BAD_PROPOSAL, "the head block's hash at another height")
        signers = chain.last_validators
        if signers is not None and proposal.proposer != proposer(
            signers, proposal.height, proposal.round
        ):
            raise DecodeError(
                Reason.BAD_PROPOSAL,
                f"a proposal of round {proposal.round} not signed by its proposer",
            )
        check_proposal_round(proposal, head)
        if block_bytes != chain.get_block_bytes(proposal.height):
            raise DecodeError(Reason.BAD_PROPOSAL, "other block bytes under the head block's hash")
        if not proposal.verify(self.genesis.chain_id):
            raise DecodeError(Reason.BAD_SIGNATURE, "proposal signature")

    def _check_proposer(self, proposal: Proposal) -> bool:
        """Screen a gossiped proposal of a later height than the chain's by its fields
        alone: before its signature is checked or its block decoded, rebuilt or logged.

        Raise DecodeError(bad_proposal) for one not signed by its round's proposer of the
        height being decided (chain.height + 1, the chain's set) or of the engine's next
        height while the engine knows its set (`next_validators`; unknown at an epoch's
        first height; rev23a 5-6): the engine drops it, and an honest peer relays only
        proposals its engine kept, or its own, chosen from that same set (red23a 2, 3;
        p2p24: fix23a let the next height's go unpunished, though no honest peer sends
        one). Return False, unpunished (the caller drops it undecoded and forgets it),
        for one of a height past the engine's next: no set of it is known, the engine
        would refuse it, and an honest peer ahead may send it. True otherwise.
        """
        height = proposal.height
        engine = self.driver.engine
        validators: ValidatorSet | None
        if height == self.chain.height + 1:
            validators = self.chain.validators()
        elif height == engine.height + 1:
            validators = engine.next_validators
        else:
            # Past the engine's next: refused there. Else the engine's own height, ahead
            # of the chain's: its check.
            return height <= engine.height
        if validators is None or proposal.proposer == proposer(validators, height, proposal.round):
            return True
        raise DecodeError(
            Reason.BAD_PROPOSAL,
            f"a proposal of round {proposal.round} not signed by its proposer",
        )

    async def _take_proposal(
        self,
        peer_id: str,
        proposal: Proposal,
        block_bytes: bytes,
        tx_ids: Sequence[bytes] | None = None,
        compact: bytes = b"",
    ) -> bool:
        """Hand a checked proposal and its block to consensus; whether to relay it: only
        if the engine keeps it, or buffers it for the next height, when it steps it
        (`Driver.submit_proposal`; at once if nothing is queued before it).
        `tx_ids`: of the block's txs, already checked against them and the header (a
        rebuilt compact proposal, or a full one's decoding), so that its block check does
        not hash them again;
        `compact`: the COMPACT_PROPOSAL payload it came in, if so."""
        if self.network.is_connected(peer_id):
            # A rebuild outlives its sender's connection: a state made for a peer that
            # left would never be forgotten (red23a 6).
            self.consensus_gossip.on_received(peer_id, proposal, None)
        if tx_ids is not None:
            self.driver.note_tx_ids(proposal.block_hash, block_bytes, tx_ids)
        if compact:  # before submit: a full inbox refuses it at once
            self._compact_taken[proposal.signature] = compact
            while len(self._compact_taken) > COMPACT_PAYLOADS_TAKEN:
                del self._compact_taken[next(iter(self._compact_taken))]
        kept = self.driver.submit_proposal(ProposalReceived(proposal, block_bytes))
        current = proposal.height == self.chain.height + 1
        if not current or proposal.proposer != proposer(
            self.chain.validators(), proposal.height, proposal.round
        ):
            return False  # not checkable here, or not this round's proposer
        # What the engine drops, refuses or does not buffer is not relayed: a validator's
        # far rounds or its extra blocks of its round, each a new signature with a block,
        # would reach every node (rev23a 1, rev24w 1-3). Judged on the engine as it
        # steps it, after the inputs queued before it (rev24w 4).
        if not (kept if isinstance(kept, bool) else await kept):
            return False
        self._flooded(proposal.signature, source=peer_id)
        return True

    async def _on_compact_proposal(self, peer_id: str, payload: bytes) -> bool:
        """Rebuild a compact proposal's block from the txs this node holds; ask the peer
        for the ones it lacks (then the compact proposal is relayed once rebuilt, by
        `_rebuild`, and a failed fetch is retried with another peer that announced it).

        The full block is the fallback: if the peer does not answer in time, answers
        that it lacks the txs, or the block needs more txs than one request may ask,
        nothing is handed to consensus, and consensus gossip sends the full PROPOSAL
        (our ROUND_STATE does not show the proposal). Raises DecodeError for a compact
        proposal that does not match its own header, or one of the height being decided
        (or of the known next height) not signed by its round's proposer
        (`_check_proposer`; the caller punishes the sender).
        """
        params = self.chain.params
        compact = parse_compact_proposal(payload, params.max_block_txs)
        proposal = compact.proposal
        # Before the rebuild, which is keyed by block hash: a non-proposer's copy of the
        # proposer's block must not start it and hold the real one back (red23a 3).
        if not self._check_proposer(proposal):
            self.network.forget(Kind.COMPACT_PROPOSAL, payload)  # may come again
            return False
        # Before the copy and stale tests: junk ids, header or commit under a held or
        # committed proposal cost their sender, as under a full PROPOSAL (rev23a 2).
        check_compact_proposal(compact)
        if self.driver.holds(proposal):
            return False  # a copy of what the engine holds
        if proposal.height <= self.chain.height:
            return False  # old news, before its signature is checked
        if not proposal.verify(self.genesis.chain_id):
            raise DecodeError(Reason.BAD_SIGNATURE, "proposal signature")
        if proposal.block_hash in self._rebuilding:
            self._await_rebuild(peer_id, proposal, payload)
            return False
        ids = compact.ids()
        # A re-proposal of a block the engine holds (a later round's, on its proof of
        # lock) takes its txs from that block: no fetch.
        txs, missing = self._gather_for_block(proposal.block_hash, ids)
        if not missing:
            # Each found by its id among txs whose ids were computed from their bytes.
            block_bytes = assemble(
                compact, [tx for tx in txs if tx is not None], params.max_block_bytes, hashed=True
            )
            return await self._take_proposal(peer_id, proposal, block_bytes, ids, payload)
        if len(missing) > MAX_PROPOSAL_TXS_PER_REQUEST:
            log.warning(
                "compact proposal lacks txs=%d height=%d round=%d: waiting for the full block",
                len(missing),
                proposal.height,
                proposal.round,
            )
            self.network.forget(Kind.COMPACT_PROPOSAL, payload)
            return False
        task = asyncio.get_running_loop().create_task(
            self._rebuild(peer_id, compact, txs, missing, payload), name="compact-proposal"
        )
        self._rebuilding[proposal.block_hash] = task
        self._awaiting_rebuild[proposal.block_hash] = {}
        task.add_done_callback(lambda _: self._rebuild_ended(proposal.block_hash))
        return False

    def _await_rebuild(self, peer_id: str, proposal: Proposal, payload: bytes) -> None:
        """Keep a checked proposal of a block being rebuilt (another round's re-proposal,
        or a copy of the one rebuilt) to hand on with the rebuilt bytes; past the bound,
        or once the rebuild is ending, let its next copy through the seen-cache instead."""
        awaiting = self._awaiting_rebuild.get(proposal.block_hash)
        if awaiting is None or len(awaiting) >= MAX_PROPOSALS_AWAITING_REBUILD:
            self.network.forget(Kind.COMPACT_PROPOSAL, payload)
            return
        awaiting.setdefault(proposal.signature, (peer_id, proposal, payload))

    def _rebuild_ended(self, block_hash: bytes) -> None:
        """A rebuild is over: the proposals kept for it and not handed on (it failed) may
        come again."""
        self._rebuilding.pop(block_hash, None)
        for _, _, payload in self._awaiting_rebuild.pop(block_hash, {}).values():
            self.network.forget(Kind.COMPACT_PROPOSAL, payload)

    async def _rebuild(
        self,
        peer_id: str,
        compact: CompactProposal,
        txs: list[bytes | None],
        missing: list[int],
        payload: bytes,
    ) -> None:
        """Fetch the txs a compact proposal's block lacks from the peers that announced or
        relayed the proposal, `peer_id` (its sender) first among equals (`_next_txs_source`),
        hand the rebuilt block to consensus and relay the compact proposal on; if no source
        serves them, leave it to the full-block fallback."""
        proposal = compact.proposal
        ids = compact.ids()
        wanted = [ids[i] for i in missing]
        tried: list[str] = []
        source: str | None = self._next_txs_source(compact, payload, tried, peer_id) or peer_id
        fetched: list[bytes] | None = None
        while source is not None and fetched is None:
            tried.append(source)
            try:
                fetched = await self.network.request_proposal_txs(
                    source, proposal.block_hash, wanted, PROPOSAL_TXS_TIMEOUT_S
                )
            except P2PError as exc:
                self._txs_source_failed(source)
                if self.driver.holds(proposal) or proposal.height <= self.chain.height:
                    return  # the full block came meanwhile, or the height is over
                source = self._next_txs_source(compact, payload, tried, peer_id)
                log.warning(
                    "compact proposal txs not fetched height=%d round=%d lacked=%d peer=%s: %s; %s",
                    proposal.height,
                    proposal.round,
                    len(missing),
                    tried[-1][:16],
                    exc,
                    "waiting for the full block" if source is None else f"asking {source[:16]}",
                )
        if fetched is None:
            self.network.forget(Kind.COMPACT_PROPOSAL, payload)  # another peer's copy may do
            return
        source = tried[-1]
        self._txs_sources_failed.pop(source, None)  # it delivered: its rank back
        for i, raw in zip(missing, fetched, strict=True):
            txs[i] = raw  # each hashes to its id: p2p/proposal_txs.py checked it
        try:
            block_bytes = assemble(
                compact,
                [tx for tx in txs if tx is not None],
                self.chain.params.max_block_bytes,
                hashed=True,  # found by id (`_known_raws`) or fetched and checked
            )
        except DecodeError as exc:  # the proposer's block is too large: theirs, and ours
            self.network.punish(peer_id, 100, f"compact_proposal: {exc.reason}")
            return
        log.debug(
            "compact proposal rebuilt height=%d round=%d fetched=%d peer=%s",
            proposal.height,
            proposal.round,
            len(missing),
            source[:16],
        )
        if self.driver.holds(proposal) or proposal.height <= self.chain.height:
            return  # the full block came first, or the height is over
        # Relayed on as if it had needed no fetch: the peers it goes to hold the txs we
        # just fetched as rarely as we did, and can ask us for them now.
        if await self._take_proposal(peer_id, proposal, block_bytes, ids, payload):
            self.network.relay(Kind.COMPACT_PROPOSAL, payload, peer_id)
        await self._hand_awaiting(proposal, block_bytes, ids)

    async def _hand_awaiting(self, rebuilt: Proposal, block_bytes: bytes, ids: list[bytes]) -> None:
        """Hand consensus the other proposals of a rebuilt block met meanwhile (they carry
        the same bytes), and relay them on as `_rebuild` does."""
        awaiting = self._awaiting_rebuild.pop(rebuilt.block_hash, {})
        for sender, other, payload in awaiting.values():
            if other.signature == rebuilt.signature or self.driver.holds(other):
                continue
            if await self._take_proposal(sender, other, block_bytes, ids, payload):
                self.network.relay(Kind.COMPACT_PROPOSAL, payload, sender)

    def _next_txs_source(
        self, compact: CompactProposal, payload: bytes, tried: list[str], sender: str
    ) -> str | None:
        """The next connected peer to ask for a compact proposal's missing txs, of those
        that announced or relayed it, the hardest to fake first (`next_txs_source`: a
        validator, then a peer we dialed, then the rest; holders before relayers; the
        sender first among its equals, then peers that have not failed us); None once
        none is left. A validator's compact copy counts as holding it: an honest node
        relays one only once it holds the block, and the proposer (whose ROUND_STATE
        comes a tick later) is then asked first (rev16b 1). A peer that failed to deliver
        before counts as a mere relayer, after the untried ones."""
        proposal = compact.proposal
        holders = set(
            self.consensus_gossip.holders(proposal.height, proposal.round, proposal.block_hash)
        )
        relayers = set(self.network.gossip_senders(Kind.COMPACT_PROPOSAL, payload))
        validators = {validator.pubkey for validator in self.chain.validators().validators}
        failed = self._txs_sources_failed
        candidates = []
        for peer in sorted(
            self.network.peers(), key=lambda peer: (peer.peer_id in failed, peer.peer_id != sender)
        ):
            peer_id = peer.peer_id
            if peer_id not in holders and peer_id not in relayers:
                continue
            trust = _trust_of(peer, validators)
            holder = peer_id in holders or (trust is Trust.VALIDATOR and peer_id in relayers)
            candidates.append(TxsSource(peer_id, trust, holder and peer_id not in failed))
        return next_txs_source(candidates, tried, MAX_PROPOSAL_TXS_SOURCES)

    def _txs_source_failed(self, peer_id: str) -> None:
        """Remember that `peer_id` did not deliver a compact proposal's txs we asked for."""
        failed = self._txs_sources_failed
        failed.pop(peer_id, None)
        failed[peer_id] = None
        while len(failed) > MAX_TXS_SOURCES_FAILED:
            failed.popitem(last=False)

    def _known_tx(self, tx_id: bytes) -> bytes | None:
        """The bytes of a tx this node admitted (or holds in its mempool), by id."""
        tx = self._checked_txs.get(tx_id) or self.service.mempool.get(tx_id)
        return None if tx is None else tx.raw

    def _known_raws(self, tx_ids: Sequence[bytes]) -> list[bytes | None]:
        """`_known_tx` of each of `tx_ids` (None where we hold none), in one pass without a
        call per id: a compact proposal names thousands."""
        checked, pooled = self._checked_txs.get, self.service.mempool.get
        return [
            None if (tx := checked(tx_id) or pooled(tx_id)) is None else tx.raw for tx_id in tx_ids
        ]

    def has_tx(self, tx_id: bytes) -> bool:
        """Whether we hold the tx `tx_id` (p2p TxPool), in the pool or in a block committed
        lately: an announcement of it is not fetched. A parked tx's bytes are held too: it
        is offered to the mempool again when a block changes its sender's account (held18b)."""
        admission = self.service.admission
        return (
            self._known_tx(tx_id) is not None
            or admission.committed_lately(tx_id)
            or admission.is_parked(tx_id)  # unproven too: held, never served (`checked`)
        )

    def in_mempool(self, tx_id: bytes) -> bool:
        """Whether `tx_id` still waits for a block (p2p TxPool): a trickled announcement of
        a tx committed or evicted meanwhile is left out."""
        return tx_id in self.service.mempool

    def tx_bodies(self, tx_ids: list[bytes]) -> list[bytes | None]:
        """Each tx of `tx_ids`, None where we do not hold it (p2p TxPool: a peer fetching
        announced txs)."""
        return self._known_raws(tx_ids)

    def proposal_txs(self, block_hash: bytes, tx_ids: list[bytes]) -> list[bytes] | None:
        """The txs a peer rebuilding our compact proposal lacks (p2p ProposalTxSource):
        from what we admitted, else from the proposal's block we hold; None if we lack one."""
        txs, missing = self._gather_for_block(block_hash, tx_ids)
        if missing:
            return None
        return [tx for tx in txs if tx is not None]

    def _gather_for_block(
        self, block_hash: bytes, tx_ids: Sequence[bytes]
    ) -> tuple[list[bytes | None], list[int]]:
        """`gather` from what we admitted, else from the proposal's block the engine holds
        (whose txs are indexed by the hash of their bytes, as admitted ones are), else from
        the checked txs we let go (`service.extra`: refused for a full pool, issue 24), else
        from the txs a block check verified (`admission.verified_tx`: its round aborted)."""
        txs, missing = gather(tx_ids, self._known_raws)
        if missing:
            in_block = self._held_block_txs(block_hash)
            lookups = (in_block.get, self.service.extra.get, self.service.admission.verified_tx)
            for lookup in lookups:
                for i in missing:
                    txs[i] = lookup(tx_ids[i])
                missing = [i for i in missing if txs[i] is None]
                if not missing:
                    break
        return txs, missing

    def _held_block_txs(self, block_hash: bytes) -> dict[bytes, bytes]:
        """The txs of a proposed block the engine holds, by id (empty if none).

        Each held block is indexed once: a peer may ask 20 times a second, and decoding a
        block of up to max_block_bytes for each request would make it an amplifier."""
        held = {p.block_hash: b for p, b in list(self.driver.proposals_held.values())}
        self._held_txs = {h: txs for h, txs in self._held_txs.items() if h in held}
        if block_hash not in held:
            return {}
        if block_hash not in self._held_txs:
            params = self.chain.params
            block = Block.decode(held[block_hash], params.max_block_bytes, params.max_block_txs)
            self._held_txs[block_hash] = {sha256(raw): raw for raw in block.txs}
        return self._held_txs[block_hash]

    def _on_vote(self, peer_id: str, vote: Vote) -> bool:
        """Check a gossiped vote before it is relayed, logged or queued (issue 17 #4).

        A vote of our next height must come from that height's validator set and carry a
        valid signature, and the engine must be about to keep it (`Engine.admits`); only
        then does it reach the driver (whose WAL records it) and other peers. A vote of
        the height after the one the engine decides is buffered by the engine within the
        same quota (`Engine.admits`: a few rounds a validator, and that height's set when
        the engine knows it) and checked when the height starts; it is not relayed (its
        set may not be known). Later heights' are forgotten before their signature is
        checked, to come again (the engine would refuse them).
        """
        if vote.height <= self.chain.height:
            # Old news, before its signature is checked (red23a 4): every commit's
            # precommits are valid votes anyone can send; peers that need one sync the
            # block instead.
            return False
        engine = self.driver.engine
        if vote.height > engine.height + 1:
            # Beyond the engine's next height, which refuses it (no set of that height is
            # known, so a signature proves nothing yet): forgotten, to come again, before
            # its signature is checked (rev23a 4), as the engine's `Refused` would be.
            self.network.forget(Kind.VOTE, pack(vote.to_fields()))
            return False
        if self.driver.holds(vote):
            return False  # a copy of what the engine holds: no signature to check again
        if not vote.verify(self.genesis.chain_id):
            raise DecodeError(Reason.BAD_SIGNATURE, "vote signature")
        current = vote.height == self.chain.height + 1
        validators = self.chain.validators() if current else None
        index = validators.index_of(vote.validator) if validators is not None else None
        if current and index is None:
            self.network.punish(peer_id, POINTS_NON_VALIDATOR_VOTE, "vote: not a validator")
            return False
        if not current and vote.height == engine.height + 1:
            # The height after the one being decided (red23a 1): through the engine's
            # quota, as in the commit wait, never straight into its buffer.
            following = engine.next_validators
            if following is not None and following.power_of(vote.validator) == 0:
                # An honest peer a height ahead relays only that height's validators'.
                self.network.punish(peer_id, POINTS_NON_VALIDATOR_VOTE, "vote: not a validator")
                return False
            self.consensus_gossip.on_received(peer_id, vote, None)
            if not self.driver.admit(vote, self._source(peer_id)):
                self._forget_refused(vote, b"")  # a full buffer or quota now; may come again
            return False  # buffered by the engine, not relayed
        self.consensus_gossip.on_received(peer_id, vote, index)
        if not current:
            self.driver.submit(VoteReceived(vote))  # refused by the engine: we are behind
            return False
        # Relayed and logged only if the engine would keep it: a validator's flood of
        # votes it ignores (rounds far ahead, conflicting votes for blocks nobody
        # proposed) stops at the first honest node.
        if not self.driver.admit(vote, self._source(peer_id)):
            if vote.height != self.driver.engine.height or vote.round > self.driver.round:
                self._forget_refused(vote, b"")  # beyond a quota now; may come again
            return False
        self._flooded(vote.signature, source=peer_id)
        return True

    async def _on_txs(
        self, peer_id: str, raws: list[bytes], admitted: list[bytes] | None = None
    ) -> bool:
        """Admit gossiped txs (their ids into `admitted`); whether any was new and valid.
        The loop turns every TXS_PER_TURN txs, so that consensus is not held behind a full
        frame. A tx refused for a reason that proves its sender sent garbage (`_MALICIOUS`)
        ends the frame: the peer is charged and its other txs are dropped unadmitted, so a
        frame of junk costs one check, not one a tx for one charge (issue 24, adm23). A
        refusal on state (nonce, funds, a full pool, a copy) lets the rest through."""
        relay = False
        for index, raw in enumerate(raws):
            if index % TXS_PER_TURN == 0 and len(raws) > 1:
                # Before the first slice too: the link hands over its next frame without
                # a turn of the loop, so one frame's last slice would run on into the next's.
                await asyncio.sleep(0)
            try:
                # A tx refused for now only and not held (a full pool, a duty's height not
                # yet come) is handed back to the tx relay by the service (`refetch`).
                tx = self.service.submit(raw, from_peer=True, peer=peer_id)
            except TxError as exc:
                if exc.reason in _MALICIOUS and not isinstance(exc, TxStateError):
                    self.network.punish(peer_id, POINTS_GARBAGE_TX, f"tx: {exc.reason}")
                    # The rest, unjudged, goes back to the tx relay (a fetched body to its
                    # next announcer): a peer that wraps honest txs around its junk does
                    # not keep them from this node.
                    if index + 1 < len(raws):
                        rest = [sha256(r) for r in raws[index + 1 :]]
                        self.network.unreceive_txs(peer_id, rest)
                    break
                continue
            if admitted is not None:
                admitted.append(tx.id)
            relay = True
        return relay

    def get_blocks(self, start_height: int, count: int) -> list[tuple[bytes, bytes]]:
        out = []
        for height in range(start_height, min(start_height + count, self.chain.height + 1)):
            block = self.chain.get_block_bytes(height)
            commit = self.chain.get_commit_bytes(height)  # as stored: canonical already
            if block is None or commit is None:
                break
            out.append((block, commit))
        return out

    def on_peer_connected(self, peer_id: str) -> None:
        log.info("peer connected peer=%s", peer_id[:16])
        self._announced = None  # the new peer learns our round state at the next tick
        self._sources[peer_id] = self.network.peer_group(peer_id) or peer_id

    def on_peer_disconnected(self, peer_id: str, reason: str) -> None:
        log.info("peer disconnected peer=%s reason=%s", peer_id[:16], reason)
        # A link replaced as a duplicate is detached before its successor is registered,
        # in the same turn of the loop (`Network._establish`): judge whether the peer left
        # once that turn is over (review rev24p2 1).
        asyncio.get_running_loop().call_soon(self._forget_source, peer_id)

    def _forget_source(self, peer_id: str) -> None:
        """Tell the strangers' share that a source left, if `peer_id` was its last link."""
        if self.network.is_connected(peer_id):
            return  # a link replaced as a duplicate: the peer is still here
        source = self._sources.pop(peer_id, peer_id)
        if source not in self._sources.values():
            self.driver.source_left(source)

    def _source(self, peer_id: str) -> str:
        """Whom a vote from `peer_id` counts against in the strangers' share
        (`Driver.admit`): the peer's address group, its id where it has none."""
        return self._sources.get(peer_id, peer_id)

    # -- state sync: snapshots taken and served, and taken from peers ----------------------

    def _take_snapshot(self, height: int) -> None:
        """Snapshot the state of `height` on a worker thread, from a LevelDB snapshot taken
        now, so that blocks keep committing meanwhile. One at a time: a node too slow to
        finish one before the next interval skips that one."""
        if self._snapshotting is not None and not self._snapshotting.done():
            log.warning("snapshot skipped height=%d: the previous one is not done", height)
            return
        assert self.chain.head is not None
        view = self.chain.db.state_view()
        root = self.chain.head.state_root
        keep = self.config.snapshot_keep
        db = self.chain.db

        def take() -> None:
            started = time.monotonic()
            try:
                manifest, chunks = build_snapshot(view, height, root)
                db.write_snapshot(height, [manifest.encode(), *chunks], keep)
            except (StoreError, OSError) as exc:
                log.error("snapshot failed height=%d: %s", height, exc)
                return
            finally:
                view.close()
            log.info(
                "snapshot taken height=%d chunks=%d seconds=%.2f",
                height,
                len(chunks),
                time.monotonic() - started,
            )

        self._snapshotting = asyncio.get_running_loop().run_in_executor(None, take)

    def snapshot_offers(self) -> list[tuple[int, bytes, int]]:
        """The snapshots this node serves, newest first (p2p SnapshotSource)."""
        offers = []
        heights = self.chain.db.snapshot_heights()
        self._offers = {h: offer for h, offer in self._offers.items() if h in heights}
        for height in reversed(heights):
            if height not in self._offers:
                data = self.chain.db.snapshot_part(height, 0)
                if data is None:
                    continue  # being pruned
                try:
                    manifest = Manifest.decode(data)
                except DecodeError:
                    continue  # taken in an older snapshot format: not offered, pruned in time
                self._offers[height] = (manifest.hash(), manifest.chunks + 1)
            offers.append((height, *self._offers[height]))
        return offers

    def snapshot_part(self, height: int, index: int) -> bytes | None:
        return self.chain.db.snapshot_part(height, index)

    async def _state_sync_if_new(self) -> None:
        """If this home is new and the operator gave a trusted header, take the state at
        that height from peers (fluxchain/node/statesync.py) instead of replaying."""
        cfg = self.config
        if not cfg.trust_height or self.chain.height != 0:
            return
        trust = TrustedHeader(cfg.trust_height, bytes.fromhex(cfg.trust_hash))
        # A network of its own: the node's services do not exist yet, and nothing but
        # snapshot and block requests is wanted from peers meanwhile.
        network = Network(
            _Joining(self.chain.genesis_hash),
            self.key,
            chain_id=self.genesis.chain_id,
            genesis_hash=self.chain.genesis_hash,
            listen_host=cfg.p2p_host,
            listen_port=0,
            # The node's own inputs, so its learn rule is the node's: it loads and saves
            # the one stored book, and a narrower rule would drop entries (fix27p2 6).
            advertise_address=cfg.p2p_advertise or None,
            persistent_peers=configured_peers(cfg),
            limits=Limits(uncapped_networks=cfg.p2p_uncapped_networks),
            store=PeerBookInDb(self.chain),
        )
        log.info("state sync from height=%d hash=%s", trust.height, cfg.trust_hash[:16])
        started = time.monotonic()
        # Chunks are checked on one process per core (spawned: this process already runs
        # LevelDB's threads, which a fork would copy mid-flight).
        checker = ProcessPoolExecutor(os.cpu_count() or 1, mp_context=get_context("spawn"))
        await network.start()
        try:
            state_sync = StateSync(
                network, self.chain.params, trust, checker=checker, saved=self.chain.db
            )
            syncing = asyncio.ensure_future(state_sync.run())
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({syncing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not syncing.done():
                syncing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await syncing
                raise StoreError(
                    Reason.STORE_WRITE_FAILED, "stopped during state sync: nothing was written"
                )
            synced = syncing.result()
        finally:
            await network.stop()
            checker.shutdown(cancel_futures=True)
        verified = time.monotonic()
        write_synced_state(self.chain.db, synced)
        del synced, syncing  # a million keys and values: gone before the collector pass
        written = time.monotonic()
        # The same database, not closed and reopened: reopening LevelDB replays its log,
        # and the last batch just put a whole state there (~10 s at a million keys).
        self.chain = Chain(self.chain.db, self.genesis, self.verifier)
        log.info(
            "state synced height=%d keys=%d seconds=%.1f (fetched and checked %.1f, "
            "written %.1f, opened %.1f)",
            self.chain.height,
            len(self.chain.tree),
            time.monotonic() - started,
            verified - started,
            written - verified,
            time.monotonic() - written,
        )

    # -- block sync ------------------------------------------------------------------------

    async def _import_synced(self, blocks: tuple[SyncedBlock, ...]) -> ImportOutcome:
        """Hand a synced batch to the driver (the chain's only writer); its outcome."""
        done: asyncio.Future[ImportOutcome] = asyncio.get_running_loop().create_future()
        self.driver.submit(SyncedBlocks(blocks, done))
        return await done

    def _set_behind(self, behind: int) -> None:
        self._behind = behind

    async def _regossip_loop(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                self._regossip_if_stuck()
            except Exception:
                log.exception("re-gossip failed")

    def _regossip_if_stuck(self) -> None:
        """A height without progress re-sends our last vote; consensus gossip repairs the rest."""
        if time.monotonic() - self._last_progress < REGOSSIP_S:
            return
        self._last_progress = time.monotonic()
        last = self.guard.last_vote()
        if last is not None and last.height == self.chain.height + 1:
            self.network.broadcast(Kind.VOTE, pack(last.to_fields()))


class _Joining:
    """The network host of a node during state sync: it has no chain to offer yet."""

    def __init__(self, genesis_hash: bytes) -> None:
        self._genesis_hash = genesis_hash

    def status(self) -> tuple[int, bytes, int]:
        return 0, self._genesis_hash, 1

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        return False  # nothing to check it against yet; the peers keep relaying it

    def get_blocks(self, start_height: int, count: int) -> list[tuple[bytes, bytes]]:
        return []

    def on_peer_connected(self, peer_id: str) -> None:
        pass

    def on_peer_disconnected(self, peer_id: str, reason: str) -> None:
        pass


def configured_peers(cfg: NodeConfig) -> tuple[str, ...]:
    """The peers a node's networks dial as configured. A seed is kept as a persistent
    peer: one in seed mode answers at each connect (peer exchange) and hangs up, a plain
    node stays a peer; either is redialed when lost, so a node that lost every other peer
    finds the network again."""
    return (*cfg.persistent_peers, *cfg.seeds)


def _now_ms() -> int:
    """Monotonic milliseconds: consensus gossip's clock for re-sends (never consensus)."""
    return time.monotonic_ns() // 1_000_000


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


def _trust_of(peer: PeerInfo, validators: set[bytes]) -> Trust:
    """How costly `peer` is to fake, as a source of a proposal's txs."""
    if peer.node_key in validators:
        return Trust.VALIDATOR
    return Trust.OUTBOUND if peer.direction is Direction.OUTBOUND else Trust.INBOUND
