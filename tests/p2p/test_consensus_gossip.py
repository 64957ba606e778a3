"""Per-peer consensus gossip: ROUND_STATE frames, the reactor's decisions, the network's part.

The reactor (p2p/consensus_gossip.py) is pure: these tests drive it with hand-made vote
sets and announcements, as the node and the simulation do.
"""

from __future__ import annotations

import asyncio

import pytest

from consensus.engine import Engine
from consensus.events import NewHeight, ProposalReceived, VoteReceived
from consensus.messages import Proposal, Step
from consensus.proposer import proposer
from consensus.voteset import HeightVoteSet
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.encoding import pack
from fluxchain.core.validators import Validator, ValidatorSet
from fluxchain.core.votes import NIL, Commit, Vote, VoteType
from p2p.consensus_gossip import (
    MAX_PROPOSAL_SENDS,
    ConsensusGossip,
    LocalConsensus,
    SendProposal,
    SendVote,
    announce_due,
    committed_announcement,
    full_sender,
)
from p2p.errors import FrameError, PeerReason
from p2p.messages import (
    MAX_VOTE_BITS_BYTES,
    MAX_VOTE_SETS,
    Gossip,
    Kind,
    RoundState,
    VoteBits,
    decode,
    encode,
)
from tests.p2p.harness import RecordingHost, cluster, fast_limits, raw_peer, run
from tests.support.chain import vrf_key_of
from tests.support.wait import wait_until_async

CHAIN = "fluxchain-gossip-test"
KEYS = sorted((SigningKey(sha256(bytes([i]))) for i in range(4)), key=lambda k: k.public_key)
VALIDATORS = ValidatorSet.of([Validator(k.public_key, 1, vrf_key_of(k)) for k in KEYS])
BLOCK = b"block w"
W = sha256(BLOCK)
RESEND_MS = 1_000
PEER = "peer"


def vote(i: int, vote_type: VoteType, round_: int, block_hash: bytes, height: int = 1) -> Vote:
    return Vote.create(KEYS[i], CHAIN, vote_type, height, round_, block_hash)


def local_with(
    votes: list[Vote],
    *,
    round_: int = 0,
    proposals: list[tuple[Proposal, bytes]] | None = None,
    last_commit: Commit | None = None,
    height: int = 1,
) -> LocalConsensus:
    held = HeightVoteSet(CHAIN, height, VALIDATORS)
    for v in votes:
        held.add(v, round_, {W: None})
    return LocalConsensus(
        height, round_, Step.PREVOTE, VALIDATORS, held, proposals or [], last_commit
    )


def announce(gossip: ConsensusGossip, height: int, round_: int, *entries: VoteBits) -> None:
    assert gossip.on_round_state(PEER, RoundState(height, round_, 2, b"", entries)) is None


def sent_votes(sends: list[SendProposal | SendVote]) -> set[tuple[int, int, int]]:
    index = {k.public_key: i for i, k in enumerate(KEYS)}
    return {
        (index[s.vote.validator], int(s.vote.type), s.vote.round)
        for s in sends
        if isinstance(s, SendVote)
    }


# -- the ROUND_STATE frame ----------------------------------------------------------------


