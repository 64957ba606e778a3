"""How long a validator waits in each step: a base plus a linear increase per round.

Growing linearly means that after GST some round's timeouts exceed the real message
delay, whatever it is, so honest validators end up in the same round long enough to decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.messages import Step


@dataclass(frozen=True, slots=True)
class TimeoutParams:
    """Timeouts in milliseconds (integers): base per step and the increase per round."""

    propose_ms: int = 3_000  # a proposer must build, sign and ship a full block
    propose_delta_ms: int = 500
    prevote_ms: int = 1_000
    prevote_delta_ms: int = 500
    precommit_ms: int = 1_000
    precommit_delta_ms: int = 500

    def timeout_ms(self, step: Step, round_: int) -> int:
        """The timeout of `step` in `round_`: base + round * delta."""
        if step is Step.PROPOSE:
            return self.propose_ms + round_ * self.propose_delta_ms
        if step is Step.PREVOTE:
            return self.prevote_ms + round_ * self.prevote_delta_ms
        return self.precommit_ms + round_ * self.precommit_delta_ms
