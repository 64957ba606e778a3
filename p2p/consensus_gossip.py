"""Consensus gossip per peer: what each peer holds, and what to send it next. Pure.

Flooding delivers each proposal and vote once, and a message lost on the way (a dropped
frame, a full queue, a partition, an engine that refused it as too far ahead) is never
offered again: the seen-caches of every node suppress it. Tendermint's liveness needs
more: every message a correct node holds at a height must eventually reach every other
correct node at that height ("gossip communication" in the paper). As CometBFT's
consensus reactor does, each node therefore tells its peers where it is (ROUND_STATE:
height, round, step, its proposal, and bit sets of the votes it holds) and sends each
peer, from its own state, exactly what that peer lacks:

1. the proposal of the peer's round: compact (tx ids; one holder sends its block later);
2. the prevotes of that proposal's proof-of-lock round (without them a peer that missed
   the polka can never accept a re-proposal of the locked value: the stall of issue 25);
3. the prevotes and precommits of the peer's round;
4. the votes of the rounds above it (so that it can skip ahead on f+1 of them);
5. to a peer one height behind, the precommits of our last commit.

"Lacks" means: not in the bit set the peer announced for that (round, type), not sent to
us by the peer, and not sent by us within `resend_after` (a message lost after we sent
it is sent again; one in flight is not). A vote we sent goes again only if the peer's
bits come from an announcement we first saw at most FRESH_BITS_MS before its resend
time, or later: bits older than that may predate our copy's arrival. One we only held
back after relaying it to a fan-out of other peers goes once its hold ends, whatever the
bits' age: none of ours was on its way (the Sybil defence of the relay fan-out, rev10).
A node's loop stalls while it checks a block, and every node checks the same block at
once: the bits a peer announced just before its stall made each node send each vote
again to ~8 peers that held it (issue 22, wan18). An equivocating validator's votes are
judged by signature, not by bit: the peer may hold its other vote. A proposal goes to a
peer at most MAX_PROPOSAL_SENDS times per height: the first compact, the middle ones
full from one holder only (COMPACT_SENDS, `full_sender`), the last full from every
holder; to a peer announcing another block of the round (an equivocation: it dropped
ours, and a compact copy of it is a duplicate there) the first is full from that one
holder too (p2p25 3).

Nothing here does I/O or reads a clock: times are passed in, so the node's loop
(fluxchain/node/node.py) and the seeded simulation (tests/consensus/sim.py) run the
same decisions. See docs/consensus.md §7 ("Gossip") and docs/p2p.md ("Consensus gossip").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from consensus.messages import Proposal, Step
from consensus.voteset import HeightVoteSet, VoteSet
from fluxchain.core.crypto import sha256
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit, Vote, VoteType
from p2p.messages import MAX_VOTE_SETS, RoundState, VoteBits

# Rounds above a peer's own round whose votes we offer it: the engine keeps at most this
# many future rounds per validator (consensus.voteset.MAX_FUTURE_ROUNDS_PER_VALIDATOR).
ROUNDS_AHEAD: Final = 3
# Signatures remembered per peer and height (what it sent us, what we sent it): a height
# holds at most a few rounds of votes; past the bound the oldest marks are forgotten,
# which only costs a re-send.
MAX_MARKS_PER_PEER: Final = 20_000

# A proposal carries a block of up to 4 MiB: a peer that keeps announcing it lacks one
# (lost frames, or a lie that turns us into an amplifier) gets it at most this often per
# height; past that, block sync fetches the decided block.
MAX_PROPOSAL_SENDS: Final = 3
# An announcement seen this long before a vote's resend time (or later) may show the vote:
# a WAN round trip and a loaded loop's turn after our copy left (issue 22, wan18). Older
# bits predate it, and a peer lacking the vote announces again within a second.
FRESH_BITS_MS: Final = 300
# The first of them goes compact (the tx ids, ~3 % of a block of 1 KB txs): a peer that
# lacks a proposal mostly lacks only the frame, or is still rebuilding it from a compact
# copy, and every peer holding the proposal sends it one. Full blocks from all 18 peers
# of a node that had not rebuilt a 1 MiB block within RELAYED_HOLD_MS made a late height
# later (up to 295 full blocks a height at 500 tx/s: issue 22, wan15). The later sends
# are compact too, except from one holder per lacking peer (`full_sender`): a peer whose
# rebuild failed forgot its copy, so the next compact copy starts a rebuild that pulls
# the txs from that copy's sender, which holds the block (liveness needs no push); the
# one full block is for a peer whose pulls keep timing out (issue 22, wan15b). The last
# send is full from every holder: the chosen one may be a Sybil that only claimed the
# proposal, or a holder with no link to the peer (rev15d).
COMPACT_SENDS: Final = 1

_Value = TypeVar("_Value")


@dataclass(frozen=True, slots=True)
class LocalConsensus:
    """What this node holds at its current height: the reactor's read-only view."""

    height: int
    round: int
    step: Step
    validators: ValidatorSet
    votes: HeightVoteSet
    proposals: Sequence[tuple[Proposal, bytes]]  # accepted proposals of `height`, with blocks
    last_commit: Commit | None  # the commit of height - 1, if any
    # Votes the engine will step next (taken off the wire, queued behind its work): they
    # are announced as held, or every peer would send them again while the engine checks
    # a block (issue 22, wan18).
    queued: Sequence[Vote] = ()