def test_round_state_round_trips() -> None:
    state = RoundState(7, 3, 2, W, (VoteBits(1, 1, 0b1011), VoteBits(3, 1, 0), VoteBits(3, 2, 1)))
    assert decode(encode(state)) == state


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ([1, 0, 2, b"", [[0, 1, b"\x01\x00"]]], "trailing zero byte"),
        ([1, 0, 2, b"", [[1, 1, b"\x01"], [0, 1, b"\x01"]]], "not sorted"),
        ([1, 0, 2, b"", [[0, 1, b"\x01"], [0, 1, b"\x01"]]], "repeated"),
        ([1, 0, 2, b"", [[r, 1, b""] for r in range(MAX_VOTE_SETS + 1)]], "votes"),
        ([1, 0, 2, b"", [[0, 1, b"\x01" * (MAX_VOTE_BITS_BYTES + 1)]]], "bits"),
        ([1, 0, 4, b"", []], "step"),
        ([1, 0, 2, b"short", []], "proposal"),
        ([0, 0, 2, b"", []], "height"),
        ([1, 0, 2, b"", [[0, 3, b""]]], "type"),
        ([1, 0, 2, b""], "expected 5 fields"),
    ],
)
def test_junk_round_state_frames_are_refused(fields: list[object], what: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode(pack([int(Kind.ROUND_STATE), *fields]))
    assert caught.value.reason is PeerReason.BAD_FIELD
    assert what in caught.value.message


# -- what the reactor sends --------------------------------------------------------------


def test_a_peer_missing_the_proof_of_lock_gets_the_lost_prevotes() -> None:
    """Issue 25 #2 in one step: P holds 2 of the 4 round-0 prevotes for w, and w is
    re-proposed in round 1 with proof-of-lock round 0. P is sent the proposal and the
    two prevotes it lacks, nothing it has."""
    polka = [vote(i, VoteType.PREVOTE, 0, W) for i in range(4)]
    proposal = Proposal.create(KEYS[2], CHAIN, 1, 1, 0, W)
    local = local_with(polka, round_=1, proposals=[(proposal, BLOCK)])
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 1, VoteBits(0, 1, 0b0011))
    sends = gossip.plan(PEER, local, now_ms=0)
    assert sends[0] == SendProposal(proposal, BLOCK, compact=True)
    assert sent_votes(sends) == {(2, 1, 0), (3, 1, 0)}


def test_what_was_sent_is_sent_again_only_if_still_lacking_after_resend_time() -> None:
    local = local_with([vote(i, VoteType.PREVOTE, 0, W) for i in range(3)])
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 0, VoteBits(0, 1, 0b001))
    assert sent_votes(gossip.plan(PEER, local, 0)) == {(1, 1, 0), (2, 1, 0)}
    assert gossip.plan(PEER, local, RESEND_MS - 1) == []  # in flight
    announce(gossip, 1, 0, VoteBits(0, 1, 0b011))  # vote 1 arrived, vote 2 was lost
    assert sent_votes(gossip.plan(PEER, local, RESEND_MS)) == {(2, 1, 0)}


def test_a_peer_that_keeps_lacking_a_proposal_gets_its_block_a_bounded_number_of_times() -> None:
    """A peer announcing forever that it lacks the proposal cannot make us stream 4 MiB
    blocks to it every re-send interval: MAX_PROPOSAL_SENDS per height, then block sync."""
    proposal = Proposal.create(KEYS[1], CHAIN, 1, 0, -1, W)
    local = local_with([], proposals=[(proposal, BLOCK)])
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 0)
    sent = 0
    for tick in range(10):
        sent += sum(isinstance(s, SendProposal) for s in gossip.plan(PEER, local, tick * RESEND_MS))
    assert sent == MAX_PROPOSAL_SENDS


def test_a_peer_holding_another_block_of_the_round_is_sent_the_full_block_first() -> None:
    """p2p25 3: a peer whose announcement shows another block of the round (an equivocating
    proposer's) dropped ours, and a compact copy of a dropped proposal stays in its
    seen-cache: a compact first send is discarded there, and the block that votes point
    at came a send later (a round lost, tests/integration/test_p2p25_equivocated_block_
    spreads.py). Its first send is full from the chosen holder, compact from the others;
    a peer holding no block of the round is still sent the compact copy first."""
    proposal = Proposal.create(KEYS[1], CHAIN, 1, 0, -1, W)
    local = local_with([], proposals=[(proposal, BLOCK)])
    other = sha256(b"block a")
    fulls = 0
    for holder in ("h0", "h1", "h2"):
        gossip = ConsensusGossip(RESEND_MS, self_id=holder)
        for peer, held in ((PEER, other), ("h0", W), ("h1", W), ("h2", W)):
            if peer != holder:
                assert gossip.on_round_state(peer, RoundState(1, 0, 2, held, ())) is None
        first = [s for s in gossip.plan(PEER, local, 0) if isinstance(s, SendProposal)]
        assert len(first) == 1 and first[0].proposal == proposal
        fulls += not first[0].compact
    assert fulls == 1, f"{fulls} of 3 holders sent the full block first"
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 0)  # no block of the round
    assert gossip.plan(PEER, local, 0)[0] == SendProposal(proposal, BLOCK, compact=True)


