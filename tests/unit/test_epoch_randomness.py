"""Epoch randomness that nobody can steer (issue 26 #2; docs/economics.md, "Unbiasable
randomness"): each attack is first reproduced against the old rule, then shown useless
against the chain's rule."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from blspy import G2Element

from consensus.events import BlockValidated, BuildProposal, ProposeBlock, ValidateBlock
from fluxchain.core import epochs, placement, vrf
from fluxchain.core.block import Block
from fluxchain.core.context import BlockContext
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.errors import BlockError, DecodeError, Reason
from fluxchain.core.nodes import compute_rank_key, get_node
from fluxchain.core.params import COIN, Tier
from fluxchain.core.proposer import proposer
from fluxchain.core.records import META, NODE, VALIDATORS, Meta, node_key
from fluxchain.core.schema import new_state
from fluxchain.core.state import State
from fluxchain.core.uptime import get_ring
from fluxchain.core.validators import ValidatorSet
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from tests.support.chain import (
    Builder,
    NoGossip,
    funded_key,
    history_genesis,
    node_confirm,
    node_hot_key,
    node_register,
    open_chain,
    reveal_of,
)
from tests.support.state import make_node, make_params

SEED = 262  # the rng seed of every draw below, printed by each assertion that uses it


@pytest.fixture
def b(tmp_path: Path) -> Builder:
    return Builder(open_chain(tmp_path / "a", history_genesis()))


def _meta(b: Builder) -> Meta:
    meta: Meta = b.chain.state.get(META)
    return meta


def _commit_until_last_block_of_epoch(b: Builder) -> None:
    """Commit blocks until the next one is the last of its epoch."""
    epoch_length = b.chain.params.epoch_length
    while (b.chain.height + 2) % epoch_length:
        b.commit()


# -- attack 1: the epoch's last proposer grinds the next seed ----------------------------------


def test_header_time_and_parent_cannot_grind_the_epoch_seed(b: Builder) -> None:
    """The old seed, H(seed ‖ prev_hash), let the last proposer of an epoch try every
    block time it may use (each a new block hash) and publish the block whose seed suited
    it: 10,000 times gave 10,000 seeds. Now the block's only entropy is its reveal: the
    same 10,000 times, and any txs, give one mix, and so one seed."""
    _commit_until_last_block_of_epoch(b)
    block, _ = b.block([])
    meta = _meta(b)
    times = range(block.header.time_ms, block.header.time_ms + 10_000)
    variants = [replace(block.header, time_ms=t) for t in times]
    old_seeds = {sha256(meta.epoch_seed + header.hash()) for header in variants}
    assert len(old_seeds) == 10_000
    assert len({epochs.fold_reveal(meta.mix, header.reveal) for header in variants}) == 1

    # Built for real with other times and other txs, the block leaves one mix behind.
    mixes, hashes = set(), set()
    for i, txs in enumerate([[], [b.transfer(funded_key(), bytes(20))], []]):
        built, execution, _ = b.chain.build_block(
            now_ms=b.time_ms + 1 + 997 * i,
            round_=0,
            last_commit=b.last_commit,
            candidates=txs,
            reveal=reveal_of(b.chain_id, b.chain.validators(), b.chain.height + 1, 0),
        )
        mixes.add(_meta(b).mix)
        hashes.add(built.hash())
        b.chain.abort(execution)
    assert len(hashes) == 3
    assert mixes == {epochs.fold_reveal(meta.mix, block.header.reveal)}


def test_the_seed_of_an_epoch_is_the_mix_from_two_epochs_back(b: Builder) -> None:
    """Lookahead: the seed of epoch e is fixed at the end of epoch e - 2, so the proposer
    of the block that starts an epoch (or ends the one before) finds it already made."""
    epoch_length = b.chain.params.epoch_length
    mix_at_end: dict[int, bytes] = {-1: _meta(b).mix}  # the genesis hash
    seeds: dict[int, bytes] = {}
    while b.chain.height < 5 * epoch_length:
        block = b.commit()
        meta = _meta(b)
        assert meta.mix != mix_at_end.get(meta.epoch - 1), "every block folds a reveal in"
        if block.height % epoch_length == 0:
            seeds[meta.epoch] = meta.epoch_seed
            assert meta.next_seed == mix_at_end[meta.epoch - 1]
        if (block.height + 1) % epoch_length == 0:
            mix_at_end[block.height // epoch_length] = meta.mix
    for epoch in range(2, 6):
        assert seeds[epoch] == mix_at_end[epoch - 2]
    assert len(set(seeds.values())) == len(seeds)


# -- the reveal rule ---------------------------------------------------------------------------


def test_a_block_with_a_bad_reveal_is_invalid_and_the_node_goes_on(b: Builder) -> None:
    """A reveal that is not the proposer's VRF signature for this height (another
    validator's, another height's, bytes that are no curve point, the identity point) makes
    the block invalid with `bad_reveal`; nothing of it stays, and the next honest block is
    imported. A header without a reveal does not even decode."""
    b.commit()
    block, _ = b.block([])
    header = block.header
    height, chain_id = header.height, b.chain_id
    validators = b.chain.validators()
    other = next(k for k in (node_hot_key(i) for i in range(4)) if k.public_key != header.proposer)
    assert proposer(validators, height, 0) == header.proposer
    root = b.chain.tree.root
    bad_reveals = {
        "another validator's": vrf.make_reveal(vrf.derive_secret(other.secret), chain_id, height),
        "another height's": vrf.make_reveal(
            _proposer_secret(header.proposer), chain_id, height + 1
        ),
        "another chain's": vrf.make_reveal(_proposer_secret(header.proposer), "other", height),
        "not a point": bytes([0xA0]) + bytes(range(95)),
        "the identity": bytes(G2Element()),
    }
    for what, reveal in bad_reveals.items():
        forged = Block(replace(header, reveal=reveal), block.txs, block.last_commit)
        with pytest.raises(BlockError) as refused:
            b.chain.execute_proposal(Block.decode(forged.encode(), 1 << 30, 1 << 20))
        assert refused.value.reason is Reason.BAD_REVEAL, what
        assert b.chain.tree.root == root and not b.chain.state.has_pending(), what
    missing = replace(header, reveal=b"")
    with pytest.raises(DecodeError) as undecodable:
        Block.decode(Block(missing, block.txs, block.last_commit).encode(), 1 << 30, 1 << 20)
    assert undecodable.value.reason is Reason.BAD_FIELD
    assert b.commit().height == height  # the honest block of that height goes in


def _devnet_key(pubkey: bytes) -> SigningKey:
    """The devnet node key whose public key is `pubkey`."""
    return next(k for k in (node_hot_key(i) for i in range(4)) if k.public_key == pubkey)


def _proposer_secret(pubkey: bytes) -> vrf.VrfSecret:
    return vrf.derive_secret(_devnet_key(pubkey).secret)


def test_vrf_keys_and_proofs_that_are_not_real_are_refused() -> None:
    """Bytes that are not a BLS key or signature raise DecodeError with a stable reason,
    never a library exception; a proof of possession binds the chain and the node key."""
    node = node_hot_key(0)
    vrf_key, proof = vrf.claim(node, "flux-devnet")
    assert vrf.pop_verify(vrf_key, proof, "flux-devnet", node.public_key)
    assert not vrf.pop_verify(vrf_key, proof, "other-chain", node.public_key)
    assert not vrf.pop_verify(vrf_key, proof, "flux-devnet", node_hot_key(1).public_key)
    for key in (b"", bytes(48), b"\xc0" + bytes(47), b"\x8f" * 48):
        with pytest.raises(DecodeError) as refused:
            vrf.check_key(key)
        assert refused.value.reason is Reason.BAD_PUBKEY
    for signature in (b"", bytes(96), b"\xff" * 96):
        with pytest.raises(DecodeError) as refused:
            vrf.verify(vrf_key, b"m", signature)
        assert refused.value.reason is Reason.BAD_SIGNATURE


def test_a_register_tx_with_a_copied_vrf_key_is_refused(b: Builder) -> None:
    """A VRF key comes with its holder's proof for this node key: a register tx that
    names another node's VRF key (with that node's proof) is refused `bad_vrf_key`."""
    owner, hot = funded_key(), node_hot_key(100)
    tx = node_register(b, owner, hot, Tier.CUMULUS, "DE", "EU")
    copied = replace(
        tx.payload,
        vrf_key=vrf.claim(node_hot_key(0), b.chain_id)[0],
        vrf_proof=vrf.claim(node_hot_key(0), b.chain_id)[1],
    )
    b.nonces.pop(owner.public_key)
    forged = b.tx(owner, copied)
    block, execution, rejected = b.chain.build_block(
        now_ms=b.time_ms + 1,
        round_=0,
        last_commit=b.last_commit,
        candidates=[forged],
        reveal=reveal_of(b.chain_id, b.chain.validators(), b.chain.height + 1, 0),
    )
    b.chain.abort(execution)
    assert not block.txs
    ((_, error),) = rejected
    assert error.reason is Reason.BAD_VRF_KEY  # type: ignore[attr-defined]


# -- attack 2: the seed orders validator selection ties ----------------------------------------


def _stratus_state(n_nodes: int, attackers: int) -> tuple[State, set[bytes]]:
    """`n_nodes` confirmed Stratus nodes of equal collateral; the attacker registered the
    last `attackers` of them."""
    state = new_state()
    origin = sha256(b"seats")
    state.put(META, Meta(0, 0, origin, 0, 0, origin, origin))
    ids = set()
    for i in range(n_nodes):
        node = replace(make_node(i, Tier.STRATUS), collateral=40_000 * COIN, registered_height=i)
        state.put(node_key(node.node_id), node)
        if i >= n_nodes - attackers:
            ids.add(node.node_id)
    state.commit()
    return state, ids


def test_a_chosen_seed_no_longer_moves_validator_seats() -> None:
    """With 20 % of equal-collateral Stratus nodes, the old rule (ties ordered by
    H(seed ‖ node_id)) let the best of 10,000 seeds give the attacker more than a third of
    the seats: enough to halt the chain. Seats now follow collateral, then registration
    height, then node id: every seed gives the same set."""
    seats, n_nodes, attackers = 10, 50, 10
    state, attacker_ids = _stratus_state(n_nodes, attackers)
    candidates = [node for _, node in state.items(NODE)]
    rng = random.Random(SEED)
    best = 0
    for _ in range(10_000):
        seed = rng.randbytes(32)
        old = sorted(candidates, key=lambda n: (-n.collateral, sha256(seed + n.node_id)))
        best = max(best, sum(n.node_id in attacker_ids for n in old[:seats]))
    assert 3 * best > seats, f"seed {SEED}: the old rule's best seed gave {best} seats"
    print(f"old rule: best of 10,000 seeds gave {best} of {seats} seats (seed {SEED})")

    params = replace(make_params(), max_validators=seats)
    chosen: set[ValidatorSet] = set()
    for _ in range(20):
        state, _ = _stratus_state(n_nodes, attackers)
        seed = rng.randbytes(32)
        meta: Meta = state.get(META)
        state.put(META, replace(meta, epoch_seed=seed, next_seed=seed, mix=seed))
        ctx = BlockContext(state, params, params.epoch_length, b"", b"")
        epochs.process_epoch(ctx)
        chosen.add(state.get(VALIDATORS))
    (validators,) = chosen
    keys = {v.pubkey for v in validators.validators}
    attacker_keys = {
        make_node(i, Tier.STRATUS).node_key for i in range(n_nodes - attackers, n_nodes)
    }
    assert len(keys) == seats and not keys & attacker_keys


# -- attack 3: node ids are ground through register txs ----------------------------------------


def _old_rank(app: str, node_id: bytes) -> tuple[bytes, bytes]:
    """The old rendezvous rank of a node for `app`: by its id."""
    return placement.compute_group_scores(app)[node_id[0]], placement.compute_node_score(
        app, node_id
    )


def _new_rank(app: str, rank_key: bytes) -> tuple[bytes, bytes]:
    return (
        placement.compute_group_scores(app)[placement.compute_group(rank_key)],
        placement.compute_node_score(app, rank_key),
    )


def test_ground_register_txs_cannot_choose_rank_keys(b: Builder) -> None:
    """Node ids are tx.id[:20] of the register tx: re-signing it with another endpoint
    port gives another id, and a few tries give one that outranks every node for a chosen
    app (old rule: rank by id). Now a node ranks by its rank key, made two epochs after
    its registration from a mix of reveals that did not exist then; until that, it is
    neither placeable nor in the uptime ring. The ground ids win no more often than any."""
    app = "victim-app"
    state = b.chain.state
    genesis_nodes = [node for _, node in state.items(NODE)]
    best_old = max(_old_rank(app, n.node_id) for n in genesis_nodes)
    owner, hot = funded_key(), node_hot_key(100)
    tries = 0
    while True:
        tries += 1
        tx = node_register(b, owner, hot, Tier.CUMULUS, "DE", "EU", f"10.0.0.1:{1000 + tries}")
        if _old_rank(app, tx.id[:20]) > best_old:
            break
        b.nonces.pop(owner.public_key)  # the same nonce again: another try of one tx
    node_id = tx.id[:20]
    b.commit([tx])
    epoch_length = b.chain.params.epoch_length
    registered_epoch = b.chain.height // epoch_length
    b.commit([node_confirm(b, hot, node_id, Tier.CUMULUS)])
    mix_at_end_of_next_epoch = b""
    while b.chain.height < (registered_epoch + 2) * epoch_length - 1:
        node = get_node(state, node_id)
        assert node is not None and node.rank_key == b""
        assert node_id not in get_ring(state).nodes
        assert placement.get_load(state, node_id) is None  # not placeable
        b.commit()
        mix_at_end_of_next_epoch = _meta(b).mix
    b.commit()  # the first block of epoch registered_epoch + 2
    node = get_node(state, node_id)
    assert node is not None
    assert node.rank_key == compute_rank_key(mix_at_end_of_next_epoch, node_id)
    assert node_id in get_ring(state).nodes
    assert placement.get_load(state, node_id) is not None

    # Many ids ground to win under the old rule, keyed with that mix: they win about as
    # often as random ids would (1 in len(genesis_nodes) + 1), not always.
    rng = random.Random(SEED)
    ground: list[bytes] = []
    while len(ground) < 200:
        candidate = rng.randbytes(20)
        if _old_rank(app, candidate) > best_old:
            ground.append(candidate)
    best_new = max(_new_rank(app, n.rank_key) for n in genesis_nodes)
    wins = sum(
        _new_rank(app, compute_rank_key(mix_at_end_of_next_epoch, g)) > best_new for g in ground
    )
    assert wins < 100, f"seed {SEED}: {wins} of 200 ground ids still outrank every node"
    print(f"{tries} register tries ground an id; rank keys: {wins} of 200 ground ids win")


def test_a_proposal_with_a_forged_reveal_gets_an_invalid_verdict_and_the_node_goes_on(
    b: Builder,
) -> None:
    """What a validator's driver does with a gossiped proposal whose reveal is another
    validator's: the verdict is invalid (it prevotes nil), nothing stays pending, and the
    same driver then builds and proposes its own block with its own reveal."""
    b.commit()
    block, _ = b.block([])
    proposer_key = _devnet_key(block.header.proposer)
    other = next(k for k in (node_hot_key(i) for i in range(4)) if k != proposer_key)
    forged_reveal = vrf.make_reveal(vrf.derive_secret(other.secret), b.chain_id, block.height)
    forged = Block(replace(block.header, reveal=forged_reveal), block.txs, block.last_commit)
    driver = Driver(b.chain, NodeService(b.chain), proposer_key, None, NoGossip())
    answer = driver._validate(ValidateBlock(forged.height, forged.hash(), forged.encode()))
    assert isinstance(answer, BlockValidated) and not answer.valid
    assert not b.chain.state.has_pending()
    built = driver._build(BuildProposal(block.height, 0))
    assert isinstance(built, ProposeBlock)
    own = Block.decode(built.block_bytes, 1 << 30, 1 << 20)
    assert own.header.reveal == block.header.reveal  # the one reveal of this proposer here
    driver._abort_pending()
