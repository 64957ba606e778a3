"""Review rev18d of wan18's vote gossip: the attacks tried that the code withstood.

wan18 (1) announces votes queued for the engine as held, (2) sends a vote again only on
bits announced at most FRESH_BITS_MS before its resend time, (3) hands a peer's VOTE
frames over ahead of its other frames. Each test names the attack it tried.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path

import pytest

import tests.consensus.sim as sim
from fluxchain.core.encoding import pack
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.home import Home
from fluxchain.node.node import ANNOUNCE_EVERY_S, ANNOUNCE_VOTES_EVERY_S, RESEND_AFTER_MS, Node
from p2p.consensus_gossip import FRESH_BITS_MS, ConsensusGossip, announce_due
from p2p.messages import Gossip, Kind, RoundState, VoteBits
from p2p.peer import Inbox
from tests.integration.harness import Devnet
from tests.p2p.harness import node_raw_peer
from tests.p2p.test_consensus_gossip import PEER, W, announce, local_with, sent_votes, vote
from tests.p2p.test_vote_repairs_after_a_stall import StalledMesh
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, derive_key, node_key_path

# -- (2) a vote lost after we sent it --------------------------------------------------------


def test_a_lost_vote_goes_again_on_the_peers_next_heartbeat_however_stale_its_last_bits() -> None:
    """Attack: our copy is lost and the peer's only announcement since predates it (it
    announced once, then its bits did not change). Held: its heartbeat (≤ 1 s) refreshes
    the bits, and the vote goes again within resend + heartbeat + a tick."""
    votes = [vote(i, VoteType.PREVOTE, 0, W) for i in range(2)]
    local = local_with(votes)
    gossip = ConsensusGossip(RESEND_AFTER_MS)
    announce(gossip, 1, 0, VoteBits(0, 1, 0b01))
    assert sent_votes(gossip.plan(PEER, local, 0)) == {(1, 1, 0)}  # sent at 0: lost
    for now_ms in range(100, 10 * RESEND_AFTER_MS, 100):  # no news: nothing goes again
        assert gossip.plan(PEER, local, now_ms) == [], now_ms
    # The peer's heartbeat (same bits) is news; a gossip tick later the vote goes again.
    announce(gossip, 1, 0, VoteBits(0, 1, 0b01))
    assert sent_votes(gossip.plan(PEER, local, 10 * RESEND_AFTER_MS)) == {(1, 1, 0)}


def test_a_late_stamp_after_our_own_stall_errs_toward_sending_not_losing() -> None:
    """Attack: our loop stalled, so `plan` stamps an old announcement late. Held: a late
    stamp can only make a vote go again sooner (a duplicate at worst), never later."""
    votes = [vote(i, VoteType.PREVOTE, 0, W) for i in range(2)]
    local = local_with(votes)
    gossip = ConsensusGossip(RESEND_AFTER_MS)
    announce(gossip, 1, 0, VoteBits(0, 1, 0b01))
    assert sent_votes(gossip.plan(PEER, local, 0)) == {(1, 1, 0)}
    announce(gossip, 1, 0, VoteBits(0, 1, 0b01))  # arrived at ~50 ms; we stalled
    assert RESEND_AFTER_MS - 1 >= RESEND_AFTER_MS - FRESH_BITS_MS  # so it is stamped fresh
    assert gossip.plan(PEER, local, RESEND_AFTER_MS - 1) == []  # first look, not yet due
    assert sent_votes(gossip.plan(PEER, local, RESEND_AFTER_MS)) == {(1, 1, 0)}


def test_lossy_links_and_stalled_loops_still_deliver_every_vote_after_gst() -> None:
    """Attack: drop votes and ROUND_STATEs (up to 90 % of votes) while every node's loop
    stalls on its block check, with the node's announcement throttle and heartbeat. Held:
    once the loss ends, each node holds every vote within 3 s."""
    gst_ms = 4_000
    for drop in (0.3, 0.9):
        for seed in range(1810, 1816):
            mesh = LossyMesh(8, seed, drop=drop, drop_round_states=0.3, gst_ms=gst_ms)
            full_at = mesh.run_until_everyone_holds_every_vote(gst_ms + 3_000)
            assert full_at is not None, f"seed={seed} drop={drop}: a vote never arrived"


class LossyMesh(StalledMesh):
    """wan18's stalled mesh, whose links lose frames at random until `gst_ms`."""

    def __init__(
        self, count: int, seed: int, *, drop: float, drop_round_states: float, gst_ms: int
    ) -> None:
        super().__init__(count, seed, check_ms=(300, 2_500))
        self.loss = random.Random(seed * 7 + 1)
        self.drop, self.drop_round_states, self.gst_ms = drop, drop_round_states, gst_ms

    def send(self, src: int, dst: int, message: Vote | RoundState, now_ms: int) -> None:
        odds = self.drop_round_states if isinstance(message, RoundState) else self.drop
        if now_ms < self.gst_ms and self.loss.random() < odds:
            return
        super().send(src, dst, message, now_ms)

    def run_until_everyone_holds_every_vote(self, until_ms: int) -> int | None:
        for now_ms in range(0, until_ms, 100):
            self.deliver(now_ms)
            for i in range(self.count):
                if not self.stalled(i, now_ms):
                    self.tick(i, now_ms)
            if all(len(h.prevotes(0).by_validator) == self.count for h in self.holds):
                return now_ms
        return None


