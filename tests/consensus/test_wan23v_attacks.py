"""Review rev13b of wan23v (consensus frames per height): attacks that still work.

Each test here FAILS on the branch under review; its name is the attack, its failure
message says what went wrong. Defences that held are in test_wan23v_attacks_hold.py.

The commit wait and the WAL. A node that decided height h waits out the block interval
before h + 1 starts; the next height's proposal and votes that arrive meanwhile are
buffered by the engine and replayed inside `NewHeight` (consensus/engine.py
`on_new_height`). The WAL logs only inputs of its own height (`ConsensusWal.record`):
during the wait its height is h, and at h + 1 the replay happens inside the engine, not
through the driver's `_feed`, so nothing buffered is ever logged. wan23v widens this: the
commit-wait announcement (`committed_announcement`: h + 1, round 0, holding nothing)
makes every peer's consensus gossip push the whole of h + 1 (proposal, every vote) into
the wait, and the driver now marks the buffered proposal as held, so no peer sends it
again after the height starts (the duplicate that main's lacking ROUND_STATE drew was
dropped by `Driver.holds` anyway). A validator that locks on such a block and restarts
has the lock (signer record) but neither the block nor the polka: the WAL's own reason to
exist (fluxchain/node/wal.py docstring) is lost for exactly the messages of the wait.
"""

from __future__ import annotations

from pathlib import Path

from consensus.events import ProposalReceived, VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import Vote, VoteType
from fluxchain.node.wal import height_inputs
from tests.consensus.helpers import CHAIN_ID, ValidatorProcess, keys, validator_set

SIGNERS = keys(4, b"rev13b")
VALIDATORS = validator_set(SIGNERS)
DECIDED = 1  # the height the validator just committed; it waits out the block interval
NEXT = DECIDED + 1
BLOCK = b"the block of the next height"
BLOCK_HASH = sha256(BLOCK)
PROPOSER = next(k for k in SIGNERS if k.public_key == proposer(VALIDATORS, NEXT, 0))
# The validator under test, and two others whose prevotes make the polka with its own.
A, *OTHERS = [k for k in SIGNERS if k is not PROPOSER]


def prevote(key: SigningKey) -> VoteReceived:
    return VoteReceived(Vote.create(key, CHAIN_ID, VoteType.PREVOTE, NEXT, 0, BLOCK_HASH))


def lock_on_a_block_taken_during_the_commit_wait(tmp_path: Path) -> ValidatorProcess:
    """A at height DECIDED takes NEXT's proposal and two prevotes during its commit wait
    (what peers' consensus gossip sends a node announcing `committed_announcement`), then
    starts NEXT as `Driver._new_height` does and locks on the block."""
    a = ValidatorProcess(A, tmp_path, VALIDATORS, height=DECIDED)
    signed = Proposal.create(PROPOSER, CHAIN_ID, NEXT, 0, -1, BLOCK_HASH)
    a.feed(ProposalReceived(signed, BLOCK))  # buffered by the engine (next height)
    for key in OTHERS:
        a.feed(prevote(key))  # buffered too
    a.height = NEXT
    for item in height_inputs(NEXT, VALIDATORS, VALIDATORS, a.guard, a.wal):
        a.feed(item)
    assert (a.engine.locked_round, a.engine.locked_value) == (0, BLOCK_HASH), (
        "setup: A should prevote and precommit the block it took during the wait"
    )
    return a


def test_a_proposal_taken_during_the_commit_wait_survives_a_restart(tmp_path: Path) -> None:
    a = lock_on_a_block_taken_during_the_commit_wait(tmp_path)
    a.crash()
    a.start()  # the node's restart path: signer record, then the WAL of NEXT
    assert (a.engine.locked_round, a.engine.locked_value) == (0, BLOCK_HASH)
    held = a.engine.proposal(0, BLOCK_HASH)
    assert held is not None, (
        "after a restart A is locked on the block it precommitted, but its WAL never "
        "logged the proposal it took during the commit wait (inputs of the next height are "
        "buffered and replayed inside NewHeight, never recorded): the block is gone, A "
        "cannot re-propose its lock, and if the locked validators all restart the height "
        f"can stall (WAL records of {NEXT}: {len(a.wal.replay(NEXT))}, none a proposal)"
    )


def test_the_polka_taken_during_the_commit_wait_survives_a_restart(tmp_path: Path) -> None:
    a = lock_on_a_block_taken_during_the_commit_wait(tmp_path)
    a.crash()
    a.start()
    prevoters = set(a.engine.votes.prevotes(0).by_validator)
    missing = {k.public_key for k in OTHERS} - prevoters
    assert not missing, (
        f"after a restart A holds {len(prevoters)} of the 3 prevotes that locked it: the "
        f"{len(missing)} taken during the commit wait were buffered and never logged, so "
        "A lost the proof of lock it alone may hold (fluxchain/node/wal.py: the reason the "
        "WAL exists)"
    )