def test_a_peer_lacking_a_proposal_is_sent_its_compact_copy_before_the_block() -> None:
    """A peer that lacks the proposal mostly lacks only the frame, or is still fetching
    the few txs its compact copy named: every peer holding the proposal sends it, so the
    first send is the compact proposal (ids), and only a peer still lacking it a resend
    time later (its rebuild failed) gets the full block (issue 22, wan15: up to 295 full
    1 MiB blocks a height at 500 tx/s, from peers of nodes still rebuilding)."""
    proposal = Proposal.create(KEYS[1], CHAIN, 1, 0, -1, W)
    local = local_with([], proposals=[(proposal, BLOCK)])
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 0)
    sent = [
        [s for s in gossip.plan(PEER, local, tick * RESEND_MS) if isinstance(s, SendProposal)]
        for tick in range(MAX_PROPOSAL_SENDS + 1)
    ]
    assert sent[0] == [SendProposal(proposal, BLOCK, compact=True)]
    assert sent[1:] == [[SendProposal(proposal, BLOCK)]] * (MAX_PROPOSAL_SENDS - 1) + [[]]


def test_of_many_holders_only_one_sends_a_lacking_peer_the_full_block() -> None:
    """Issue 22, wan15b: a node still lacking a proposal a resend time after its compact
    copies (a slow or failed rebuild) drew the full block from every peer holding it, up
    to 2 x 18 MiB at 500 tx/s on the WAN testnet. Of 18 holders in a full mesh, each
    knowing the others hold it, only one sends the full block before the last send; the
    rest send compact copies, each of which lets the lacking peer pull the txs from its
    sender. The last send is full from every holder (rev15d: the chosen one may be a
    Sybil or unlinked), so a peer lacking it that long draws at most 18 + 1 full blocks
    where it drew 2 x 18 before wan15b."""
    proposal = Proposal.create(KEYS[1], CHAIN, 1, 0, -1, W)
    local = local_with([], proposals=[(proposal, BLOCK)])
    names = [f"holder{i:02d}" for i in range(18)]
    full: dict[str, int] = {}
    compact: dict[str, int] = {}
    for name in names:
        gossip = ConsensusGossip(RESEND_MS, self_id=name)
        for other in names:
            if other != name:
                assert gossip.on_round_state(other, RoundState(1, 0, 2, W, ())) is None
        announce(gossip, 1, 0)  # PEER lacks it
        for tick in range(MAX_PROPOSAL_SENDS + 1):
            for send in gossip.plan(PEER, local, tick * RESEND_MS):
                if isinstance(send, SendProposal):
                    counts = compact if send.compact else full
                    counts[name] = counts.get(name, 0) + 1
    chosen = full_sender(PEER, names)
    assert full == {n: 1 + (n == chosen) * (MAX_PROPOSAL_SENDS - 2) for n in names}
    # Every holder still sends it the proposal MAX_PROPOSAL_SENDS times (liveness).
    assert {n: compact.get(n, 0) + full.get(n, 0) for n in names} == dict.fromkeys(
        names, MAX_PROPOSAL_SENDS
    )


def test_the_full_block_sender_is_spread_over_holders_by_lacking_peer() -> None:
    """Not always the same holder (the lowest id would send every full block of the
    network): the choice depends on the lacking peer too."""
    holders = [f"holder{i:02d}" for i in range(18)]
    chosen = {full_sender(f"peer{i}", holders) for i in range(50)}
    assert len(chosen) >= 10


