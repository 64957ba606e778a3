"""Consensus gossip's vote repairs while every node checks the same block (issue 22, wan18).

Under the WAN testnet's pinned load a node's loop stalls for up to ~2.5 s while it checks
a block, and every node checks the same block at once. Stale announcements then made
each node send each vote again to ~8 peers that held it. Here 8 validators' reactors (the
node's `ConsensusGossip`, announcement throttle, relay hold and resend times) run over a
seeded in-memory network.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter

from consensus.messages import Step
from consensus.voteset import HeightVoteSet
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.validators import Validator, ValidatorSet
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.node import (
    ANNOUNCE_EVERY_S,
    ANNOUNCE_VOTES_EVERY_S,
    CONSENSUS_GOSSIP_S,
    RELAYED_HOLD_MS,
    RESEND_AFTER_MS,
)
from p2p.consensus_gossip import ConsensusGossip, LocalConsensus, SendVote, announce_due
from p2p.messages import RoundState
from tests.support.chain import vrf_key_of

CHAIN = "fluxchain-vote-repairs-test"
W = sha256(b"block w")
Frame = tuple[int, int, int, int, Vote | RoundState]  # arrival ms, order, to, from, message


class StalledMesh:
    """A full mesh of validators whose loops stall until their block check ends (a
    stalled node reads, sends and announces nothing); each then prevotes for the block."""

    def __init__(self, count: int, seed: int, check_ms: tuple[int, int]) -> None:
        self.rng = random.Random(seed)
        self.count = count
        keys = sorted(
            (SigningKey(sha256(b"wan18" + bytes([i]))) for i in range(count)),
            key=lambda k: k.public_key,
        )
        self.validators = ValidatorSet.of([Validator(k.public_key, 1, vrf_key_of(k)) for k in keys])
        self.votes = [Vote.create(k, CHAIN, VoteType.PREVOTE, 1, 0, W) for k in keys]
        self.names = [str(i) for i in range(count)]
        self.gossips = [ConsensusGossip(RESEND_AFTER_MS, self_id=name) for name in self.names]
        self.holds = [HeightVoteSet(CHAIN, 1, self.validators) for _ in self.names]
        self.announced: list[tuple[RoundState | None, int]] = [(None, 0)] * count
        self.checked = [self.rng.randint(*check_ms) for _ in self.names]
        self.copies: Counter[tuple[int, bytes]] = Counter()  # (node, vote) -> copies taken
        self.repairs = 0  # votes consensus gossip sent
        self.wire: list[Frame] = []
        self.order = itertools.count()

    def run(self, until_ms: int) -> None:
        for now_ms in range(0, until_ms, int(CONSENSUS_GOSSIP_S * 1000)):
            self.deliver(now_ms)
            for i in range(self.count):
                if not self.stalled(i, now_ms):
                    self.tick(i, now_ms)

    def stalled(self, i: int, now_ms: int) -> bool:
        """Its height started (and was announced) at 0; then it checks the block."""
        return 0 < now_ms < self.checked[i]

    def send(self, src: int, dst: int, message: Vote | RoundState, now_ms: int) -> None:
        arrival = now_ms + self.rng.randint(20, 80)
        heapq.heappush(self.wire, (arrival, next(self.order), dst, src, message))

    def deliver(self, now_ms: int) -> None:
        due = []
        while self.wire and self.wire[0][0] <= now_ms:
            due.append(heapq.heappop(self.wire))
        for frame in due:
            _, _, dst, src, message = frame
            if self.stalled(dst, now_ms):
                heapq.heappush(self.wire, frame)  # waits in the socket
            elif isinstance(message, RoundState):
                assert self.gossips[dst].on_round_state(self.names[src], message) is None
            else:
                self.take(dst, src, message, now_ms)

    def take(self, i: int, src: int, vote: Vote, now_ms: int) -> None:
        """Node._on_vote: a new vote is kept, relayed to one peer, held from the rest."""
        self.copies[(i, vote.signature)] += 1
        index = self.validators.index_of(vote.validator)
        self.gossips[i].on_received(self.names[src], vote, index)
        if vote.validator in self.holds[i].prevotes(0).by_validator:
            return
        self.holds[i].add(vote, 0, {W: None})
        rest = [j for j in range(self.count) if j not in (i, src)]
        self.send(i, self.rng.choice(rest), vote, now_ms)
        held_since = now_ms - (RESEND_AFTER_MS - RELAYED_HOLD_MS)
        self.gossips[i].on_sent_to_all([self.names[j] for j in rest], vote.signature, held_since)

    def tick(self, i: int, now_ms: int) -> None:
        """Node._consensus_gossip_once, after its own prevote once the check ended."""
        others = [j for j in range(self.count) if j != i]
        own = self.votes[i]
        if now_ms and own.validator not in self.holds[i].prevotes(0).by_validator:
            self.holds[i].add(own, 0, {W: None})
            for j in others:
                self.send(i, j, own, now_ms)
            self.gossips[i].on_sent_to_all([self.names[j] for j in others], own.signature, now_ms)
        local = LocalConsensus(1, 0, Step.PREVOTE, self.validators, self.holds[i], [], None)
        state = self.gossips[i].announcement(local)
        last, at_ms = self.announced[i]
        since_s = (now_ms - at_ms) / 1000
        if announce_due(last, state, since_s, ANNOUNCE_EVERY_S, ANNOUNCE_VOTES_EVERY_S):
            self.announced[i] = (state, now_ms)
            for j in others:
                self.send(i, j, state, now_ms)
        for j in others:
            for planned in self.gossips[i].plan(self.names[j], local, now_ms):
                assert isinstance(planned, SendVote)
                self.repairs += 1
                self.send(i, j, planned.vote, now_ms)


def test_votes_cast_while_peers_check_the_block_reach_each_node_without_repairs() -> None:
    """Each node's check of the block ends at 0.3-2.5 s (wan16's pinned load: up to
    2.5 s); each signer's flood reaches every node, so no vote needs consensus gossip.
    Before wan18, the bits a stalled peer announced before its check drew repairs of
    votes waiting in its socket (seed 1801: 34 repairs, a vote taken 5 times)."""
    for seed in (1801, 1802, 1803):
        mesh = StalledMesh(8, seed, check_ms=(300, 2_500))
        mesh.run(until_ms=6_000)
        for i in range(mesh.count):
            held = mesh.holds[i].prevotes(0).by_validator
            assert len(held) == mesh.count, f"seed={seed}: node {i} holds {len(held)} votes"
        most = max(mesh.copies.values())
        assert mesh.repairs == 0, f"seed={seed}: {mesh.repairs} votes sent again, {most} copies"