@dataclass(frozen=True, slots=True)
class SendProposal:
    proposal: Proposal
    block_bytes: bytes
    compact: bool = False  # send its COMPACT_PROPOSAL (tx ids), not the block


@dataclass(frozen=True, slots=True)
class SendVote:
    vote: Vote


Send = SendProposal | SendVote


@dataclass(slots=True)
class PeerRoundState:
    """One peer's consensus position, as its ROUND_STATE frames and its messages show it."""

    height: int = 0  # 0: not announced yet
    round: int = 0
    step: Step = Step.PROPOSE
    proposal: bytes = b""  # hash of the proposal it holds for `round`
    has: dict[tuple[int, int], int] = field(default_factory=dict)  # (round, type) -> bits
    known: dict[bytes, None] = field(default_factory=dict)  # signatures it sent us
    sent: dict[bytes, int] = field(default_factory=dict)  # signature -> when we sent it
    # Of `sent`, those only held back after a relay went to other peers (not sent to it).
    held: dict[bytes, None] = field(default_factory=dict)
    proposal_sends: dict[bytes, int] = field(default_factory=dict)  # signature -> times
    announcements: int = 0  # ROUND_STATEs adopted
    seen: int = 0  # `announcements` when `plan` last looked
    heard_ms: int = 0  # when `plan` first saw the latest announcement

    def apply(self, state: RoundState) -> None:
        """Adopt an announcement; a new height forgets everything of the old one."""
        if self.height and state.height != self.height:
            self.known.clear()
            self.sent.clear()
            self.held.clear()
            self.proposal_sends.clear()
        self.announcements += 1
        self.height, self.round = state.height, state.round
        self.step, self.proposal = Step(state.step), state.proposal
        self.has = {(entry.round, entry.vote_type): entry.bits for entry in state.votes}

    def mark_known(self, signature: bytes) -> None:
        """The peer sent us this message: it holds it."""
        _bounded_put(self.known, signature, None)

    def mark_sent(self, signature: bytes, now_ms: int) -> None:
        _bounded_put(self.sent, signature, now_ms)
        self.held.pop(signature, None)

    def mark_held(self, signature: bytes, now_ms: int) -> None:
        """A relay of this message went to other peers: wait before sending it here."""
        _bounded_put(self.sent, signature, now_ms)
        _bounded_put(self.held, signature, None)

    def lacks(
        self, signature: bytes, now_ms: int, resend_after_ms: int, fresh_ms: int | None = None
    ) -> bool:
        """Not known to hold it, and not sent to it recently (with `fresh_ms`: nor, if
        we sent it, is the announcement its bits come from older than `fresh_ms` before the
        resend time; bits that predate a copy only held back are true: none was sent)."""
        if signature in self.known:
            return False
        sent = self.sent.get(signature)
        if sent is None:
            return True
        due = sent + resend_after_ms
        return now_ms >= due and (
            fresh_ms is None or signature in self.held or self.heard_ms >= due - fresh_ms
        )


def _bounded_put(marks: dict[bytes, _Value], key: bytes, value: _Value) -> None:
    marks.pop(key, None)
    marks[key] = value
    if len(marks) > MAX_MARKS_PER_PEER:
        del marks[next(iter(marks))]