def test_votes_the_peer_sent_us_or_that_we_flooded_are_not_sent_back() -> None:
    votes = [vote(i, VoteType.PRECOMMIT, 0, W) for i in range(3)]
    local = local_with(votes)
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 0)
    gossip.on_received(PEER, votes[0], 0)
    gossip.on_sent_to_all([PEER], votes[1].signature, 0)
    assert sent_votes(gossip.plan(PEER, local, 10)) == {(2, 2, 0)}


def test_a_peer_one_height_behind_gets_our_last_commit() -> None:
    precommits = [vote(i, VoteType.PRECOMMIT, 2, W, height=4) for i in range(3)]
    commit = Commit.from_votes(precommits)
    local = local_with([], height=5, last_commit=commit)
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 4, 2)
    sends = gossip.plan(PEER, local, 0)
    assert {s.vote for s in sends if isinstance(s, SendVote)} == set(precommits)
    announce_far = ConsensusGossip(RESEND_MS)
    assert announce_far.on_round_state(PEER, RoundState(3, 0, 1, b"", ())) is None
    assert announce_far.plan(PEER, local, 0) == []  # two behind: block sync's job


def test_a_node_waiting_out_the_block_interval_is_not_sent_the_commit_it_decided() -> None:
    """Issue 22, wan23v: a node that committed height 4 waits out the block interval before
    height 5. It used to go silent at its last position (height 4), so every peer already
    at height 5 sent it the precommits of height 4 its old bits lacked: ~30 votes from each
    peer a height on the WAN testnet. It now announces height 5, holding nothing; a peer
    at 5 has nothing of height 5 for it yet, and nothing of 4."""
    precommits = [vote(i, VoteType.PRECOMMIT, 0, W, height=4) for i in range(3)]
    local = local_with([], height=5, last_commit=Commit.from_votes(precommits))
    silent = ConsensusGossip(RESEND_MS)
    announce(silent, 4, 0)  # its last announcement before it decided
    assert {s.vote for s in silent.plan(PEER, local, 0) if isinstance(s, SendVote)} == set(
        precommits
    )
    waiting = ConsensusGossip(RESEND_MS)
    announce(waiting, 4, 0)
    assert waiting.on_round_state(PEER, committed_announcement(4)) is None
    assert waiting.peer(PEER).height == 5
    assert waiting.plan(PEER, local, 0) == []


def test_a_node_in_its_commit_wait_announces_what_its_engine_buffered() -> None:
    """Review rev13b: the commit-wait announcement said "holding nothing" whatever the
    engine had buffered of the next height, so every peer sent the waiting node the full
    block it already held (and the votes). Built from `Engine.buffered`, it shows the
    round-0 proposal and the buffered votes' bits: a peer sends only what is missing."""
    waiting = Engine(CHAIN, None)
    waiting.step(NewHeight(4, VALIDATORS, None, VALIDATORS))  # decided 4; 5 not started
    chosen = proposer(VALIDATORS, 5, 0)
    proposal = Proposal.create(next(k for k in KEYS if k.public_key == chosen), CHAIN, 5, 0, -1, W)
    buffered = [vote(i, VoteType.PREVOTE, 0, W, height=5) for i in (0, 1)]
    waiting.step(ProposalReceived(proposal, BLOCK))
    for v in buffered:
        waiting.step(VoteReceived(v))
    proposals, votes = waiting.buffered()
    state = committed_announcement(4, proposals, votes, waiting.next_validators)
    assert (state.height, state.proposal) == (5, W)

    missing = vote(2, VoteType.PREVOTE, 0, W, height=5)
    local = local_with([*buffered, missing], height=5, proposals=[(proposal, BLOCK)])
    peer = ConsensusGossip(RESEND_MS)
    assert peer.on_round_state(PEER, state) is None
    sends = peer.plan(PEER, local, 0)
    assert [s.vote for s in sends if isinstance(s, SendVote)] == [missing]
    assert not any(isinstance(s, SendProposal) for s in sends)
    # Without the next set (an epoch's first block) the proposal is still shown held.
    unknown = committed_announcement(4, proposals, votes, None)
    assert (unknown.proposal, unknown.votes) == (W, ())


