"""The light client's rules on hand-made chains: adjacent and skipping verification,
bisection across validator-set changes, and every way a header can fail to earn trust.

The headers here carry only what the light client reads (chain, height, time, parent,
validators hash) and are signed by real keys: the verifier never executes a block.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from fluxchain.core.block import Header
from fluxchain.core.crypto import SigningKey
from fluxchain.core.validators import Validator, ValidatorSet
from fluxchain.core.votes import Commit, sign_commit
from fluxchain.core.vrf import VRF_KEY_SIZE, VRF_SIGNATURE_SIZE
from fluxchain.light.client import LightClient
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.store import MAX_KEPT, TrustStore
from fluxchain.light.verifier import LightBlock, TrustedBlock
from tests.support.chain import node_hot_key

CHAIN = "light-test"
GENESIS_HASH = b"\x47" * 32
GENESIS_TIME = 1_000_000
BLOCK_MS = 1_000
PERIOD_MS = 3_600_000
KEYS = [node_hot_key(i) for i in range(8)]


def validator_set(keys: Sequence[SigningKey]) -> ValidatorSet:
    return ValidatorSet.of([Validator(k.public_key, 100, bytes(VRF_KEY_SIZE)) for k in keys])


@dataclass
class HandChain:
    """Blocks 1..n; block h is signed by `signers_of(h)` of the set `sets[h]` (a Source)."""

    sets: dict[int, list[SigningKey]]
    chain_id: str = CHAIN
    blocks: dict[int, LightBlock] = field(default_factory=dict)
    asked: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        prev = GENESIS_HASH
        for height in sorted(self.sets):
            keys = self.sets[height]
            validators = validator_set(keys)
            header = make_header(height, prev, validators, self.chain_id)
            commit = sign_commit(keys, self.chain_id, height, 0, header.hash())
            self.blocks[height] = LightBlock(header, commit, validators)
            prev = header.hash()

    @property
    def name(self) -> str:
        return "hand-made"

    def light_block(self, height: int) -> LightBlock:
        self.asked.append(height)
        return self.blocks[height]

    def header(self, height: int) -> Header:
        self.asked.append(height)
        return self.blocks[height].header

    def validators(self, height: int) -> ValidatorSet:
        return self.blocks[height].validators

    def time_of(self, height: int) -> int:
        return self.blocks[height].header.time_ms


def make_header(
    height: int, prev: bytes, validators: ValidatorSet, chain_id: str = CHAIN
) -> Header:
    return Header(
        chain_id=chain_id,
        height=height,
        round=0,
        time_ms=GENESIS_TIME + height * BLOCK_MS,
        prev_hash=prev,
        proposer=validators.validators[0].pubkey,
        reveal=bytes(VRF_SIGNATURE_SIZE),
        tx_root=bytes(32),
        state_root=bytes(32),
        events_root=bytes(32),
        validators_hash=validators.hash(),
        last_commit_hash=bytes(32),
    )


def genesis_store(keys: Sequence[SigningKey] = KEYS[:4], path: Path | None = None) -> TrustStore:
    anchor = TrustedBlock(0, GENESIS_HASH, GENESIS_TIME, validator_set(keys))
    return TrustStore.from_block(CHAIN, PERIOD_MS, anchor, path)


def client(store: TrustStore, now_ms: int) -> LightClient:
    return LightClient(store, lambda: now_ms)


def verify(light: LightClient, chain: HandChain, height: int, commit: Commit | None = None) -> None:
    block = chain.blocks[height]
    light.verify_header(chain, block.header, commit or block.commit)


def refused(
    reason: LightReason, light: LightClient, chain: HandChain, height: int, **kw: Commit
) -> str:
    with pytest.raises(LightError) as caught:
        verify(light, chain, height, **kw)
    assert caught.value.reason is reason, caught.value
    return caught.value.message


def steady(n: int, keys: Sequence[SigningKey] = KEYS[:4]) -> HandChain:
    return HandChain({h: list(keys) for h in range(1, n + 1)})


def test_adjacent_headers_verify_one_after_another() -> None:
    chain = steady(3)
    light = client(genesis_store(), chain.time_of(3))
    for height in (1, 2, 3):
        verify(light, chain, height)
    assert [b.height for b in light.store.blocks] == [0, 1, 2, 3]


def test_skipping_verification_jumps_when_the_trusted_set_signed() -> None:
    chain = steady(50)
    light = client(genesis_store(), chain.time_of(50))
    verify(light, chain, 50)
    assert chain.asked == [] and light.store.latest().height == 50


def test_bisection_crosses_validator_set_changes() -> None:
    """Set A (keys 0-3) to B (2-5) at 10 to C (4-7) at 20: no key of A signs block 30, so the
    client verifies a block halfway first, where half of A's power still signs."""
    a, b, c = KEYS[0:4], KEYS[2:6], KEYS[4:8]
    chain = HandChain({h: a if h < 10 else b if h < 20 else c for h in range(1, 31)})
    light = client(genesis_store(a), chain.time_of(30))
    verify(light, chain, 30)
    assert light.store.latest().height == 30
    assert chain.asked and all(0 < h < 30 for h in chain.asked)
    heights = [blk.height for blk in light.store.blocks]
    assert any(10 <= h < 20 for h in heights), heights  # a block of set B carried trust over


