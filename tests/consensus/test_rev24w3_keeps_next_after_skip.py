"""rev24w3: `Engine.keeps_next` refuses a next-height proposal that the next height keeps.

Attack (liveness, no adversary needed): a node lags in its commit wait while the next
height's validators have already moved on to round 3 (their votes of round 3, from more
than a third of the power, reach its buffer). The honest proposer of round 4 sends its
proposal. `keeps_next` answers False (round > 1 and no buffered vote names round 4), so
the node does not relay it; yet when the height starts, the buffered round-3 votes make
the engine skip to round 3 (`try_skip_to`), and the round-4 proposal, the next round's,
is kept (`Replayed`). What happens now: the node keeps the honest proposal and never
relays it (a later copy is a held copy: not relayed either). What should happen:
`keeps_next` agrees with what the next height keeps (its docstring's promise), so an
honest proposal the node keeps is relayed.
"""

from __future__ import annotations

from consensus.engine import Engine
from consensus.events import NewHeight, ProposalReceived, Replayed, VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.votes import Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, block_hash, keys, validator_set

SIGNERS = keys(4, b"rev24w3-keeps-next-skip")
VALIDATORS = validator_set(SIGNERS)
HEIGHT = 7  # not an epoch's first block: the host knows the next set


def test_keeps_next_agrees_when_buffered_votes_skip_the_next_height_ahead() -> None:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(HEIGHT, VALIDATORS, None, VALIDATORS))
    skip_round = 3
    # Two of four equal validators (more than a third of the power) voted in round 3.
    for key in SIGNERS[:2]:
        engine.step(
            VoteReceived(Vote.create(key, CHAIN_ID, VoteType.PREVOTE, HEIGHT + 1, skip_round, b""))
        )
    round_ = skip_round + 1
    author = next(k for k in SIGNERS if k.public_key == proposer(VALIDATORS, HEIGHT + 1, round_))
    honest = Proposal.create(author, CHAIN_ID, HEIGHT + 1, round_, -1, block_hash("honest r4"))
    relayed = engine.keeps_next(honest)
    engine.step(ProposalReceived(honest, b"block " + honest.block_hash))
    outputs = engine.step(NewHeight(HEIGHT + 1, VALIDATORS, None, VALIDATORS))
    kept = [
        o.input.proposal
        for o in outputs
        if isinstance(o, Replayed) and isinstance(o.input, ProposalReceived)
    ]
    assert engine.round == skip_round, "the buffered votes skip the height to round 3"
    assert kept == [honest], "the next height keeps the honest round-4 proposal"
    assert relayed is True, (
        "keeps_next said the node would not keep (so not relay) a proposal its next height keeps"
    )
