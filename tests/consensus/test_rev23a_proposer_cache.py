"""Review rev23a: the engine's proposer cache grows with the rounds a validator names.

`Engine.on_proposal` asks `proposer_of(p.round)`, which caches each round it is asked
(`_proposers`, emptied only at `NewHeight`), before it refuses a round far beyond its own
(`p.round > self.round + 1` with no vote of it). Since red23a 2 the host lets through
exactly the proposals signed by their round's proposer, and one validator is the proposer
of every n-th round without end: its proposals of rounds r, r + n, r + 2n, ... (one block,
re-proposed on pol_round 0; each refused, unpunished, to come again) each add an entry
that stays for the whole height. `admits_proposal` avoids the cache for that very reason
("its cache must not grow with the rounds anyone names"); `on_proposal` does not.
"""

from __future__ import annotations

from consensus.engine import Engine
from consensus.events import NewHeight, ProposalReceived, Refused
from consensus.messages import Proposal
from consensus.proposer import proposer
from tests.consensus.helpers import CHAIN_ID, block_hash, keys, validator_set

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS)
FAR = 500


def test_far_round_proposals_of_their_proposer_do_not_grow_the_proposer_cache() -> None:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(1, VALIDATORS, None, VALIDATORS))
    byzantine = SIGNERS[1]
    rounds = [
        r
        for r in range(1_000, 1_000 + 20 * FAR)
        if proposer(VALIDATORS, 1, r) == byzantine.public_key
    ][:FAR]
    assert len(rounds) == FAR
    block = block_hash("rev23a far round block")
    refused = 0
    for round_ in rounds:
        p = Proposal.create(byzantine, CHAIN_ID, 1, round_, 0, block)
        out = engine.step(ProposalReceived(p, b"block bytes"))
        refused += sum(isinstance(o, Refused) for o in out)
    cached = len(engine._proposers)
    print(f"far={FAR} refused={refused} engine_round={engine.round} cached={cached}")
    assert refused == FAR  # none kept: too far ahead, no vote of those rounds
    assert cached <= 16, f"{cached} proposer cache entries for {FAR} refused far-round proposals"
