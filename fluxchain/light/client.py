"""LightClient: bring a header into trust, from the headers a `TrustStore` holds.

* A header above everything trusted is verified forward from the newest trusted block:
  directly when the rules of `verifier.verify` allow it, otherwise by **bisection** (after
  CometBFT's `VerifySkipping`): verify the block halfway first, then go on from there.
* A header below the newest trusted one is verified forward from the highest trusted
  block beneath it if that one is still within the trust period; otherwise backwards, by
  hash links, from the lowest trusted block above it (a finalized block's parent is
  fixed by its hash: no signature and no trust period are needed).

* Every header newly verified from one node is compared with the header each **witness**
  (the other nodes the caller knows) serves at its height; a different header that
  verifies as well is a light-client attack (detector.py): the client records it and
  refuses every read until anchored again. A header at a trusted height that differs from
  the trusted one is examined the same way.

The client reaches a node only through a `Source`, and reads the clock only through the
`clock` it is given, so tests can set the time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from fluxchain.core.block import Header
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import Commit
from fluxchain.light.detector import Attack, ServedHeader, is_signed_conflict
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.store import TrustStore
from fluxchain.light.verifier import (
    LightBlock,
    NotEnoughTrustError,
    TrustedBlock,
    TrustOptions,
    is_expired,
    verify,
    verify_backwards,
)

MAX_BISECTION_STEPS: Final = 128  # a bisection halves the gap: log2 of any chain, twice over
MAX_BACKWARD_HEADERS: Final = 10_000  # hash links fetched one by one: bounded work per read
# How far (in target block times) below the newest trusted header a state answer may be
# proven: a node a block or two behind is honest; one further behind may be replaying an
# answer from before a change the wallet has already seen. A policy of this client, not
# a chain rule: it only decides which node's answer to take.
FRESH_BLOCKS: Final = 2


class Source(Protocol):
    """A node, as far as the light client needs one."""

    @property
    def name(self) -> str:
        """How errors name the node (its URL)."""

    def light_block(self, height: int) -> LightBlock:
        """The header at `height` with its commit and the set that signed it."""

    def header(self, height: int) -> Header:
        """The header at `height` (for walking back by hash links)."""

    def validators(self, height: int) -> ValidatorSet:
        """The validator set that signed block `height`."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class LightClient:
    """Verifies headers against a TrustStore, adding each verified one to it."""

    def __init__(
        self,
        store: TrustStore,
        clock: Callable[[], int] = wall_clock_ms,
        *,
        trust_period_ms: int | None = None,
        witnesses: Sequence[Source] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        # Nodes a newly verified header is compared with (detector.py). A witness that
        # cannot answer raises LightError (the caller's Source says so) and is skipped:
        # the header was verified anyway; a witness only adds a check.
        self.witnesses = list(witnesses)
        period = store.trust_period_ms if trust_period_ms is None else trust_period_ms
        self.options = TrustOptions(store.chain_id, period)
        # None without pinned params (a store made from a bare header, in tests).
        self.fresh_window_ms = (
            None if store.params is None else FRESH_BLOCKS * store.params.block_time_ms
        )

    def verify_header(self, source: Source, header: Header, commit: Commit) -> None:
        """Raise LightError unless `header` (finalized by `commit`, as a node served it)
        is a header of the trusted chain; remember it when it is new, after comparing it
        with each witness's header at its height (LIGHT_CLIENT_ATTACK when they conflict)."""
        if self.store.attack is not None:
            raise self.store.attack.error()
        if header.chain_id != self.store.chain_id:
            raise LightError(
                LightReason.HEADER_UNVERIFIED,
                f"header {header.height} is of chain {header.chain_id!r},"
                f" not {self.store.chain_id!r}",
            )
        known = self.store.at(header.height)
        if known is not None:
            if known.hash != header.hash():
                self._examine_conflict(source, header, commit, known)
                raise LightError(
                    LightReason.HEADER_UNVERIFIED,
                    f"header {header.height} differs from the one this client trusts there",
                )
            return
        below = self.store.below(header.height)
        now = self.clock()
        if below is not None and not is_expired(below, self.options, now):
            target = LightBlock(header, commit, source.validators(header.height))
            self._forward(source, below, target)
            self._cross_check(source, below, header)
        elif self.store.above(header.height) is not None:
            self._backward(source, header)
        else:
            assert below is not None  # the store holds at least its anchor
            raise LightError(
                LightReason.TRUST_EXPIRED,
                f"the newest trusted header (height {below.height}) is older than the trust"
                f" period ({self.options.trust_period_ms // 1000} s): anchor again with"
                " `flux-wallet trust`",
            )
        self.store.save()

    def check_fresh(self, header: Header) -> None:
        """Raise STALE_HEADER unless `header` is fresh enough to act on what it proves:
        younger than the trust period, and (with pinned params) not more than
        FRESH_BLOCKS block times older than the newest header this client trusts (an
        older answer may be a replay from before a change already seen). Only the
        header's own time is read: call it before verifying, so that a stale answer
        costs no request."""
        age_ms = self.clock() - header.time_ms
        if age_ms >= self.options.trust_period_ms:
            raise LightError(
                LightReason.STALE_HEADER,
                f"the answer is proven against header {header.height}, {age_ms // 1000} s old;"
                f" the trust period is {self.options.trust_period_ms // 1000} s",
            )
        newest = self.store.latest()
        window = self.fresh_window_ms
        if window is not None and newest.time_ms - header.time_ms > window:
            raise LightError(
                LightReason.STALE_HEADER,
                f"the answer is proven against header {header.height}, dated"
                f" {(newest.time_ms - header.time_ms) // 1000} s before header {newest.height}"
                f" that this client already trusts (at most {window // 1000} s is accepted)",
            )

    def _cross_check(self, primary: Source, common: TrustedBlock, header: Header) -> None:
        """Compare `header`, just verified from `primary` forward from `common`, with the
        header each other witness serves at its height (CometBFT's detector)."""
        for witness in self.witnesses:
            if witness.name == primary.name:
                continue
            try:
                other = witness.header(header.height)
                if other.hash() == header.hash():
                    continue
                witnessed = witness.light_block(header.height)
            except LightError:
                continue  # unreachable, behind, or not the API's shape: no evidence
            if witnessed.header.hash() == header.hash():
                continue
            if is_signed_conflict(common, witnessed, self.options, self.clock()):
                self._halt(header.height, (primary.name, header), (witness.name, witnessed.header))

    def _examine_conflict(
        self, source: Source, header: Header, commit: Commit, known: TrustedBlock
    ) -> None:
        """`source` serves, at a height this client trusts, another header than the trusted
        one: halt if it verifies from the trusted block below (signed by the trusted power),
        else return (the caller refuses it as unverified)."""
        common = self.store.below(header.height)
        if common is None:
            return
        try:
            witnessed = LightBlock(header, commit, source.validators(header.height))
        except LightError:
            return
        if is_signed_conflict(common, witnessed, self.options, self.clock()):
            # The node that served the trusted header is not kept with it.
            trusted = ServedHeader("an earlier answer", known.hash, known.time_ms)
            conflicting = ServedHeader(source.name, header.hash(), header.time_ms)
            attack = Attack(header.height, trusted, conflicting, self.clock())
            self.store.halt(attack)
            raise attack.error()

    def _halt(self, height: int, first: tuple[str, Header], second: tuple[str, Header]) -> None:
        def served(pair: tuple[str, Header]) -> ServedHeader:
            return ServedHeader(pair[0], pair[1].hash(), pair[1].time_ms)

        attack = Attack(height, served(first), served(second), self.clock())
        self.store.halt(attack)
        raise attack.error()

    def _forward(self, source: Source, trusted: TrustedBlock, target: LightBlock) -> None:
        pending = [target]
        for _ in range(MAX_BISECTION_STEPS):
            candidate = pending[-1]
            try:
                verify(trusted, candidate, self.options, self.clock())
            except NotEnoughTrustError:
                if candidate.height == trusted.height + 1:
                    raise LightError(
                        LightReason.HEADER_UNVERIFIED,
                        f"the validator set changed by more than 2/3 at height"
                        f" {candidate.height}: anchor again with `flux-wallet trust`",
                    ) from None
                pivot = (trusted.height + candidate.height) // 2
                pending.append(source.light_block(pivot))
                continue
            trusted = TrustedBlock.of(candidate)
            self.store.add(trusted)
            pending.pop()
            if not pending:
                return
        raise LightError(
            LightReason.HEADER_UNVERIFIED,
            f"header {target.height} could not be reached in {MAX_BISECTION_STEPS} steps",
        )

    def _backward(self, source: Source, header: Header) -> None:
        above = self.store.above(header.height)
        assert above is not None
        if above.height - header.height > MAX_BACKWARD_HEADERS:
            raise LightError(
                LightReason.HEADER_UNVERIFIED,
                f"header {header.height} is more than {MAX_BACKWARD_HEADERS} blocks below"
                " anything trusted that is still within its trust period",
            )
        link: TrustedBlock | Header = above
        for height in range(above.height - 1, header.height, -1):
            older = source.header(height)
            verify_backwards(link, older, self.store.chain_id)
            link = older
        verify_backwards(link, header, self.store.chain_id)