def test_an_equivocators_votes_are_offered_despite_the_peers_bit() -> None:
    """The peer's bit for validator 3 may stand for its other vote: both are offered."""
    twins = [vote(3, VoteType.PREVOTE, 0, W), vote(3, VoteType.PREVOTE, 0, NIL)]
    local = local_with([vote(0, VoteType.PREVOTE, 0, W), *twins])
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 0, VoteBits(0, 1, 0b1001))
    sends = gossip.plan(PEER, local, 0)
    assert {s.vote for s in sends if isinstance(s, SendVote)} == set(twins)


def test_votes_of_rounds_above_the_peers_are_offered() -> None:
    """f+1 votes of a later round let a lagging peer skip to it."""
    local = local_with([vote(i, VoteType.PREVOTE, 2, NIL) for i in range(2)], round_=2)
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 0)
    assert sent_votes(gossip.plan(PEER, local, 0)) == {(0, 1, 2), (1, 1, 2)}


def test_the_announcement_shows_the_round_and_the_proof_of_lock_round() -> None:
    proposal = Proposal.create(KEYS[2], CHAIN, 1, 1, 0, W)
    local = local_with(
        [vote(0, VoteType.PREVOTE, 0, W), vote(2, VoteType.PREVOTE, 0, W)],
        round_=1,
        proposals=[(proposal, BLOCK)],
    )
    state = ConsensusGossip(RESEND_MS).announcement(local)
    assert state == RoundState(
        1, 1, 2, W, (VoteBits(0, 1, 0b101), VoteBits(1, 1, 0), VoteBits(1, 2, 0))
    )


def test_a_round_state_that_goes_backwards_or_names_strangers_is_junk() -> None:
    gossip = ConsensusGossip(RESEND_MS)
    gossip.announcement(local_with([]))  # learns our height and set size
    announce(gossip, 1, 3)
    assert gossip.on_round_state(PEER, RoundState(1, 2, 1, b"", ())) is not None
    assert gossip.on_round_state(PEER, RoundState(1, 4, 1, b"", (VoteBits(4, 1, 1 << 4),)))
    assert gossip.peer(PEER).round == 3  # junk changes nothing


# -- the network's part ------------------------------------------------------------------


def test_junk_round_states_cost_the_sender_its_connection() -> None:
    """Round states that go backwards cost 20 points each: six ban the peer (points decay)."""

    async def scenario() -> None:
        async with cluster() as nodes:
            node = await nodes.add(consensus=ConsensusGossip(RESEND_MS))
            async with raw_peer(node.address) as peer:
                await peer.handshake()
                await peer.send(RoundState(9, 9, 1, b"", ()))
                for _ in range(6):
                    await peer.send(RoundState(9, 1, 1, b"", ()))
                _code, reason = await peer.closed_with()
                assert reason == "banned"

    run(scenario)


def test_a_round_state_tells_the_height_the_peer_committed() -> None:
    """Issue 22, wan23v: a node no longer sends STATUS after a commit its ROUND_STATE of the
    next height told, so a ROUND_STATE at height h raises the height held for its sender
    to h - 1 (what block sync asks it by), as a STATUS would; never lowers it."""

    async def scenario() -> None:
        async with cluster() as nodes:
            node = await nodes.add(consensus=ConsensusGossip(RESEND_MS))
            async with raw_peer(node.address) as peer:
                await peer.handshake()

                def height() -> int:
                    peers = node.network.peers()
                    return next((p.height for p in peers if p.peer_id == peer.id), -1)

                await peer.send(RoundState(7, 0, 1, b"", ()))
                await wait_until_async(lambda: height() == 6, what="height 6 from ROUND_STATE")
                await peer.send(RoundState(7, 2, 1, b"", ()))
                await peer.send(RoundState(9, 0, 1, b"", ()))
                await wait_until_async(lambda: height() == 8, what="height 8 from ROUND_STATE")

    run(scenario)


