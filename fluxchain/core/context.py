"""What the handlers of one block share: the state, the params, and the block's outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluxchain.core.events import Event, EventKind
from fluxchain.core.params import Params
from fluxchain.core.state import State


@dataclass(slots=True)
class BlockContext:
    """Mutable scratch of one block's execution; built by `execute`, passed to every handler."""

    state: State
    params: Params
    height: int
    proposer: bytes  # the proposer's node key
    reveal: bytes  # the proposer's checked VRF reveal: the chain's entropy (core/epochs.py)
    events: list[Event] = field(default_factory=list)
    fees: int = 0  # collected from this block's txs, paid to the proposer at the end
    burned: int = 0  # burnt by this block's txs (base fees, deposits, relocations)

    def emit(self, kind: EventKind, *fields: Any) -> None:
        self.events.append(Event(kind, fields))
