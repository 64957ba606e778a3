"""Block sync's header signatures verified ahead of import (fluxchain/node/sync_checks.py):
the verdicts spare import work and never change what import accepts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxchain.core import crypto, votes, vrf
from fluxchain.core.block import Block
from fluxchain.core.crypto import NOTHING_VERIFIED, SigningKey, Verified, tagged_hash
from fluxchain.core.errors import BlockError, Reason
from fluxchain.core.params import COIN
from fluxchain.core.votes import Commit, sign_commit
from fluxchain.node.sync import SyncedBlock, header_triples, import_in_order
from fluxchain.node.sync_checks import SyncChecker, Triple, triple_verdicts
from tests.support.chain import (
    VALIDATORS,
    Builder,
    devnet_genesis,
    funded_key,
    node_hot_key,
    open_chain,
)
from tests.support.wait import wait_until

RECEIVER = b"\x42" * 20
BLOCKS = 6


@pytest.fixture(scope="module")
def checker() -> Iterator[SyncChecker]:
    made = SyncChecker()
    yield made
    made.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Block, Commit]]:
    """A few blocks of one transfer each with their commits, as a peer serves them."""
    chain = open_chain(tmp_path_factory.mktemp("served"))
    builder = Builder(chain)
    pairs = []
    for i in range(BLOCKS):
        block = builder.commit([builder.transfer(funded_key(4), RECEIVER, COIN + i)])
        assert builder.last_commit is not None
        pairs.append((block, builder.last_commit))
    chain.close()
    return pairs


def verified_ahead(checker: SyncChecker, triples: list[Triple], height: int = 1) -> Verified:
    """What the checker files as valid of `triples`, once it has answered."""
    verified = checker.submit(height, triples)
    wait_until(checker.idle, timeout=30, what="the sync checker's verdicts", poll_s=0.01)
    return verified


def test_checker_verdicts_are_the_in_process_verdicts(
    tmp_path: Path, served: list[tuple[Block, Commit]], checker: SyncChecker
) -> None:
    """Every triple the checker calls valid is one import would find valid, and every
    altered one (a flipped signature byte, another height's reveal, garbage) is left out."""
    chain = open_chain(tmp_path / "fresh")
    try:
        block, commit = served[0]
        good = header_triples(block, commit, chain)
        assert len(good) == VALIDATORS + 1  # block 1: its commit and its reveal
        key, message, signature = good[0]
        flipped = (key, message, bytes([signature[0] ^ 1]) + signature[1:])
        vrf_key, _, reveal = good[-1]
        wrong_height = (vrf_key, vrf.reveal_message(chain.params.chain_id, 2), reveal)
        garbage = (b"\x02" * 33, b"\x00" * 32, b"\x00" * 64)
        not_a_vrf_key = (b"\x01" * 48, message, reveal)
        verified = verified_ahead(checker, [*good, flipped, wrong_height, garbage, not_a_vrf_key])
        assert verified == frozenset(good)
        assert triple_verdicts([list(t) for t in good]) == b"\x01" * len(good)
        assert triple_verdicts([b"not a triple", [b"a", b"b"], [1, 2, 3]]) == b"\x00" * 3
    finally:
        chain.close()


def test_sync_import_with_header_checks_ahead_is_identical_and_skips_their_verification(
    tmp_path: Path,
    served: list[tuple[Block, Commit]],
    checker: SyncChecker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Importing synced blocks whose header signatures were verified ahead ends on the
    same head and state root as importing them plainly, and import then verifies none of
    those signatures again (no VRF pairing, no commit signature)."""
    plain = open_chain(tmp_path / "plain")
    ahead = open_chain(tmp_path / "ahead")
    try:
        plain_out = import_in_order(plain, tuple(SyncedBlock("p", b, c) for b, c in served))
        assert plain_out.imported == BLOCKS
        synced = tuple(
            SyncedBlock("p", b, c, verified_ahead(checker, header_triples(b, c, ahead), b.height))
            for b, c in served
        )
        commit_checks = _count_commit_signature_checks(monkeypatch)
        reveal_checks: list[bytes] = []
        real_vrf_verify = vrf.verify

        def vrf_verify(vrf_key: bytes, message: bytes, signature: bytes) -> bool:
            reveal_checks.append(vrf_key)
            return real_vrf_verify(vrf_key, message, signature)

        monkeypatch.setattr(vrf, "verify", vrf_verify)
        assert import_in_order(ahead, synced).imported == BLOCKS
        assert commit_checks == [] and reveal_checks == []
        assert ahead.head_hash == plain.head_hash
        assert ahead.tree.root == plain.tree.root == plain.head.state_root  # type: ignore[union-attr]
    finally:
        plain.close()
        ahead.close()


def test_a_forged_commit_is_refused_at_import_though_the_checker_saw_it_first(
    tmp_path: Path, served: list[tuple[Block, Commit]], checker: SyncChecker
) -> None:
    """A lying peer's commit goes to the checker like any other; its signatures are not
    the validators', so none is verified ahead, and import refuses the block (BAD_COMMIT)
    before executing it, naming the peer, as without the checker."""
    chain = open_chain(tmp_path / "fresh")
    try:
        block, _ = served[0]
        keys = [SigningKey.generate() for _ in range(VALIDATORS)]
        forged = sign_commit(keys, devnet_genesis().chain_id, block.height, 0, block.hash())
        verified = verified_ahead(checker, header_triples(block, forged, chain))
        forged_triples = set(forged.signed_triples(chain.params.chain_id))
        # The checker found the forger's own signatures valid (they are), and import
        # must not take that for a validator's.
        assert forged_triples <= verified
        outcome = import_in_order(chain, (SyncedBlock("liar", block, forged, verified),))
        assert outcome.imported == 0 and outcome.refused is not None
        assert (outcome.refused.peer_id, outcome.refused.reason) == ("liar", Reason.BAD_COMMIT)
        assert chain.height == 0 and not chain.state.has_pending()
    finally:
        chain.close()


def test_a_verified_signature_over_another_digest_does_not_finalize_a_block(
    tmp_path: Path, served: list[tuple[Block, Commit]]
) -> None:
    """The verified set holds (key, digest, signature): a validator's real signature of
    one block, verified ahead, cannot vouch for a commit of another block or round."""
    chain = open_chain(tmp_path / "fresh")
    try:
        (block, commit), (_, other) = served[0], served[1]
        verified = frozenset(other.signed_triples(chain.params.chain_id))
        # The other block's signatures, relabelled as precommits of block 1.
        relabelled = Commit(block.height, 0, block.hash(), other.signatures)
        with pytest.raises(BlockError) as refused:
            relabelled.verify(chain.params.chain_id, chain.validators(), 1, block.hash(), verified)
        assert refused.value.reason is Reason.BAD_COMMIT
        commit.verify(chain.params.chain_id, chain.validators(), 1, block.hash(), NOTHING_VERIFIED)
    finally:
        chain.close()


def test_a_gone_checker_leaves_every_check_to_import(checker: SyncChecker) -> None:
    """If the check process dies, sync goes on: nothing is verified ahead (import checks
    everything itself), and nothing more is queued for it."""
    spare = SyncChecker()
    spare._process.kill()
    spare._process.join()
    digest = tagged_hash(b"test", "chain", b"x")
    key = SigningKey.generate()
    triple = (key.public_key, digest, key.sign(digest))
    assert verified_ahead(spare, [triple]) == NOTHING_VERIFIED
    assert not spare.healthy
    assert spare.submit(2, [triple]) == NOTHING_VERIFIED and spare.idle()
    spare.close()
    assert verified_ahead(checker, [triple]) == frozenset([triple])


def test_imported_heights_are_not_checked_ahead(checker: SyncChecker) -> None:
    """Blocks the chain has passed while they waited are dropped from the queue, lowest
    heights are checked first."""
    digest = tagged_hash(b"test", "chain", b"y")
    key = SigningKey.generate()
    triple = (key.public_key, digest, key.sign(digest))
    with checker._cond:  # hold the feeding thread while the queue is set up
        late = checker.submit(5, [triple])
        passed = checker.submit(3, [triple])
        checker.forget(4)
        assert [item[0] for item in checker._queue] == [5]
    wait_until(checker.idle, timeout=30, what="the sync checker's verdicts", poll_s=0.01)
    assert late == {triple} and passed == set()


def _count_commit_signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record the key of every commit signature verified from now on."""
    checked: list[bytes] = []
    real_verify = crypto.verify  # what votes.py imported

    def verify(pubkey: bytes, digest: bytes, signature: bytes) -> bool:
        checked.append(pubkey)
        return real_verify(pubkey, digest, signature)

    monkeypatch.setattr(votes, "verify", verify)
    return checked


def test_a_parent_commit_imported_a_moment_ago_is_not_verified_twice(
    tmp_path: Path, served: list[tuple[Block, Commit]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each synced block carries its parent's commit, usually the very commit served (and
    verified) with the parent: import verifies it once, not twice, even with no checker
    (one core)."""
    chain = open_chain(tmp_path / "fresh")
    try:
        checked = _count_commit_signature_checks(monkeypatch)
        outcome = import_in_order(chain, tuple(SyncedBlock("p", b, c) for b, c in served))
        assert outcome.imported == BLOCKS
        assert len(checked) == BLOCKS * VALIDATORS  # each block's own commit, nothing more
    finally:
        chain.close()


def test_a_parent_commit_other_than_the_one_served_is_verified_in_full(
    tmp_path: Path, served: list[tuple[Block, Commit]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer may serve block 1 with another valid commit (a later round) than the one
    block 2 carries: block 2's parent commit is then verified at its import as ever."""
    chain = open_chain(tmp_path / "fresh")
    try:
        (first, commit), (second, second_commit) = served[0], served[1]
        later = sign_commit(
            [node_hot_key(i) for i in range(VALIDATORS)],
            chain.params.chain_id,
            first.height,
            1,
            first.hash(),
        )
        assert later != commit and second.last_commit == commit
        checked = _count_commit_signature_checks(monkeypatch)
        synced = (SyncedBlock("p", first, later), SyncedBlock("p", second, second_commit))
        assert import_in_order(chain, synced).imported == 2
        assert len(checked) == 3 * VALIDATORS  # two commits and block 2's parent commit
    finally:
        chain.close()
