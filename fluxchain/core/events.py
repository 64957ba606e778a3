"""Events: what a block did, committed in the header's events root.

Node daemons learn their duties from these (an `ASSIGNED` event names the node that must
start an instance), so their fields are part of the protocol. An event is a kind and a
tuple of positional fields; `EVENT_FIELDS` names them for JSON renderings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Final

from fluxchain.core.encoding import Enum, ListOf, Opaque, Record, record
from fluxchain.core.errors import Reason

MAX_EVENT_FIELDS: Final = 16  # the most any kind has is 4; room to grow without a bump


class EventKind(IntEnum):
    NODE_REGISTERED = 1
    NODE_CONFIRMED = 2
    NODE_DOWN = 3
    NODE_EXPIRED = 4
    NODE_UNBONDING = 5
    NODE_RELEASED = 6
    NODE_UPDATED = 7
    PAID = 8
    SLASHED = 9
    VALIDATORS_CHANGED = 10
    EPOCH_STARTED = 11
    REPORT_CONTRADICTED = 12  # a judged report; `forfeit` 1 if it cost its sender a payout
    CHECKER_SILENT = 13  # a checker that sent no attestation in an epoch it had targets
    PAYOUT_FORFEITED = 14  # a penalised node passed over at its turn in the payment queue
    APP_REGISTERED = 20
    APP_UPDATED = 21
    APP_EXTENDED = 22
    APP_CANCELLED = 23
    APP_EXPIRED = 24
    ASSIGNED = 25
    UNASSIGNED = 26
    APP_UNDERPLACED = 27
    APP_PLACED = 28
    APP_SECRETS_SET = 35  # the owner set (or removed) an app's sealed secrets
    APP_SECRETS_SEALED = 36  # a host sealed an app's key to a new host
    APP_SECRETS_REJECTED = 37  # a host rejected the key sealed to it (it did not open)
    APP_SECRETS_DROPPED = 38  # a set sent before the register did not fit the spec


class PayReason(IntEnum):
    PROPOSER = 1  # proposer share of the subsidy plus the block's fees
    TIER = 2  # head of a tier's payment queue
    HOSTING = 3  # an app escrow paying a node that hosts it
    REFUND = 4  # unspent escrow back to an app owner
    COLLATERAL = 5  # collateral released after unbonding


EVENT_FIELDS: Final[dict[EventKind, tuple[str, ...]]] = {
    EventKind.NODE_REGISTERED: ("node_id", "owner", "tier"),
    EventKind.NODE_CONFIRMED: ("node_id",),
    EventKind.NODE_DOWN: ("node_id", "down_reports", "checkers"),
    EventKind.NODE_EXPIRED: ("node_id", "last_confirm_height"),
    EventKind.NODE_UNBONDING: ("node_id", "unbond_height"),
    EventKind.NODE_RELEASED: ("node_id", "collateral"),
    EventKind.NODE_UPDATED: ("node_id",),
    EventKind.PAID: ("address", "amount", "reason", "node_id"),
    EventKind.SLASHED: ("node_id", "burned", "jailed_until"),
    EventKind.VALIDATORS_CHANGED: ("count", "total_power"),
    EventKind.EPOCH_STARTED: ("epoch", "seed"),
    EventKind.REPORT_CONTRADICTED: ("node_id", "target", "said_up", "forfeit"),
    EventKind.CHECKER_SILENT: ("node_id", "epoch"),
    EventKind.PAYOUT_FORFEITED: ("node_id",),
    EventKind.APP_REGISTERED: ("name", "owner", "escrow"),
    EventKind.APP_UPDATED: ("name", "escrow"),
    EventKind.APP_EXTENDED: ("name", "expire_height"),
    EventKind.APP_CANCELLED: ("name", "refund"),
    EventKind.APP_EXPIRED: ("name",),
    EventKind.ASSIGNED: ("name", "node_id", "instance"),
    EventKind.UNASSIGNED: ("name", "node_id", "instance", "reason"),
    EventKind.APP_UNDERPLACED: ("name", "placed", "wanted", "reason"),
    EventKind.APP_PLACED: ("name", "placed"),
    EventKind.APP_SECRETS_SET: ("name", "secrets", "seals"),
    EventKind.APP_SECRETS_SEALED: ("name", "node_id", "sealer"),
    EventKind.APP_SECRETS_REJECTED: ("name", "node_id", "sealer"),
    EventKind.APP_SECRETS_DROPPED: ("name", "owner", "reason"),
}


@record("event")
@dataclass(frozen=True, slots=True)
class Event(Record):
    kind: Annotated[EventKind, Enum(EventKind, unknown=Reason.UNKNOWN_KIND)]
    # Positional, named per kind by EVENT_FIELDS: the rules that emit them give them shape.
    fields: Annotated[tuple[Any, ...], ListOf(Opaque(), max_len=MAX_EVENT_FIELDS)]

    def to_json(self) -> dict[str, Any]:
        """Named fields with bytes as hex, for the API and logs."""
        names = EVENT_FIELDS[self.kind]
        out: dict[str, Any] = {"kind": self.kind.name.lower()}
        for name, value in zip(names, self.fields, strict=False):
            out[name] = value.hex() if isinstance(value, bytes) else value
        return out
