"""Which record type decodes each state table: the one map the State and store need."""

from __future__ import annotations

from typing import Final

from fluxchain.core import apps, placement, rewards, secrets
from fluxchain.core.records import (
    ACCOUNT,
    DEQUE_HEAD,
    DEQUE_ITEM,
    EVIDENCE,
    META,
    NODE,
    NODE_KEY,
    RING,
    UP_PENDING,
    UPTIME,
    VALIDATOR_HISTORY,
    VALIDATORS,
    WATCHED,
    Account,
    DequeHead,
    KeyRecord,
    Meta,
    Node,
    Ref,
    Ring,
    UpPending,
    UptimeTally,
    Watched,
)
from fluxchain.core.state import Backing, Decoder, State
from fluxchain.core.validators import ValidatorSet

CORE_TABLES: Final[dict[bytes, Decoder]] = {
    ACCOUNT: Account.from_fields,
    NODE: Node.from_fields,
    NODE_KEY: KeyRecord.from_fields,
    META: Meta.from_fields,
    VALIDATORS: ValidatorSet.from_fields,
    RING: Ring.from_fields,
    UPTIME: UptimeTally.from_fields,
    WATCHED: Watched.from_fields,
    UP_PENDING: UpPending.from_fields,
    DEQUE_HEAD: DequeHead.from_fields,
    DEQUE_ITEM: Ref.from_fields,
    EVIDENCE: Ref.from_fields,
    VALIDATOR_HISTORY: ValidatorSet.from_fields,
}


def _all_tables() -> dict[bytes, Decoder]:
    tables = dict(CORE_TABLES)
    for extra in (apps.TABLES, placement.TABLES, rewards.TABLES, secrets.TABLES):
        clash = set(tables) & set(extra)
        assert not clash, f"state table prefixes used twice: {clash}"
        tables.update(extra)
    return tables


TABLES: Final = _all_tables()


def new_state(backing: Backing | None = None) -> State:
    """A state that knows every table: empty, or reading through to `backing`."""
    return State(TABLES, backing)
