"""The equivocations this node's consensus engine saw, kept until the chain records them.

The mempool holds one pending evidence tx per offender and refuses another report of it
`duty_pending`. An offender can park a report of its own there, signed by an account it
controls, and take it out again by spending that nonce in a block or outbidding it with
a paid tx (red23c): a report refused then and forgotten would leave it unpunished. So the
node keeps each offence its engine reported and offers its own report again after every
committed block (and at once when a paid tx pushes out the offender's pending evidence:
`NodeService`), until the chain records the offence or a slashing of the key covers it,
or the evidence is too old (`evidence_max_age`): the refusals in `SETTLED`.

Bounded: one offence per offender, the earliest (its slashing tombstones the key, which
covers every later vote of it), and at most `OFFENDERS_KEPT` offenders. Only the engine
adds to it, and it reports only conflicting votes it verified, each signed by a
validator of the height being decided: nobody else can make an entry, and an offender
can make one of its own only by equivocating, which gets it slashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import Reason
from fluxchain.core.tx import Evidence, Tx

# More than a validator set holds (`max_validators`, 100 on mainnet-shaped chains); the
# sets of `evidence_max_age` blocks would all have to equivocate at once to fill it.
OFFENDERS_KEPT: Final = 256
# Refusals after which no report of the offence can ever apply: recorded already, covered
# by the key's slashing, too old, or the key is no validator's of that height any more.
SETTLED: Final = frozenset(
    {
        Reason.DUPLICATE_EVIDENCE,
        Reason.KEY_TOMBSTONED,
        Reason.EVIDENCE_TOO_OLD,
        Reason.UNKNOWN_VALIDATOR,
    }
)


@dataclass(slots=True)
class OwnReport:
    """An offence this node saw, the key it reports with, and its last report."""

    key: SigningKey
    evidence: Evidence
    tx: Tx | None = None


class OwnReports:
    """The offences this node reports until they are settled, by offender (the key)."""

    def __init__(self, max_offenders: int = OFFENDERS_KEPT) -> None:
        self._max = max_offenders
        self._by_offender: dict[bytes, OwnReport] = {}

    def __len__(self) -> int:
        return len(self._by_offender)

    def keep(self, key: SigningKey, evidence: Evidence, tx: Tx) -> bool:
        """Keep the offence of `evidence`, reported in `tx`; False if it is not kept: an
        offence of the same offender at the same or an earlier height is, or the book is
        full (it was still reported once)."""
        offender = evidence.vote_a.validator
        kept = self._by_offender.get(offender)
        if kept is None and len(self._by_offender) >= self._max:
            return False
        if kept is not None and kept.evidence.vote_a.height <= evidence.vote_a.height:
            return False
        self._by_offender[offender] = OwnReport(key, evidence, tx)
        return True

    def get(self, offender: bytes) -> OwnReport | None:
        return self._by_offender.get(offender)

    def offenders(self) -> list[bytes]:
        return list(self._by_offender)

    def settle(self, evidence: Evidence) -> None:
        """Forget the offence of `evidence`: no report of it can apply any more."""
        offender = evidence.vote_a.validator
        kept = self._by_offender.get(offender)
        if kept is not None and kept.evidence == evidence:
            del self._by_offender[offender]