class ConsensusGossip:
    """The per-peer states of one node and the decision of what each peer gets next.

    `on_round_state` and `on_received` learn; `plan` decides (and records what it chose
    as sent); `announcement` is this node's own ROUND_STATE.
    """

    __slots__ = (
        "_index",
        "_peers",
        "budget",
        "local_height",
        "local_set_size",
        "resend_after_ms",
        "self_id",
    )

    def __init__(self, resend_after_ms: int, budget: int = 256, self_id: str = "") -> None:
        self.resend_after_ms = resend_after_ms
        self.self_id = self_id  # our peer id, to rank ourselves among a proposal's holders
        self.budget = budget  # messages per peer per `plan`; the rest wait for the next
        self._peers: dict[str, PeerRoundState] = {}
        self.local_height = 0  # kept current by `plan`/`announcement` to judge bit sets
        self.local_set_size = 0
        self._index = _IndexCache()

    def peer(self, peer_id: str) -> PeerRoundState:
        state = self._peers.get(peer_id)
        if state is None:
            state = self._peers[peer_id] = PeerRoundState()
        return state

    def forget(self, peer_id: str) -> None:
        """The peer disconnected (or restarted): its state starts over."""
        self._peers.pop(peer_id, None)

    def holders(self, height: int, round_: int, block_hash: bytes) -> list[str]:
        """The peers whose last announcement shows they hold this proposal."""
        return [
            peer_id
            for peer_id, state in self._peers.items()
            if (state.height, state.round, state.proposal) == (height, round_, block_hash)
        ]

    def on_round_state(self, peer_id: str, state: RoundState) -> str | None:
        """Adopt a peer's announcement; return why it is junk (and ignore it), or None.

        Within one connection an honest node never goes back in height, nor in round
        at one height, and never claims a vote of a validator our set of that height
        does not have.
        """
        current = self.peer(peer_id)
        if state.height < current.height or (
            state.height == current.height and state.round < current.round
        ):
            return "round state went backwards"
        if state.height == self.local_height and self.local_set_size:
            limit = 1 << self.local_set_size
            if any(entry.bits >= limit for entry in state.votes):
                return "round state names validators beyond the set"
        current.apply(state)
        return None

    def on_received(self, peer_id: str, message: Proposal | Vote, index: int | None) -> None:
        """The peer sent us `message` (valid): it holds it. `index` is a vote's validator."""
        current = self.peer(peer_id)
        current.mark_known(message.signature)
        if isinstance(message, Vote) and index is not None and message.height == current.height:
            key = (message.round, int(message.type))
            current.has[key] = current.has.get(key, 0) | 1 << index
        elif isinstance(message, Proposal) and (message.height, message.round) == (
            current.height,
            current.round,
        ):
            current.proposal = message.block_hash

    def on_sent_to_all(
        self, peer_ids: Sequence[str], signature: bytes, now_ms: int, held: bool = False
    ) -> None:
        """We flooded a message to these peers (`held`: relayed to a fan-out of them, the
        rest held back): do not send it again before `resend_after`.

        Only peers with a state are marked: one that has not spoken yet gets the message
        from `plan` once it announces (at worst a duplicate), and a peer that just left
        is not brought back.
        """
        for peer_id in peer_ids:
            state = self._peers.get(peer_id)
            if state is not None:
                if held:
                    state.mark_held(signature, now_ms)
                else:
                    state.mark_sent(signature, now_ms)

    def announcement(self, local: LocalConsensus) -> RoundState:
        """This node's ROUND_STATE: its round's votes, and its proposals' POL prevotes."""
        self._adopt(local)
        index = self._index.of(local.validators)
        wanted: dict[tuple[int, int], None] = {
            (local.round, int(VoteType.PREVOTE)): None,
            (local.round, int(VoteType.PRECOMMIT)): None,
        }
        held = b""
        for proposal, _ in local.proposals:
            if proposal.round == local.round:
                held = held or proposal.block_hash
                if proposal.pol_round >= 0:
                    wanted[(proposal.pol_round, int(VoteType.PREVOTE))] = None
        queued: dict[tuple[int, int], int] = {}
        for vote in local.queued:
            position = index.get(vote.validator)
            if vote.height == local.height and position is not None:
                key = (vote.round, int(vote.type))
                queued[key] = queued.get(key, 0) | 1 << position
        entries = []
        for round_, vote_type in sorted(wanted)[:MAX_VOTE_SETS]:
            votes = _vote_set(local.votes, round_, vote_type)
            bits = queued.get((round_, vote_type), 0)
            for validator in votes.by_validator:
                bits |= 1 << index[validator]
            entries.append(VoteBits(round_, vote_type, bits))
        return RoundState(local.height, local.round, int(local.step), held, tuple(entries))

    def plan(self, peer_id: str, local: LocalConsensus, now_ms: int) -> list[Send]:
        """What to send `peer_id` now, in order; each is recorded as sent at `now_ms`."""
        self._adopt(local)
        peer = self._peers.get(peer_id)
        if peer is None or peer.height == 0:
            return []  # it has not told us where it is yet
        if peer.seen != peer.announcements:
            peer.seen, peer.heard_ms = peer.announcements, now_ms
        out: list[Send] = []
        for send in self._candidates(peer, local):
            if len(out) >= self.budget:
                break
            if isinstance(send, SendProposal):
                signature = send.proposal.signature
                sends = peer.proposal_sends.get(signature, 0)
                if sends >= MAX_PROPOSAL_SENDS:
                    continue
            else:
                signature = send.vote.signature
            fresh = None if isinstance(send, SendProposal) else FRESH_BITS_MS
            if peer.lacks(signature, now_ms, self.resend_after_ms, fresh):
                peer.mark_sent(signature, now_ms)
                if isinstance(send, SendProposal):
                    peer.proposal_sends[signature] = sends + 1
                    # The last send is full from every holder: the draw's winner may be
                    # a Sybil that claimed the proposal, or not linked to the peer
                    # (rev15d), and a block lacking more than a request's txs is never
                    # pulled; so a silent winner costs one resend, not the block.
                    # A peer holding another block of the round (an equivocation) dropped
                    # ours, and a compact copy of a dropped proposal stays in its seen-cache:
                    # its first send is full from the chosen holder, else the block votes
                    # point at came a send later and cost the round (p2p25 3).
                    first_compact = sends < COMPACT_SENDS and not peer.proposal
                    last = sends + 1 >= MAX_PROPOSAL_SENDS
                    compact = first_compact or (not last and not self._full_sender(peer_id, send))
                    out.append(SendProposal(send.proposal, send.block_bytes, compact))
                else:
                    out.append(send)
        return out

    def _full_sender(self, peer_id: str, send: SendProposal) -> bool:
        """Whether we are the holder that sends `peer_id` the full block: of us and the
        peers whose announcements show the proposal, the one `full_sender` picks."""
        proposal = send.proposal
        holders = self.holders(proposal.height, proposal.round, proposal.block_hash)
        return full_sender(peer_id, [self.self_id, *holders]) == self.self_id

    def _adopt(self, local: LocalConsensus) -> None:
        self.local_height = local.height
        self.local_set_size = len(local.validators.validators)

    def _candidates(self, peer: PeerRoundState, local: LocalConsensus) -> Iterator[Send]:
        """Everything the peer might lack, most urgent first, before the `lacks` filter."""
        if peer.height == local.height - 1 and local.last_commit is not None:
            commit = local.last_commit
            if commit.height == peer.height:
                for validator, signature in commit.signatures:
                    yield SendVote(
                        Vote(
                            VoteType.PRECOMMIT,
                            commit.height,
                            commit.round,
                            commit.block_hash,
                            validator,
                            signature,
                        )
                    )
            return
        if peer.height != local.height:
            return  # further behind: block sync; ahead: it has nothing to learn from us
        index = self._index.of(local.validators)
        pol_rounds: dict[int, None] = {}
        for proposal, block_bytes in local.proposals:
            if proposal.round != peer.round:
                continue
            if proposal.block_hash != peer.proposal:
                yield SendProposal(proposal, block_bytes)
            if proposal.pol_round >= 0:
                pol_rounds[proposal.pol_round] = None
        for pol_round in pol_rounds:
            yield from _votes_lacked(peer, local.votes.prevotes(pol_round), index)
        for round_ in range(peer.round, peer.round + ROUNDS_AHEAD + 1):
            if round_ == peer.round or local.votes.has_round(round_):
                yield from _votes_lacked(peer, local.votes.prevotes(round_), index)
                yield from _votes_lacked(peer, local.votes.precommits(round_), index)