class NodeCadenceHost(sim.RealGossipHost):
    """A simulated host that announces as the node does (`announce_due`: on a move at
    once, on new votes at most every 0.5 s, else a 1 s heartbeat), not every tick."""

    def reset_gossip(self) -> None:
        super().reset_gossip()
        self.announced_at = -(10**9)

    def announce(self, heartbeat: bool = False) -> None:
        local = self.local_consensus()
        if local is None:
            return
        state = self.reactor.announcement(local)
        since_s = (self.sim.now - self.announced_at) / 1000
        if not announce_due(
            self.announced, state, since_s, ANNOUNCE_EVERY_S, ANNOUNCE_VOTES_EVERY_S
        ):
            return
        self.announced, self.announced_at = state, self.sim.now
        self.announce_seq += 1
        for peer in self.sim.hosts:
            if peer is not self:
                self.send_frame(peer, state, self.announce_seq)


class NodeCadenceSimulation(sim.RealGossipSimulation):
    def __init__(self, scenario: sim.Scenario) -> None:
        super().__init__(scenario)
        self.hosts = [NodeCadenceHost(self, h.index, h.key, h.role) for h in self.hosts]


@pytest.mark.parametrize("first", range(0, 40, 10))
def test_the_seeded_simulation_with_the_nodes_announcement_cadence_never_stalls(first: int) -> None:
    """Attack: the simulation announces every tick, hiding the fresh-bits rule's wait for
    a heartbeat; run it with the node's cadence (lossy links, partitions, crashes,
    byzantine roles from the seed). Held: every seed decides every height, safely."""
    for seed in range(first, first + 10):
        try:
            NodeCadenceSimulation(sim.Scenario.from_seed(seed, 20)).run()
        except sim.InvariantError as failure:
            raise AssertionError(f"seed={seed}: {failure}") from None


# -- (1) votes queued for the engine announced as held ----------------------------------------


def test_a_forged_vote_is_never_queued_nor_announced_as_held(tmp_path: Path) -> None:
    """Attack: a peer sends a validator's vote with a bad signature first, hoping we
    announce its bit and peers never send us the real one. Held: the signature is checked
    before `Driver.admit`; the real vote then comes in, is stepped and leaves the queue."""
    devnet = Devnet(tmp_path)
    node = Node(Home(devnet.homes[0]))
    signer = derive_key(INSECURE_TEST_MNEMONIC, node_key_path(1))  # validator 1 of 4

    async def scenario() -> None:
        await node.start()
        try:
            async with node_raw_peer(node) as attacker:
                height = node.chain.height + 1
                real = Vote.create(signer, node.genesis.chain_id, VoteType.PREVOTE, height, 0, b"")
                forged = replace(real, signature=bytes(reversed(real.signature)))
                assert not await node.on_gossip(attacker.id, Kind.VOTE, pack(forged.to_fields()))
                assert real.validator not in {v.validator for v in node.driver.queued_votes()}
                local = node._local_consensus()
                assert local is not None
                bits = node.consensus_gossip.announcement(local).votes
                index = local.validators.index_of(real.validator)
                assert index is not None
                assert all(not entry.bits >> index & 1 for entry in bits if entry.round == 0)
                await wait_until_async(node.driver._inbox.empty, what="the driver's queue drained")
                assert node.driver.queued_votes() == []
        finally:
            await node.stop()

    asyncio.run(scenario())


# -- (3) votes ahead in a peer's inbox -------------------------------------------------------


def test_a_vote_flood_stays_within_the_inbox_bound_and_other_frames_keep_their_order() -> None:
    """Attack: a peer floods VOTE frames to jump ahead of everything. Held: the inbox
    bound counts votes and the rest together (a full inbox refuses any frame, as before),
    only the flooder's own frames wait, and votes keep their order among themselves."""

    async def main() -> list[bytes]:
        inbox = Inbox(8)
        inbox.put_nowait((Gossip(Kind.PROPOSAL, b"p"), b""))
        inbox.put_nowait((Gossip(Kind.TXS, b"t"), b""))
        for i in range(6):
            inbox.put_nowait((Gossip(Kind.VOTE, bytes([i])), b""))
        with pytest.raises(asyncio.QueueFull):
            inbox.put_nowait((Gossip(Kind.VOTE, b"x"), b""))
        with pytest.raises(asyncio.QueueFull):
            inbox.put_nowait((Gossip(Kind.TXS, b"y"), b""))
        taken = []
        while not inbox.empty():
            message, _ = await inbox.get()
            assert isinstance(message, Gossip)
            taken.append(message.payload)
        return taken

    assert asyncio.run(main()) == [bytes([i]) for i in range(6)] + [b"p", b"t"]
