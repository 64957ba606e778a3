"""Review rev15d: wan15b's `full_sender` (one holder pushes a lacking peer the full block).

The choice is made by each holder from the holders *it* sees, so it only works when the
chosen holder is honest, is connected to the lacking peer and sees itself chosen. These
tests drive the pure reactor (p2p/consensus_gossip.py) as the node does.
"""

from __future__ import annotations

from consensus.messages import Proposal
from p2p.consensus_gossip import (
    MAX_PROPOSAL_SENDS,
    ConsensusGossip,
    SendProposal,
    full_sender,
)
from p2p.messages import RoundState
from tests.p2p.test_consensus_gossip import (
    BLOCK,
    CHAIN,
    KEYS,
    PEER,
    RESEND_MS,
    W,
    announce,
    local_with,
)

HONEST = [f"holder{i:02d}" for i in range(18)]


def _full_blocks_to_peer(gossip: ConsensusGossip) -> int:
    """Full PROPOSAL frames `gossip` sends PEER (who lacks the proposal) over a height."""
    proposal = Proposal.create(KEYS[1], CHAIN, 1, 0, -1, W)
    local = local_with([], proposals=[(proposal, BLOCK)])
    announce(gossip, 1, 0)  # PEER: height 1, round 0, no proposal held
    full = 0
    for tick in range(MAX_PROPOSAL_SENDS + 1):
        for send in gossip.plan(PEER, local, tick * RESEND_MS):
            if isinstance(send, SendProposal) and not send.compact:
                full += 1
    return full


def _winning_name(prefix: str, rivals: list[str]) -> str:
    """A peer id that wins PEER's draw against `rivals` (a Sybil grinds its node key so;
    ~19 tries against 18 holders)."""
    for i in range(10_000):
        name = f"{prefix}{i}"
        if full_sender(PEER, [*rivals, name]) == name:
            return name
    raise AssertionError("no winning name found")


def test_rev15d_a_sybil_claiming_to_hold_the_proposal_stops_every_full_block() -> None:
    """Attack: a stakeless peer connects to the validators and announces, in its
    ROUND_STATE, that it holds the round's proposal (it learnt the block hash from the
    compact copy; nothing checks the claim), with a node key ground so that it wins the
    `full_sender` draw for a target validator (or many Sybils win it for most). Every
    honest holder then sends the target only compact copies; the Sybil sends nothing.
    What a user sees: a validator whose pulls time out under load (the case docs/p2p.md
    says the push is for) never gets the block it lacks, misses the round's prevote;
    docs/security.md's "one of them the full PROPOSAL" does not hold. Fix direction: let
    the choice fall only on holders that proved they hold it (sent us the proposal), or
    make the last send full from every holder (or from the next-ranked holder each send),
    so a silent winner costs one resend time, not the block."""
    sybil = _winning_name("sybil", HONEST)
    full = 0
    for name in HONEST:
        gossip = ConsensusGossip(RESEND_MS, self_id=name)
        for other in [*HONEST, sybil]:
            if other != name:
                assert gossip.on_round_state(other, RoundState(1, 0, 2, W, ())) is None
        full += _full_blocks_to_peer(gossip)
    assert full >= 1, "no honest holder ever sent the lacking peer the full block"


def test_rev15d_a_chosen_holder_with_no_link_to_the_lacking_peer_stops_the_push() -> None:
    """No attacker: a node with a capped peer count (not a full mesh). Holder A is linked
    to the lacking peer and to holder B; B holds the proposal but has no link to the
    lacking peer, and B wins the draw for that peer. A sends only compact copies (B is
    chosen), B never plans for a peer it is not linked to: nobody pushes the full block.
    docs/p2p.md says a sparse mesh gives "more copies, never fewer" — it gives none.
    What a user sees: as above, a lacking validator whose pulls time out never gets the
    block. Fix direction: as above (a holder cannot know the winner's links), e.g. the
    last send full from every holder, or the draw only over holders the lacking peer
    announced it is linked to."""
    holder_a = "holderA"
    holder_b = _winning_name("holderB", [holder_a])
    gossip = ConsensusGossip(RESEND_MS, self_id=holder_a)
    assert gossip.on_round_state(holder_b, RoundState(1, 0, 2, W, ())) is None
    assert _full_blocks_to_peer(gossip) >= 1, "the only linked holder never sent the block"