def full_sender(lacking: str, holders: Sequence[str]) -> str:
    """The one of `holders` that pushes the full block to peer `lacking`: the same choice
    on every holder that knows the same holders (in a full mesh, all of them), spread over
    holders by peer (a hash of both ids, not the lowest id, which would send every block)."""
    lacking_id = lacking.encode()
    return min(holders, key=lambda holder: sha256(lacking_id + holder.encode()))


def committed_announcement(
    height: int,
    proposals: Sequence[Proposal] = (),
    votes: Sequence[Vote] = (),
    next_validators: ValidatorSet | None = None,
) -> RoundState:
    """The ROUND_STATE of a node that committed `height` and has not started the next one
    (it waits out the block interval, Tendermint's timeout_commit, or imports synced
    blocks): at `height + 1`, round 0, holding what its engine buffered of that height.

    Announcing its last height instead (the position it stopped announcing at) made every
    peer that had moved on send it the precommits of that height's commit it seemed to
    lack, up to 30 votes from each peer a height on the WAN testnet, all for a height it
    had decided (issue 22, wan23v). CometBFT's node likewise enters the next height at
    once and waits there.

    `proposals` and `votes` are the engine's buffer (`Engine.buffered`): a round-0
    proposal there is announced as held, or every peer holding it would send the full
    block (up to 4 MiB) again, and again after each resend time, for the whole wait
    (review rev13b). The round-0 vote bits need the next height's validator set (the
    peers' index); unknown (an epoch's last block), no bits are announced."""
    following = height + 1
    held = next((p.block_hash for p in proposals if (p.height, p.round) == (following, 0)), b"")
    entries: tuple[VoteBits, ...] = ()
    if next_validators is not None:
        index = _index_of(next_validators)
        bits = {int(VoteType.PREVOTE): 0, int(VoteType.PRECOMMIT): 0}
        for vote in votes:
            position = index.get(vote.validator)
            if (vote.height, vote.round) == (following, 0) and position is not None:
                bits[int(vote.type)] |= 1 << position
        entries = tuple(VoteBits(0, vote_type, b) for vote_type, b in sorted(bits.items()))
    return RoundState(following, 0, int(Step.PROPOSE), held, entries)