def test_a_consensus_message_sent_again_later_is_delivered_again_but_not_relayed() -> None:
    """The first copy of a vote may have been refused by the engine (too far ahead): a peer
    whose per-peer state says we lack it sends it again, and the host must see it. A flood
    duplicate (at once) is still dropped, and a re-delivered copy is relayed no further."""

    async def scenario() -> None:
        async with cluster() as nodes:
            node = await nodes.add(limits=fast_limits(consensus_redeliver_after=0.3))
            async with raw_peer(node.address) as sender, raw_peer(node.address) as observer:
                await sender.handshake()
                await observer.handshake()
                await wait_until_async(lambda: len(node.peer_ids()) == 2, what="both connected")
                first = pack(vote(0, VoteType.PREVOTE, 0, W).to_fields())
                marker = pack(vote(1, VoteType.PREVOTE, 0, W).to_fields())
                await sender.send(Gossip(Kind.VOTE, first))
                await sender.send(Gossip(Kind.VOTE, first))  # a flood duplicate
                relayed = await observer.receive_kind(Gossip)
                assert relayed.payload == first
                await wait_until_async(lambda: len(node.host.payloads(Kind.VOTE)) == 1)
                loop_time = asyncio.get_running_loop().time
                again_at = loop_time() + 0.35
                await wait_until_async(lambda: loop_time() > again_at, what="the redeliver time")
                await sender.send(Gossip(Kind.VOTE, first))
                await sender.send(Gossip(Kind.VOTE, marker))
                assert (await observer.receive_kind(Gossip)).payload == marker
                assert node.host.payloads(Kind.VOTE) == [first, first, marker]

    run(scenario)


def test_a_change_of_held_votes_alone_is_announced_at_most_every_votes_interval() -> None:
    """ROUND_STATE frames (issue 22, wan22i): a new height, round or proposal goes out at
    once; a new vote bit or step alone waits for the votes interval (each one was a frame
    to every peer, several a height); nothing new waits for the heartbeat."""
    every, votes_every = 1.0, 0.5
    before = RoundState(3, 0, int(Step.PREVOTE), W, (VoteBits(0, int(VoteType.PREVOTE), 0b01),))
    more_votes = RoundState(3, 0, int(Step.PREVOTE), W, (VoteBits(0, int(VoteType.PREVOTE), 0b11),))
    next_step = RoundState(3, 0, int(Step.PRECOMMIT), W, before.votes)
    assert announce_due(None, before, 0.0, every, votes_every)
    assert not announce_due(before, next_step, 0.01, every, votes_every)
    assert announce_due(before, next_step, votes_every, every, votes_every)
    other_proposal = RoundState(3, 0, int(Step.PREVOTE), sha256(b"x"), before.votes)
    assert announce_due(before, other_proposal, 0.01, every, votes_every)
    assert announce_due(
        before, RoundState(4, 0, int(Step.PROPOSE), b"", ()), 0.01, every, votes_every
    )
    next_round = RoundState(3, 1, int(Step.PREVOTE), W, ())
    assert announce_due(before, next_round, 0.01, every, votes_every)
    assert not announce_due(before, more_votes, 0.1, every, votes_every)
    assert announce_due(before, more_votes, votes_every, every, votes_every)
    assert not announce_due(before, before, 0.9, every, votes_every)
    assert announce_due(before, before, every, every, votes_every)


# -- votes sent again only on news (issue 22, wan18) --------------------------------------


