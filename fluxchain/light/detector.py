"""Light-client attack detection: two signed headers for one height (pure, no I/O).

After CometBFT's light client detector (light/detector.go), in our own terms. A header
the client verified from one node (the primary) is compared with the header a second
node (a witness) serves at the same height. The same hash: nothing to say. Another hash:

* the witness's header does not verify from the trusted block both descend from (too
  little of the trusted power signed it, another chain, a commit of another block...):
  the witness is faulty or lying, and is not listened to for this header;
* it verifies: two different blocks at one height each carry valid signatures of more
  than 1/3 of the power the client trusted (and more than 2/3 of the set each names).
  Honest validators sign one block per height, so validators the client trusted signed
  both: a light-client attack (a fork shown to this client), or a fork of the chain. Either
  way no answer from this chain can be believed: the client records the conflict, names
  both nodes and both headers, and refuses every read until the user anchors again.

The chain has no evidence tx for such an attack yet, so the signers are not punished
(docs/light-client.md §6); detecting it keeps the wallet from acting on the fork.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.verifier import LightBlock, TrustedBlock, TrustOptions, verify


@dataclass(frozen=True, slots=True)
class ServedHeader:
    """One of two conflicting headers: the node that served it, its hash and time."""

    node: str
    hash: bytes
    time_ms: int


@dataclass(frozen=True, slots=True)
class Attack:
    """Two verified headers at one height: what the client saw, kept in its store."""

    height: int
    trusted: ServedHeader  # the header the client had verified (from the primary)
    conflicting: ServedHeader  # the witness's header, signed by the trusted power too
    detected_ms: int

    def describe(self) -> str:
        """One sentence naming both nodes and both headers."""
        return (
            f"two different headers at height {self.height} are both signed by the validators"
            f" this wallet trusts: {self.trusted.hash.hex()} from {self.trusted.node} and"
            f" {self.conflicting.hash.hex()} from {self.conflicting.node}; one of them is a"
            " fork: this wallet trusts neither until you anchor again with `flux-wallet trust`"
        )

    def error(self) -> LightError:
        return LightError(LightReason.LIGHT_CLIENT_ATTACK, self.describe())

    def to_json(self) -> dict[str, Any]:
        def one(served: ServedHeader) -> dict[str, Any]:
            return {"node": served.node, "hash": served.hash.hex(), "time_ms": served.time_ms}

        return {
            "reason": str(LightReason.LIGHT_CLIENT_ATTACK),
            "height": self.height,
            "trusted": one(self.trusted),
            "conflicting": one(self.conflicting),
            "detected_ms": self.detected_ms,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Attack:
        def one(item: dict[str, Any]) -> ServedHeader:
            return ServedHeader(
                str(item["node"]), bytes.fromhex(item["hash"]), int(item["time_ms"])
            )

        return cls(
            int(body["height"]),
            one(body["trusted"]),
            one(body["conflicting"]),
            int(body["detected_ms"]),
        )


def is_signed_conflict(
    common: TrustedBlock, witnessed: LightBlock, options: TrustOptions, now_ms: int
) -> bool:
    """Whether `witnessed` (a header other than the one the client trusts at its height)
    verifies from `common`, the trusted block below it: signed by more than 1/3 of the
    power `common` trusts and by more than 2/3 of its own set (or, adjacent, by the set
    `common` committed to). False: the witness is faulty, not evidence of an attack."""
    try:
        verify(common, witnessed, options, now_ms)
    except LightError:
        return False
    return True