def announce_due(
    last: RoundState | None,
    state: RoundState,
    since_s: float,
    every_s: float,
    votes_every_s: float,
) -> bool:
    """Whether a node sends its ROUND_STATE `state` now, `since_s` after it sent `last`.

    At once when its height, round or proposal moved: what a peer sends it next depends
    on them. When only its step or the votes it holds changed, not before
    `votes_every_s`: no peer decides anything on the step, and peers read the bits only
    once their resend time has passed. Every `every_s` in any case: a heartbeat that
    repairs a lost announcement."""
    if last is None or since_s >= every_s:
        return True
    if (last.height, last.round, last.proposal) != (state.height, state.round, state.proposal):
        return True
    return (last.step, last.votes) != (state.step, state.votes) and since_s >= votes_every_s


def _votes_lacked(
    peer: PeerRoundState, votes: VoteSet, index: dict[bytes, int]
) -> Iterator[SendVote]:
    """The votes of one set the peer's bits do not show, in validator order.

    A validator with two votes in the set equivocated: the peer's bit may stand for the
    other one, so its votes are offered by signature alone. Planned for every peer every
    tick, so only the votes the peer lacks (usually none) are sorted.
    """
    if not votes.tallies:
        return
    counts: dict[bytes, int] = {}
    for tally in votes.tallies.values():
        for validator in tally:
            counts[validator] = counts.get(validator, 0) + 1
    lacking: list[tuple[int, bytes, Vote]] = []
    bits = -1  # the peer's bits of this set, read at its first vote (all share a set key)
    for tally in votes.tallies.values():
        for vote in tally.values():
            position = index.get(vote.validator)
            if position is None:
                continue
            if bits < 0:
                bits = peer.has.get((vote.round, int(vote.type)), 0)
            if counts[vote.validator] == 1 and bits >> position & 1:
                continue
            lacking.append((position, vote.block_hash, vote))
    lacking.sort(key=lambda entry: (entry[0], entry[1]))
    for _, _, vote in lacking:
        yield SendVote(vote)


def _vote_set(votes: HeightVoteSet, round_: int, vote_type: int) -> VoteSet:
    return votes.prevotes(round_) if vote_type == VoteType.PREVOTE else votes.precommits(round_)


def _index_of(validators: ValidatorSet) -> dict[bytes, int]:
    return {validator.pubkey: i for i, validator in enumerate(validators.validators)}


class _IndexCache:
    """The validator index of the last (immutable) validator set asked for: `plan` runs
    for every peer every tick with the same set, which changes at most once a height."""

    __slots__ = ("_index", "_validators")

    def __init__(self) -> None:
        self._validators: ValidatorSet | None = None
        self._index: dict[bytes, int] = {}

    def of(self, validators: ValidatorSet) -> dict[bytes, int]:
        if validators is not self._validators:
            self._validators, self._index = validators, _index_of(validators)
        return self._index