def test_a_complete_turnover_in_one_block_needs_a_new_anchor() -> None:
    chain = HandChain({1: KEYS[:4], 2: KEYS[4:8]})
    light = client(genesis_store(), chain.time_of(2))
    message = refused(LightReason.HEADER_UNVERIFIED, light, chain, 2)
    assert "changed by more than 2/3 at height 2" in message


def test_a_turnover_is_followed_when_the_next_set_was_proven() -> None:
    """A trusted block that knows the set its state root names for the next block (every
    proven answer carries it) verifies that block by CometBFT's adjacent rule: a complete
    turnover passes, and a block signed by any other set, even fully, does not."""
    chain = HandChain({1: KEYS[:4], 2: KEYS[4:8]})
    light = client(genesis_store(), chain.time_of(2))
    verify(light, chain, 1)
    first = chain.blocks[1].header
    light.store.learn_next_validators(1, first.hash(), validator_set(KEYS[4:8]))
    verify(light, chain, 2)
    assert light.store.latest().height == 2

    impostors = HandChain({1: KEYS[:4], 2: KEYS[2:6]})  # half the old set, fully signed
    light = client(genesis_store(), impostors.time_of(2))
    verify(light, impostors, 1)
    light.store.learn_next_validators(1, first.hash(), validator_set(KEYS[4:8]))
    message = refused(LightReason.HEADER_UNVERIFIED, light, impostors, 2)
    assert "another set than the one header 1 committed to" in message


def test_header_signed_by_a_minority_is_refused() -> None:
    chain = steady(5)
    light = client(genesis_store(), chain.time_of(5))
    verify(light, chain, 4)
    target = chain.blocks[5]
    minority = sign_commit(KEYS[:1], CHAIN, 5, 0, target.header.hash())
    message = refused(LightReason.HEADER_UNVERIFIED, light, chain, 5, commit=minority)
    assert "needs > 2/3" in message
    # A skip signed by two of four (not more than 2/3 of the new set) is refused as well.
    light = client(genesis_store(), chain.time_of(5))
    half = sign_commit(KEYS[:2], CHAIN, 5, 0, target.header.hash())
    refused(LightReason.HEADER_UNVERIFIED, light, chain, 5, commit=half)
    assert light.store.latest().height < 5


def test_header_from_another_chain_is_refused() -> None:
    other = HandChain({h: KEYS[:4] for h in (1, 2)}, chain_id="other-chain")
    light = client(genesis_store(), other.time_of(2))
    message = refused(LightReason.HEADER_UNVERIFIED, light, other, 2)
    assert "other-chain" in message


