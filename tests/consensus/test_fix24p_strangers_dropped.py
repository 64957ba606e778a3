"""rev24p C: the host takes places of the strangers' share back (`StrangersDropped`) for
a source under its part once the share is full: the engine lets go of the strangers'
votes it names, and only those, each `Refused` so that it can come again."""

from __future__ import annotations

from consensus.engine import Engine
from consensus.events import NewHeight, Refused, StrangersDropped, VoteReceived
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import NIL, Vote, VoteType
from tests.consensus.helpers import CHAIN_ID, keys, validator_set

SIGNERS = keys(4)
VALIDATORS = validator_set(SIGNERS)


def test_the_host_takes_back_strangers_places_only() -> None:
    engine = Engine(CHAIN_ID, None)
    engine.step(NewHeight(1, VALIDATORS, None, None))
    assert engine.next_validators is None
    strangers = [
        Vote.create(
            SigningKey(sha256(b"fix24p stranger %d" % n)), CHAIN_ID, VoteType.PREVOTE, 2, 0, NIL
        )
        for n in range(3)
    ]
    member = Vote.create(SIGNERS[1], CHAIN_ID, VoteType.PREVOTE, 2, 0, sha256(b"block 2"))
    for vote in [*strangers, member]:
        engine.step(VoteReceived(vote))
    assert engine.buffered()[1] == [*strangers, member]

    # Stale: another height's, so nothing goes.
    assert engine.step(StrangersDropped(3, tuple(strangers))) == []
    out = engine.step(StrangersDropped(2, (strangers[0], strangers[2], member)))
    assert [o.message for o in out if isinstance(o, Refused)] == [strangers[0], strangers[2]]
    assert engine.buffered()[1] == [strangers[1], member]  # the current set's is not the host's
    # The places are free again: a dropped vote may come back.
    assert engine.admits(strangers[0])
    engine.step(VoteReceived(strangers[0]))
    assert strangers[0] in engine.buffered()[1]