def test_a_vote_is_sent_again_only_on_bits_announced_after_our_copy_could_arrive() -> None:
    """Bits older than our copy say nothing of it: a peer silent since just after we
    flooded a vote (its loop busy checking a block, as every node's is at once) is not
    sent it again, however long the silence; once it announces without the vote, it is."""
    votes = [vote(i, VoteType.PREVOTE, 0, W) for i in range(3)]
    local = local_with(votes)
    gossip = ConsensusGossip(RESEND_MS)
    announce(gossip, 1, 0, VoteBits(0, 1, 0b001))  # sent before our copies arrived
    gossip.on_sent_to_all([PEER], votes[1].signature, 0)  # ours, flooded
    gossip.on_sent_to_all([PEER], votes[2].signature, -RESEND_MS // 2)  # a relay held back
    assert gossip.plan(PEER, local, 50) == []
    for now_ms in (RESEND_MS, 3 * RESEND_MS, 10 * RESEND_MS):
        assert gossip.plan(PEER, local, now_ms) == [], now_ms
    announce(gossip, 1, 0, VoteBits(0, 1, 0b011))  # vote 1 arrived, vote 2 did not
    assert sent_votes(gossip.plan(PEER, local, 10 * RESEND_MS)) == {(2, 1, 0)}


def test_votes_queued_for_the_engine_are_announced_as_held() -> None:
    """A vote taken off the wire but still queued behind the engine's work (a block
    check) is announced as held, so that peers do not send it again meanwhile."""
    held = [vote(0, VoteType.PREVOTE, 0, W)]
    queued = [
        vote(2, VoteType.PREVOTE, 0, W),
        vote(3, VoteType.PRECOMMIT, 0, W),
        vote(1, VoteType.PREVOTE, 0, W, height=2),  # of another height: not ours to claim
    ]
    local = local_with(held)
    local = LocalConsensus(
        local.height,
        local.round,
        local.step,
        local.validators,
        local.votes,
        local.proposals,
        local.last_commit,
        queued,
    )
    state = ConsensusGossip(RESEND_MS).announcement(local)
    index = {k.public_key: i for i, k in enumerate(KEYS)}
    prevote_bits = 1 << index[held[0].validator] | 1 << index[queued[0].validator]
    assert state.votes == (
        VoteBits(0, 1, prevote_bits),
        VoteBits(0, 2, 1 << index[queued[1].validator]),
    )


class _KeepsLater(RecordingHost):
    """A host that does not keep (nor relay) the first copy of a proposal, and keeps the
    next: an equivocator's block the engine dropped until votes pointed at it."""

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        await super().on_gossip(peer_id, kind, payload)
        if len(self.payloads(kind)) > 1:
            return True
        assert self.network is not None
        self.network.unrelayed(kind, payload)  # as fluxchain.node.node.Node.on_gossip does
        return False


def test_a_proposal_the_host_did_not_relay_is_relayed_when_a_later_copy_is_kept() -> None:
    """Review rev24w 2: the host relays only the proposals its engine keeps. One it drops
    (an equivocating proposer's second block) may be needed later, once votes point at
    it: the copy consensus gossip sends again must then be relayed, not taken as one the
    first delivery flooded already (`Network.unrelayed`)."""

    async def scenario() -> None:
        async with cluster() as nodes:
            host = _KeepsLater()
            node = await nodes.add(limits=fast_limits(consensus_redeliver_after=0.3), host=host)
            async with raw_peer(node.address) as sender, raw_peer(node.address) as observer:
                await sender.handshake()
                await observer.handshake()
                await wait_until_async(lambda: len(node.peer_ids()) == 2, what="both connected")
                payload = b"an equivocator's second block"
                await sender.send(Gossip(Kind.PROPOSAL, payload))
                await wait_until_async(lambda: len(host.payloads(Kind.PROPOSAL)) == 1)
                loop_time = asyncio.get_running_loop().time
                again_at = loop_time() + 0.35
                await wait_until_async(lambda: loop_time() > again_at, what="the redeliver time")
                await sender.send(Gossip(Kind.PROPOSAL, payload))
                relayed = await observer.receive_kind(Gossip)
                assert (relayed.kind, relayed.payload) == (Kind.PROPOSAL, payload)
                assert host.payloads(Kind.PROPOSAL) == [payload, payload]

    run(scenario)
