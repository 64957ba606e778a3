"""The equivocations this node's consensus engine saw, kept until the chain records them.

The mempool holds one pending evidence tx per offender and refuses another report of it
`duty_pending`. An offender can park a report of its own there, signed by an account it
controls, and take it out again by spending that nonce in a block or outbidding it with
a paid tx (red23c): a report refused then and forgotten would leave it unpunished. So the
node keeps each offence its engine reported and offers its own report again after every
committed block (and at once when a paid tx pushes out the offender's pending evidence:
`NodeService`), until the chain records the offence or a slashing of the key covers it,
or the evidence is too old (`evidence_max_age`): the refusals in `SETTLED`.

Kept on disk too (the node's own records, `ChainDB.put_meta`), each as the last report
signed for it: a restart must not forget an offence its offender waits out (rev23c).

Bounded: at most `PER_OFFENDER` offences per offender, its earliest, and at most
`OFFENDERS_KEPT` offenders. More than one, because a slashing tombstones the key only
for votes below the height of the block that records it: an offence at that very height
(or later, before the offender leaves the set) is still punishable (rev23c). Only the
engine adds to it, and it reports only conflicting votes it verified, each signed by a
validator of the height being decided: nobody else can make an entry, and an offender
can make one of its own only by equivocating, which gets it slashed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import DecodeError, Reason, TxError
from fluxchain.core.nodes import offence_id
from fluxchain.core.tx import Evidence, Tx, TxKind

if TYPE_CHECKING:
    from fluxchain.store.db import ChainDB

log = logging.getLogger("fluxchain.node")

# More than a validator set holds (`max_validators`, 100 on mainnet-shaped chains); the
# sets of `evidence_max_age` blocks would all have to equivocate at once to fill it.
OFFENDERS_KEPT: Final = 256
# Offences kept per offender: its slashing covers every earlier vote, so only offences at
# or after the recording block's height need their own report; an offender still in the
# set equivocates there at most once a height before its jailing takes effect.
PER_OFFENDER: Final = 4
# The node's own records: offender's key + offence id -> the last report signed for it.
OWN_REPORTS: Final = b"own-report/"
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
    """An offence this node saw, its last report, and the key that signs the next (None
    for one loaded from disk until the node's key is known: its last report still goes)."""

    key: SigningKey | None
    evidence: Evidence
    tx: Tx


class OwnReports:
    """The offences this node reports until they are settled, by offender (the key), each
    offender's in height order; on disk in `db` if given."""

    def __init__(
        self,
        max_offenders: int = OFFENDERS_KEPT,
        per_offender: int = PER_OFFENDER,
        db: ChainDB | None = None,
    ) -> None:
        self._max = max_offenders
        self._per = per_offender
        self._db = db
        self._by_offender: dict[bytes, list[OwnReport]] = {}

    def __len__(self) -> int:
        """The offences kept."""
        return sum(len(kept) for kept in self._by_offender.values())

    def load(self, decode: Callable[[bytes], Tx]) -> None:
        """The offences kept before the node last stopped; `decode` checks a stored report
        as any tx (a record that fails is dropped)."""
        if self._db is None:
            return
        for name, raw in list(self._db.meta_items(OWN_REPORTS)):
            try:
                tx = decode(raw)
                if tx.kind is not TxKind.EVIDENCE:
                    raise DecodeError(Reason.MALFORMED, "not an evidence tx")
            except (DecodeError, TxError) as exc:
                log.warning("dropped a stored evidence report: %s", exc)
                self._db.delete_meta(name)
                continue
            if not self._add(OwnReport(None, tx.payload, tx)):
                self._db.delete_meta(name)

    def keep(self, key: SigningKey, evidence: Evidence, tx: Tx) -> bool:
        """Keep the offence of `evidence`, reported in `tx`; False if it is not kept: it is
        already, its offender has `per_offender` earlier ones kept, or the book is full (it
        was still reported once)."""
        return self._add(OwnReport(key, evidence, tx))

    def _add(self, report: OwnReport) -> bool:
        offender = report.evidence.vote_a.validator
        kept = self._by_offender.get(offender)
        if kept is None:
            if len(self._by_offender) >= self._max:
                return False
            kept = self._by_offender[offender] = []
        offence = offence_id(report.evidence)
        if any(offence_id(r.evidence) == offence for r in kept):
            return False
        height = report.evidence.vote_a.height
        if len(kept) >= self._per and kept[-1].evidence.vote_a.height <= height:
            return False
        kept.append(report)
        kept.sort(key=lambda r: r.evidence.vote_a.height)
        if len(kept) > self._per:  # the latest goes: the earlier ones' slashing may cover it
            self._forget(kept.pop())
        self._save(report)
        return True

    def renew(self, report: OwnReport, tx: Tx) -> None:
        """`tx` is the offence's report now (signed again at a new nonce)."""
        report.tx = tx
        self._save(report)

    def get(self, offender: bytes) -> OwnReport | None:
        """The earliest offence of `offender` kept."""
        kept = self._by_offender.get(offender)
        return kept[0] if kept else None

    def of(self, offender: bytes) -> list[OwnReport]:
        """The offences of `offender` kept, earliest first."""
        return list(self._by_offender.get(offender, ()))

    def signing_keys(self) -> list[SigningKey]:
        """The keys the kept offences are reported with (known since the node started)."""
        return [r.key for kept in self._by_offender.values() for r in kept if r.key is not None]

    def offenders(self) -> list[bytes]:
        return list(self._by_offender)

    def settle(self, evidence: Evidence) -> None:
        """Forget the offence of `evidence`: no report of it can apply any more."""
        offender = evidence.vote_a.validator
        kept = self._by_offender.get(offender)
        if kept is None:
            return
        offence = offence_id(evidence)
        for report in kept:
            if offence_id(report.evidence) == offence:
                kept.remove(report)
                self._forget(report)
                break
        if not kept:
            del self._by_offender[offender]

    def _name(self, report: OwnReport) -> bytes:
        return OWN_REPORTS + report.evidence.vote_a.validator + offence_id(report.evidence)

    def _save(self, report: OwnReport) -> None:
        if self._db is not None:
            self._db.put_meta(self._name(report), report.tx.raw)

    def _forget(self, report: OwnReport) -> None:
        if self._db is not None:
            self._db.delete_meta(self._name(report))