def test_commit_of_another_block_or_another_set_is_refused() -> None:
    chain = steady(3)
    light = client(genesis_store(), chain.time_of(3))
    other_block = sign_commit(KEYS[:4], CHAIN, 3, 0, b"\x01" * 32)
    refused(LightReason.HEADER_UNVERIFIED, light, chain, 3, commit=other_block)
    # The set served for a header must be the one its header names.
    block = chain.blocks[3]
    chain.blocks[3] = replace(block, validators=validator_set(KEYS[4:8]))
    message = refused(LightReason.HEADER_UNVERIFIED, light, chain, 3)
    assert "not the one its header names" in message


def test_trust_expired_refuses_to_skip_and_asks_for_a_new_anchor() -> None:
    chain = steady(5)
    light = client(genesis_store(), GENESIS_TIME + PERIOD_MS + 1)
    message = refused(LightReason.TRUST_EXPIRED, light, chain, 5)
    assert "flux-wallet trust" in message


def test_stale_header_beyond_the_trust_period_is_refused_for_answers() -> None:
    chain = steady(3)
    light = client(genesis_store(), chain.time_of(3))
    verify(light, chain, 3)
    light.clock = lambda: chain.time_of(3) + PERIOD_MS
    with pytest.raises(LightError) as caught:
        light.check_fresh(chain.blocks[3].header)
    assert caught.value.reason is LightReason.STALE_HEADER


def test_header_dated_in_the_future_is_refused() -> None:
    chain = steady(3)
    light = client(genesis_store(), chain.time_of(1))  # block 3 is 2 s ahead: within the drift
    verify(light, chain, 3)
    far = steady(30)
    light = client(genesis_store(), far.time_of(1))
    assert "future" in refused(LightReason.HEADER_UNVERIFIED, light, far, 30)


def test_old_header_is_verified_backwards_by_hash_links() -> None:
    chain = steady(20)
    store = genesis_store()
    light = client(store, chain.time_of(20))
    verify(light, chain, 20)
    store.blocks[0] = replace(store.blocks[0], time_ms=0)  # the anchor has expired
    light.options = replace(light.options, trust_period_ms=chain.time_of(20) - 1)
    verify(light, chain, 7)  # walked down from 20 by prev_hash
    forged = replace(chain.blocks[7].header, state_root=b"\x09" * 32)
    with pytest.raises(LightError) as caught:
        light.verify_header(chain, forged, chain.blocks[7].commit)
    assert caught.value.reason is LightReason.HEADER_UNVERIFIED


def test_a_header_conflicting_with_a_trusted_one_is_refused() -> None:
    chain = steady(3)
    light = client(genesis_store(), chain.time_of(3))
    verify(light, chain, 3)
    forged = replace(chain.blocks[3].header, state_root=b"\x09" * 32)
    minority = sign_commit(KEYS[:1], CHAIN, 3, 0, forged.hash())
    with pytest.raises(LightError) as caught:
        light.verify_header(chain, forged, minority)
    assert "differs from the one this client trusts" in caught.value.message
    # Fully signed, it is more than refused: the client halts (test_attack_detection.py).
    commit = sign_commit(KEYS[:4], CHAIN, 3, 0, forged.hash())
    with pytest.raises(LightError) as caught:
        light.verify_header(chain, forged, commit)
    assert caught.value.reason is LightReason.LIGHT_CLIENT_ATTACK


def test_store_keeps_the_anchor_and_the_newest_and_survives_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "trusted_headers.json"
    chain = steady(MAX_KEPT + 10)
    light = client(genesis_store(path=path), chain.time_of(MAX_KEPT + 10))
    for height in range(1, MAX_KEPT + 11):
        verify(light, chain, height)
    loaded = TrustStore.load(path)
    assert loaded is not None and len(loaded.blocks) == MAX_KEPT
    assert loaded.anchor.height == 0 and loaded.latest().height == MAX_KEPT + 10
    assert loaded.latest() == TrustedBlock.of(chain.blocks[MAX_KEPT + 10])
    body = json.loads(path.read_text())
    body["blocks"][1]["height"] = 10**9  # out of order: damaged
    path.write_text(json.dumps(body))
    with pytest.raises(LightError) as caught:
        TrustStore.load(path)
    assert caught.value.reason is LightReason.NO_TRUST_ANCHOR
