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
Present on main too (the WAL rule and the buffer predate wan23v); wan23v makes the wait
the routine path of the next height's messages.

The commit wait and evidence. The buffer also refuses the second of a validator's two
votes in one (round, type) without a report; the commit-wait announcement is the one
moment consensus gossip delivers an equivocator's other twin, and it is dropped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consensus.engine import Engine
from consensus.events import NewHeight, ProposalReceived, ReportEvidence, VoteReceived
from consensus.messages import Proposal
from consensus.proposer import proposer
from consensus.signer import FileSignerStore, SignerGuard
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import NIL, Vote, VoteType
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.node.wal import ConsensusWal, height_inputs
from p2p.consensus_gossip import (
    ConsensusGossip,
    LocalConsensus,
    SendVote,
    committed_announcement,
)
from tests.consensus.helpers import CHAIN_ID, ValidatorProcess, keys, validator_set
from tests.support.chain import VALIDATORS as CHAIN_VALIDATORS
from tests.support.chain import (
    NoGossip,
    devnet_genesis,
    first_block,
    node_hot_key,
    open_chain,
)
from tests.support.wait import wait_until_async

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
    assert len(missing) == 0, (
        f"after a restart A holds {len(prevoters)} of the 3 prevotes that locked it: the "
        f"{len(missing)} taken during the commit wait were buffered and never logged, so "
        "A lost the proof of lock it alone may hold (fluxchain/node/wal.py: the reason the "
        "WAL exists)"
    )


def test_a_split_equivocation_met_during_the_commit_wait_is_reported() -> None:
    """A split equivocator E sends its prevote of NEXT to N and the twin (nil) to P. N is
    in its commit wait: it announces NEXT holding nothing, so P's consensus gossip sends
    it every vote of NEXT, the twin included (the one relay of the twin, fan-out 1 since
    wan23v, may land on N too). The engine's buffer refuses a second vote of a validator
    in one (round, type) (`Engine._admits_next`: "nothing can use it before the height"),
    so `Node._on_vote` drops the twin unreported. Once NEXT starts, N's vote bits show E,
    P's show E, and consensus gossip judges by bit: neither sends the other its twin again.
    The evidence, the one use of that twin, is lost at the only moment gossip delivers it."""
    equivocator = OTHERS[0]
    twin_1 = Vote.create(equivocator, CHAIN_ID, VoteType.PREVOTE, NEXT, 0, BLOCK_HASH)
    twin_2 = Vote.create(equivocator, CHAIN_ID, VoteType.PREVOTE, NEXT, 0, NIL)

    waiting = Engine(CHAIN_ID, None)  # N, in the commit wait after DECIDED
    outputs = list(waiting.step(NewHeight(DECIDED, VALIDATORS, None, VALIDATORS)))
    outputs += waiting.step(VoteReceived(twin_1))  # from E: buffered
    if waiting.admits(twin_2):  # from P's gossip: Node._on_vote asks the engine first
        outputs += waiting.step(VoteReceived(twin_2))
    outputs += waiting.step(NewHeight(NEXT, VALIDATORS, None, VALIDATORS))

    peer = Engine(CHAIN_ID, None)  # P, at NEXT, holding the twin
    peer.step(NewHeight(NEXT, VALIDATORS, None, VALIDATORS))
    peer.step(VoteReceived(twin_2))
    gossip = ConsensusGossip(1_500)
    assert gossip.on_round_state("N", committed_announcement(DECIDED)) is None
    during_wait = [s.vote for s in gossip.plan("N", local(peer), 0) if isinstance(s, SendVote)]
    assert twin_2 in during_wait  # the commit-wait announcement draws the twin to N
    announced = ConsensusGossip(1_500).announcement(local(waiting))
    assert gossip.on_round_state("N", announced) is None
    resent = [s for s in gossip.plan("N", local(peer), 10_000) if isinstance(s, SendVote)]

    reports = [o for o in outputs if isinstance(o, ReportEvidence)]
    assert reports, (
        "N took both twins of E's prevote (one from E, one from P's gossip during its "
        "commit wait) and reported nothing: the buffer dropped the second, and once the "
        f"height started P's gossip sends N {len(resent)} vote(s) of E (vote bits cannot "
        "tell twins apart), so the equivocation goes unpunished"
    )


def local(engine: Engine) -> LocalConsensus:
    """What `Node._local_consensus` reads from a driver whose engine is `engine`."""
    assert engine.validators is not None
    return LocalConsensus(
        engine.height, engine.round, engine.step_, engine.validators, engine.votes, [], None
    )


def test_the_driver_logs_the_proposal_it_prevotes_after_a_commit_wait(tmp_path: Path) -> None:
    """The node's own path (`Driver`, its signer record and WAL on disk, a real chain): a
    proposal of height 1 that the engine buffered before the height started (a commit
    wait) is prevoted once height 1 starts, but the WAL of height 1 has no record of it,
    although "whatever was signed before [the last vote] is in the host's WAL"
    (`SignerGuard.last_vote`)."""
    chain = open_chain(tmp_path / "node")
    block = first_block(tmp_path / "builder", devnet_genesis())
    keys_ = [node_hot_key(i) for i in range(CHAIN_VALIDATORS)]
    chosen = proposer(chain.validators(), 1, 0)
    proposer_key = next(k for k in keys_ if k.public_key == chosen)
    own = next(k for k in keys_ if k.public_key != chosen)
    signed = Proposal.create(proposer_key, chain.params.chain_id, 1, 0, -1, block.hash())
    (tmp_path / "signer").mkdir()
    guard = SignerGuard(own, chain.params.chain_id, FileSignerStore(tmp_path / "signer"))
    wal = ConsensusWal(tmp_path / "consensus.wal")

    async def scenario() -> None:
        driver = Driver(chain, NodeService(chain), own, guard, NoGossip(), wal=wal)
        driver.engine.step(ProposalReceived(signed, block.encode()))  # the commit wait
        driver.start()
        try:
            await wait_until_async(
                lambda: (v := guard.last_vote()) is not None and v.block_hash == block.hash(),
                10,
                "our prevote for the proposal",
            )
        finally:
            await driver.stop()

    try:
        asyncio.run(scenario())
        logged = [r.proposal for r in wal.replay(1) if isinstance(r, ProposalReceived)]
        assert signed in logged, (
            "the validator signed a prevote for a proposal it took during the commit wait, "
            f"and its WAL of height 1 ({len(wal.replay(1))} records) does not hold that "
            "proposal: a crash now restarts it without the block it voted for"
        )
    finally:
        wal.close()
        chain.close()
