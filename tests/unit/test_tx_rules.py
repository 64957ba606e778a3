"""Every rejection reason of every core tx kind, and the happy path of each.

App kinds (APP_*) are covered in tests/apps/.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fluxchain.core.accounts import get_account
from fluxchain.core.admission import check_fee_free
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.epochs import select_validators
from fluxchain.core.errors import GenesisError, Reason, TxError
from fluxchain.core.execute import HANDLERS
from fluxchain.core.history import get_key_record, kept_validator_sets
from fluxchain.core.nodes import get_node, get_node_by_key
from fluxchain.core.params import COIN, Tier
from fluxchain.core.records import META, NodeStatus
from fluxchain.core.state import State
from fluxchain.core.tx import (
    Benchmark,
    Evidence,
    Hardware,
    NodeConfirm,
    NodeUnregister,
    Transfer,
    Tx,
    TxKind,
    UptimeAttest,
    UptimeReport,
    decode_tx,
    prove_node_key,
)
from fluxchain.core.uptime import checkers_of, targets_of
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.genesis_builder import devnet_params
from tests.support.chain import (
    FEE,
    Builder,
    funded_key,
    node_hot_key,
    open_chain,
    owner_key,
    proposer_reveal,
)

GOOD_BENCH = Benchmark(
    cores=2,
    threads=4,
    ram_mb=4_096,
    disk_gb=50,
    disk_write_mbps=200,
    cpu_score=1_000,
    bandwidth_mbit=100,
)


@pytest.fixture
def b(tmp_path: Path) -> Builder:
    return Builder(open_chain(tmp_path / "home"))


def rejection(b: Builder, tx: Tx) -> Reason:
    """The reason a proposer drops `tx` (it must be dropped)."""
    block, execution, rejected = b.chain.build_block(
        now_ms=b.time_ms + 1,
        round_=0,
        last_commit=b.last_commit,
        candidates=[tx],
        reveal=proposer_reveal(b.chain, 0, b.node_keys.values()),
    )
    b.chain.abort(execution)
    assert not block.txs, "tx was expected to be rejected"
    ((_, err),) = rejected
    assert isinstance(err, TxError)
    return err.reason


def stateless_rejection(b: Builder, tx: Tx) -> Reason:
    with pytest.raises(TxError) as err:
        decode_tx(tx.raw, b.chain.params)
    return err.value.reason


def register(b: Builder, owner: SigningKey, hot: SigningKey, tier: Tier = Tier.CUMULUS) -> bytes:
    b.commit([b.node_register(owner, hot, tier)])
    node = get_node_by_key(b.chain.state, hot.public_key)
    assert node is not None and node.status is NodeStatus.REGISTERED
    return node.node_id


def confirm(b: Builder, hot: SigningKey, node_id: bytes) -> Tx:
    return b.tx(hot, NodeConfirm(node_id, GOOD_BENCH, "0.1.0"), fee=0)


# -- envelope ------------------------------------------------------------------------------


def test_envelope_rejections(b: Builder) -> None:
    k = funded_key()
    to = address_of(owner_key(7).public_key)
    params = b.chain.params
    wrong_chain = Tx.create(k, "other-chain", 0, 1_000, Transfer(to, 1))
    assert stateless_rejection(b, wrong_chain) is Reason.WRONG_CHAIN
    cheap = Tx.create(k, params.chain_id, 0, params.min_fee - 1, Transfer(to, 1))
    assert stateless_rejection(b, cheap) is Reason.FEE_TOO_LOW
    tx = Tx.create(k, params.chain_id, 0, 1_000, Transfer(to, 1))
    forged = tx.raw[:-1] + bytes([tx.raw[-1] ^ 1])
    with pytest.raises(TxError) as err:
        decode_tx(forged, params)
    assert err.value.reason is Reason.BAD_SIGNATURE
    fields = unpack(tx.raw)
    for index, value, reason in [
        (0, 2, Reason.UNKNOWN_VERSION),
        (2, 99, Reason.UNKNOWN_KIND),
        (3, b"\x02" * 5, Reason.BAD_FIELD),
    ]:
        mutated = list(fields)
        mutated[index] = value
        with pytest.raises(TxError) as err:
            decode_tx(pack(mutated), params)
        assert err.value.reason is reason
    with pytest.raises(TxError) as err:
        decode_tx(tx.raw + b"\x00", params)
    assert err.value.reason is Reason.MALFORMED
    big = replace(params, max_tx_bytes=len(tx.raw) - 1)
    with pytest.raises(TxError) as err:
        decode_tx(tx.raw, big)
    assert err.value.reason is Reason.TOO_LARGE


def test_nonce_and_fee(b: Builder) -> None:
    k = funded_key()
    to = address_of(owner_key(7).public_key)
    future = Tx.create(k, b.chain.params.chain_id, 5, 1_000, Transfer(to, 1))
    assert rejection(b, future) is Reason.NONCE_MISMATCH
    pauper = SigningKey(b"\x11" * 32)
    assert rejection(b, b.tx(pauper, Transfer(to, 1))) is Reason.INSUFFICIENT_FUNDS


def test_replay_within_chain_is_stopped_by_nonce(b: Builder) -> None:
    tx = b.transfer(funded_key(), address_of(owner_key(7).public_key))
    b.commit([tx])
    assert rejection(b, tx) is Reason.NONCE_MISMATCH


def test_transfer(b: Builder) -> None:
    k = funded_key()
    to = address_of(owner_key(7).public_key)
    before = get_account(b.chain.state, to).balance
    b.commit([b.transfer(k, to, 3 * COIN)])
    assert get_account(b.chain.state, to).balance == before + 3 * COIN
    assert stateless_rejection(b, b.transfer(k, address_of(k.public_key))) is Reason.SELF_TRANSFER
    b.nonces.clear()
    huge = b.transfer(k, to, 10**9 * COIN)
    assert rejection(b, huge) is Reason.INSUFFICIENT_FUNDS
    with pytest.raises(TxError) as err:
        zero = unpack(b.transfer(k, to).raw)
        zero[6][1] = 0
        decode_tx(pack(zero), b.chain.params)
    assert err.value.reason in (Reason.ZERO_AMOUNT, Reason.BAD_SIGNATURE)


# -- nodes ---------------------------------------------------------------------------------


def test_register_rejections(b: Builder) -> None:
    owner, hot = funded_key(), SigningKey(b"\x21" * 32)
    same_key = b.node_register(owner, owner)
    assert rejection(b, same_key) is Reason.BAD_FIELD
    b.nonces.clear()
    taken = b.node_register(owner, node_hot_key(0))
    assert rejection(b, taken) is Reason.NODE_KEY_IN_USE
    b.nonces.clear()
    weak = b.node_register(owner, hot, Tier.STRATUS, hardware=Hardware(1, 100, 1))
    assert rejection(b, weak) is Reason.BENCHMARK_BELOW_TIER
    b.nonces.clear()
    # red23d #4: a cumulus node may not declare a data centre (it caps what it offers apps)
    cap = b.chain.params.cumulus
    for hardware in (
        Hardware(cap.max_cores + 1, cap.max_ram_mb, cap.max_disk_gb),
        Hardware(cap.max_cores, cap.max_ram_mb + 1, cap.max_disk_gb),
        Hardware(cap.max_cores, cap.max_ram_mb, cap.max_disk_gb + 1),
    ):
        big = b.node_register(owner, hot, Tier.CUMULUS, hardware=hardware)
        assert rejection(b, big) is Reason.HARDWARE_ABOVE_TIER
        b.nonces.clear()
    poor = SigningKey(b"\x22" * 32)
    b.commit([b.transfer(owner, address_of(poor.public_key), 100 * COIN)])
    broke = b.node_register(poor, hot)
    assert rejection(b, broke) is Reason.INSUFFICIENT_FUNDS
    for endpoint, country, continent in [
        ("no-port", "DE", "EU"),
        ("a:1", "de", "EU"),
        ("a:1", "DE", "XX"),
        ("a:70000", "DE", "EU"),
    ]:
        bad = b.node_register(owner, hot, endpoint=endpoint, country=country, continent=continent)
        assert stateless_rejection(b, bad) is Reason.BAD_FIELD
    fields = unpack(b.node_register(owner, hot, endpoint="a:1").raw)
    fields[6][1] = b"\x02" + b"\x00" * 32  # not on the curve
    with pytest.raises(TxError) as err:
        decode_tx(pack(fields), b.chain.params)
    assert err.value.reason is Reason.BAD_PUBKEY


def test_node_lifecycle_confirm_pay_unbond(b: Builder) -> None:
    owner, hot = funded_key(), SigningKey(b"\x31" * 32)
    start = get_account(b.chain.state, address_of(owner.public_key)).balance
    node_id = register(b, owner, hot)
    collateral = b.chain.params.cumulus.collateral
    assert (
        get_account(b.chain.state, address_of(owner.public_key)).balance
        == start - collateral - 1_000
    )
    # only the node key confirms, with a benchmark that meets the tier
    assert (
        rejection(b, b.tx(owner, NodeConfirm(node_id, GOOD_BENCH, "x"), fee=0)) is Reason.NOT_OWNER
    )
    b.nonces.clear()
    weak = replace(GOOD_BENCH, cores=0, ram_mb=1)
    assert (
        rejection(b, b.tx(hot, NodeConfirm(node_id, weak, "x"), fee=0))
        is Reason.BENCHMARK_BELOW_TIER
    )
    b.nonces.clear()
    unknown = b.tx(hot, NodeConfirm(b"\x00" * 20, GOOD_BENCH, "x"), fee=0)
    assert rejection(b, unknown) is Reason.UNKNOWN_NODE
    b.nonces.clear()
    b.commit([confirm(b, hot, node_id)])
    node = get_node(b.chain.state, node_id)
    assert node is not None and node.status is NodeStatus.CONFIRMED
    assert rejection(b, confirm(b, hot, node_id)) is Reason.CONFIRM_TOO_SOON
    b.nonces.clear()
    # the only Cumulus node heads its tier's queue: paid its share from the block that
    # confirmed it on, every block
    b.commit()
    b.commit()
    node = get_node(b.chain.state, node_id)
    assert node is not None and node.paid_total == 3 * b.chain.params.cumulus.reward
    # unregister: owner only, once; collateral back after the unbonding period
    assert rejection(b, b.tx(owner_key(5), NodeUnregister(node_id))) is Reason.NOT_OWNER
    b.nonces.clear()
    b.commit([b.tx(owner, NodeUnregister(node_id))])
    assert rejection(b, b.tx(owner, NodeUnregister(node_id))) is Reason.NODE_WRONG_STATE
    b.nonces.clear()
    assert rejection(b, confirm(b, hot, node_id)) is Reason.NODE_WRONG_STATE
    b.nonces.clear()
    assert rejection(b, b.node_update(owner, node_id, endpoint="a:1")) is Reason.NODE_WRONG_STATE
    b.nonces.clear()
    before = get_account(b.chain.state, address_of(owner.public_key)).balance
    for _ in range(b.chain.params.unbonding_period):
        b.commit()
    assert get_node(b.chain.state, node_id) is None
    assert get_account(b.chain.state, address_of(owner.public_key)).balance == before + collateral
    assert rejection(b, b.tx(owner, NodeUnregister(node_id))) is Reason.UNKNOWN_NODE


def test_update_rejections_and_key_rotation(b: Builder) -> None:
    owner, hot, new_hot = funded_key(), SigningKey(b"\x41" * 32), SigningKey(b"\x42" * 32)
    node_id = register(b, owner, hot)
    assert rejection(b, b.node_update(owner, b"\x01" * 20)) is Reason.UNKNOWN_NODE
    b.nonces.clear()
    assert rejection(b, b.node_update(owner_key(5), node_id)) is Reason.NOT_OWNER
    b.nonces.clear()
    assert rejection(b, b.node_update(owner, node_id, node_hot_key(1))) is Reason.NODE_KEY_IN_USE
    b.nonces.clear()
    assert rejection(b, b.node_update(owner, node_id, owner)) is Reason.BAD_FIELD
    b.nonces.clear()
    b.commit([b.node_update(owner, node_id, new_hot, endpoint="node.example:16127", country="FR")])
    node = get_node(b.chain.state, node_id)
    assert node is not None and (node.endpoint, node.country, node.node_key) == (
        "node.example:16127",
        "FR",
        new_hot.public_key,
    )
    assert get_node_by_key(b.chain.state, hot.public_key) is None
    assert rejection(b, confirm(b, hot, node_id)) is Reason.NOT_OWNER
    b.nonces.clear()
    b.commit([confirm(b, new_hot, node_id)])


def test_expiry_after_missed_windows_and_recovery(b: Builder) -> None:
    owner, hot = funded_key(), SigningKey(b"\x51" * 32)
    node_id = register(b, owner, hot)
    b.commit([confirm(b, hot, node_id)])
    window = b.chain.params.confirm_window
    while b.chain.height < 3 * window:
        b.commit()
    node = get_node(b.chain.state, node_id)
    assert node is not None and node.status is NodeStatus.EXPIRED
    expired = [
        e
        for h in range(2 * window - 1, 2 * window + 2)
        for e in b.chain.events(h)
        if e.kind.name == "NODE_EXPIRED" and e.fields[0] == node_id
    ]
    assert expired, "expiry happens at the first block of the second window after the confirm"
    b.commit([confirm(b, hot, node_id)])
    node = get_node(b.chain.state, node_id)
    assert node is not None and node.status is NodeStatus.CONFIRMED


def test_uptime_attest_rejections_and_down_by_quorum(b: Builder) -> None:
    state, params = b.chain.state, b.chain.params
    while b.chain.height < params.epoch_length:  # the first epoch boundary builds a ring
        b.commit()
    epoch = state.get(META).epoch
    ids = {i: get_node_by_key(state, node_hot_key(i).public_key).node_id for i in range(4)}  # type: ignore[union-attr]
    targets = {i: targets_of(state, ids[i], params.checkers_per_node) for i in range(4)}
    victim = targets[0][0]
    victim_index = next(i for i in range(4) if ids[i] == victim)
    checkers = [i for i in range(4) if victim in targets[i]]
    assert len(checkers) == 3
    down = UptimeReport(victim, False, 0)
    # rejections
    assert (
        rejection(b, b.tx(node_hot_key(0), UptimeAttest(b"\x00" * 20, epoch, (down,)), fee=0))
        is Reason.UNKNOWN_NODE
    )
    b.nonces.clear()
    assert (
        rejection(b, b.tx(node_hot_key(1), UptimeAttest(ids[0], epoch, (down,)), fee=0))
        is Reason.NOT_OWNER
    )
    b.nonces.clear()
    c0 = checkers[0]
    assert (
        rejection(b, b.tx(node_hot_key(c0), UptimeAttest(ids[c0], epoch + 1, (down,)), fee=0))
        is Reason.WRONG_EPOCH
    )
    b.nonces.clear()
    own = UptimeReport(ids[c0], False, 0)
    assert (
        rejection(b, b.tx(node_hot_key(c0), UptimeAttest(ids[c0], epoch, (own,)), fee=0))
        is Reason.NOT_A_CHECKER
    )
    b.nonces.clear()
    # down reports from more than 2/3 of its checkers (all 3 of 3) mark the victim DOWN
    # in the block carrying the last one; 2 of 3 are not enough
    b.commit(
        [b.tx(node_hot_key(checkers[0]), _attest(state, ids[checkers[0]], epoch, victim), fee=0)]
    )
    assert get_node(state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]
    again = b.tx(node_hot_key(checkers[0]), _attest(state, ids[checkers[0]], epoch, victim), fee=0)
    assert rejection(b, again) is Reason.ALREADY_ATTESTED
    b.nonces.clear()
    b.commit(
        [b.tx(node_hot_key(checkers[1]), _attest(state, ids[checkers[1]], epoch, victim), fee=0)]
    )
    assert get_node(state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]
    b.commit(
        [b.tx(node_hot_key(checkers[2]), _attest(state, ids[checkers[2]], epoch, victim), fee=0)]
    )
    node = get_node(state, victim)
    assert node is not None and node.status is NodeStatus.DOWN
    assert any(e.kind.name == "NODE_DOWN" for e in b.chain.events(b.chain.height))
    # a down node is not paid; it keeps its checker duty for the epoch it went down in
    # (the ring fixed it), and has none once the next ring is built without it
    paid = node.paid_total
    assert state.get(META).epoch == epoch
    b.commit([b.tx(node_hot_key(victim_index), _attest(state, victim, epoch, ids[c0]), fee=0)])
    node = get_node(state, victim)
    assert node is not None and node.paid_total == paid and node.last_attest_epoch == epoch + 1
    while state.get(META).epoch == epoch:
        b.commit()
    vt = targets[victim_index]
    bad = b.tx(
        node_hot_key(victim_index),
        UptimeAttest(victim, epoch + 1, (UptimeReport(vt[0], True, 1),)),
        fee=0,
    )
    assert rejection(b, bad) is Reason.NODE_WRONG_STATE
    b.nonces.clear()
    # it comes back by confirming, once its down cooldown is over
    while b.chain.height + 1 < node.status_height + params.down_cooldown:
        b.commit()
    b.commit([confirm(b, node_hot_key(victim_index), victim)])
    assert get_node(state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]


def _attest(state: State, checker: bytes, epoch: int, victim: bytes) -> UptimeAttest:
    """`checker`'s attestation: `victim` down, its other targets up (an attestation covers
    every target of its checker)."""
    k = devnet_params().checkers_per_node
    reports = tuple(UptimeReport(t, t != victim, 0) for t in sorted(targets_of(state, checker, k)))
    return UptimeAttest(checker, epoch, reports)


def _mark_down(b: Builder) -> tuple[int, bytes]:
    """Have all its checkers (a quorum: more than 2/3) report one genesis node down;
    return its index and id."""
    state, params = b.chain.state, b.chain.params
    while b.chain.height < params.epoch_length:  # the first epoch boundary builds a ring
        b.commit()
    epoch = state.get(META).epoch
    ids = [get_node_by_key(state, node_hot_key(i).public_key).node_id for i in range(4)]  # type: ignore[union-attr]
    victim = targets_of(state, ids[0], params.checkers_per_node)[0]
    checkers = [
        i for i in range(4) if victim in targets_of(state, ids[i], params.checkers_per_node)
    ]
    b.commit(
        [b.tx(node_hot_key(i), _attest(state, ids[i], epoch, victim), fee=0) for i in checkers]
    )
    assert get_node(state, victim).status is NodeStatus.DOWN  # type: ignore[union-attr]
    return ids.index(victim), victim


def test_down_node_confirming_in_the_next_block_is_refused(b: Builder) -> None:
    """Issue 26 #5: a node marked DOWN confirmed again in the very next block, fee-free,
    and was paid and placed as if nothing had happened. Now it sits out `down_cooldown`
    blocks: its confirmation is refused with `down_cooldown` by block execution and by
    mempool admission alike, and accepted once the cooldown is over."""
    index, victim = _mark_down(b)
    state, params = b.chain.state, b.chain.params
    down_at = get_node(state, victim).status_height  # type: ignore[union-attr]
    early = confirm(b, node_hot_key(index), victim)
    assert rejection(b, early) is Reason.DOWN_COOLDOWN
    with pytest.raises(TxError) as refused:
        check_fee_free(state, params, b.chain.height + 1, early)
    assert refused.value.reason is Reason.DOWN_COOLDOWN
    b.nonces.clear()
    while b.chain.height + 2 < down_at + params.down_cooldown:
        b.commit()
    assert rejection(b, confirm(b, node_hot_key(index), victim)) is Reason.DOWN_COOLDOWN
    b.nonces.clear()
    b.commit()
    b.commit([confirm(b, node_hot_key(index), victim)])
    assert get_node(state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]


def test_reconfirmed_node_is_checked_from_the_next_epoch(b: Builder) -> None:
    """Issue 26 #5: a node re-confirmed after an epoch boundary is in no ring for the rest
    of that epoch. The ring of every epoch is drawn from the nodes confirmed at its start:
    the node has its full set of checkers from the next epoch on, and they can mark it
    down again."""
    index, victim = _mark_down(b)
    state, params = b.chain.state, b.chain.params
    down_at = get_node(state, victim).status_height  # type: ignore[union-attr]
    while b.chain.height + 1 < down_at + params.down_cooldown:
        b.commit()
    b.commit([confirm(b, node_hot_key(index), victim)])
    while b.chain.height % params.epoch_length:
        b.commit()
    b.commit()  # the next epoch's first block drew the ring
    checkers = checkers_of(state, victim, params.checkers_per_node)
    assert len(checkers) == min(params.checkers_per_node, 3)
    epoch = state.get(META).epoch
    b.commit(
        [
            b.tx(hot, _attest(state, node_id, epoch, victim), fee=0)
            for hot, node_id in (
                (k, get_node_by_key(state, k.public_key).node_id)  # type: ignore[union-attr]
                for k in (node_hot_key(i) for i in range(4))
            )
            if node_id in checkers
        ]
    )
    assert get_node(state, victim).status is NodeStatus.DOWN  # type: ignore[union-attr]


def _equivocation(key: SigningKey, chain_id: str, height: int) -> Evidence:
    a = Vote.create(key, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(key, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return Evidence(*evidence_pair(a, c))


def test_evidence_slashes_and_jails(b: Builder) -> None:
    chain_id = b.chain.params.chain_id
    for _ in range(3):
        b.commit()
    reporter = funded_key()
    offender = node_hot_key(3)
    node = get_node_by_key(b.chain.state, offender.public_key)
    assert node is not None
    # stateless: votes that do not conflict, or are not validly signed
    same = Vote.create(offender, chain_id, VoteType.PREVOTE, 2, 0, b"\x01" * 32)
    assert stateless_rejection(b, b.tx(reporter, Evidence(same, same))) is Reason.BAD_EVIDENCE_VOTES
    b.nonces.clear()
    other_chain = _equivocation(offender, "other", 2)
    assert stateless_rejection(b, b.tx(reporter, other_chain)) is Reason.BAD_EVIDENCE_VOTES
    b.nonces.clear()
    future = _equivocation(offender, chain_id, 99)
    assert rejection(b, b.tx(reporter, future)) is Reason.BAD_EVIDENCE
    b.nonces.clear()
    stranger = _equivocation(SigningKey(b"\x61" * 32), chain_id, 2)
    assert rejection(b, b.tx(reporter, stranger)) is Reason.UNKNOWN_VALIDATOR
    b.nonces.clear()
    b.commit([b.tx(reporter, _equivocation(offender, chain_id, 2))])
    slashed = get_node(b.chain.state, node.node_id)
    assert slashed is not None and slashed.status is NodeStatus.JAILED
    burned = node.collateral * b.chain.params.slash_bps // 10_000
    assert slashed.collateral == node.collateral - burned
    assert (
        rejection(b, b.tx(reporter, _equivocation(offender, chain_id, 2)))
        is Reason.DUPLICATE_EVIDENCE
    )
    b.nonces.clear()
    assert rejection(b, confirm(b, offender, node.node_id)) is Reason.NODE_WRONG_STATE
    b.nonces.clear()
    old = replace(b.chain.params, evidence_max_age=1)
    b.chain.params = old
    assert (
        rejection(b, b.tx(reporter, _equivocation(node_hot_key(2), chain_id, 1)))
        is Reason.EVIDENCE_TOO_OLD
    )


# -- byzantine node keys (issue 17 #2, #6b) ------------------------------------------------


def test_key_rotation_does_not_escape_slashing(b: Builder) -> None:
    """A validator equivocates, then its owner rotates the node key (which deletes the old
    key from the key -> node index) and waits for the next epoch. The evidence still
    finds the node through the key history and the validator set of the vote's height."""
    chain_id, params = b.chain.params.chain_id, b.chain.params
    b.commit()
    b.commit()
    offender, owner, fresh = node_hot_key(3), owner_key(3), SigningKey(b"\x71" * 32)
    node = get_node_by_key(b.chain.state, offender.public_key)
    assert node is not None
    evidence = _equivocation(offender, chain_id, 2)
    b.commit([b.node_update(owner, node.node_id, fresh)])
    rotated = get_node(b.chain.state, node.node_id)
    assert rotated is not None and rotated.node_key == fresh.public_key
    # the set still holds the old key until the epoch ends: it still votes
    assert b.chain.validators().power_of(offender.public_key) > 0
    while b.chain.height < params.epoch_length + 2:  # the next epoch's set has the new key
        b.commit()
    assert b.chain.validators().power_of(offender.public_key) == 0
    assert get_node_by_key(b.chain.state, offender.public_key) is None
    b.commit([b.tx(funded_key(), evidence)])
    slashed = get_node(b.chain.state, node.node_id)
    assert slashed is not None and slashed.status is NodeStatus.JAILED
    assert slashed.collateral == node.collateral - node.collateral * params.slash_bps // 10_000


def test_evidence_against_a_key_that_was_not_validating_then_is_refused(b: Builder) -> None:
    """Votes signed before a key became a validator's key prove nothing against its node."""
    owner, hot = funded_key(), SigningKey(b"\x72" * 32)
    for _ in range(3):
        b.commit()
    register(b, owner, hot)
    early = _equivocation(hot, b.chain.params.chain_id, 2)
    assert rejection(b, b.tx(owner_key(5), early)) is Reason.UNKNOWN_VALIDATOR


def test_retired_key_history_is_pruned_after_the_evidence_age(b: Builder) -> None:
    """Key records and validator sets are kept for the evidence age, then dropped in the
    block the rules name, the same on every node (they are in the state root)."""
    b.chain.params = replace(b.chain.params, evidence_max_age=3)
    params = b.chain.params
    owner, old, new = owner_key(2), node_hot_key(2), SigningKey(b"\x73" * 32)
    node = get_node_by_key(b.chain.state, old.public_key)
    assert node is not None
    b.commit([b.node_update(owner, node.node_id, new)])
    retired = get_key_record(b.chain.state, old.public_key)
    assert retired is not None and retired.retired_height == 1
    # a kept key cannot be named again, not even by its own node
    assert rejection(b, b.node_update(owner, node.node_id, old)) is Reason.NODE_KEY_IN_USE
    b.nonces.clear()
    deadline = 1 + params.evidence_max_age + 3 * params.epoch_length + 1
    while get_key_record(b.chain.state, old.public_key) is not None:
        assert b.chain.height < deadline, "the retired key was never forgotten"
        b.commit()
    # no kept set holds the key any more, and the oldest kept set is recent enough
    kept = kept_validator_sets(b.chain.state)
    assert all(not s.power_of(old.public_key) for _, s in kept)
    assert len(kept) <= 2
    b.commit([b.node_update(owner, node.node_id, old)])  # reusable once forgotten
    current = get_node(b.chain.state, node.node_id)
    assert current is not None and current.node_key == old.public_key


def test_node_key_without_proof_of_possession_is_refused(b: Builder) -> None:
    """A register or key rotation must carry the named key's signature over this owner's
    tx (its nonce included); anything else is refused before it reaches a block."""
    owner, hot, other = funded_key(), SigningKey(b"\x74" * 32), SigningKey(b"\x75" * 32)
    chain_id = b.chain.params.chain_id
    good = b.node_register(owner, hot)
    b.nonces.clear()
    forged = replace(
        good.payload, key_proof=prove_node_key(other, chain_id, owner.public_key, good.nonce)
    )
    assert stateless_rejection(b, b.tx(owner, forged)) is Reason.BAD_KEY_PROOF
    b.nonces.clear()
    # a proof for another nonce (an old tx of the same owner) does not carry over
    stale = replace(
        good.payload, key_proof=prove_node_key(hot, chain_id, owner.public_key, good.nonce + 1)
    )
    assert stateless_rejection(b, b.tx(owner, stale)) is Reason.BAD_KEY_PROOF
    b.nonces.clear()
    # nor one made on another chain
    elsewhere = replace(
        good.payload, key_proof=prove_node_key(hot, "other", owner.public_key, good.nonce)
    )
    assert stateless_rejection(b, b.tx(owner, elsewhere)) is Reason.BAD_KEY_PROOF
    b.nonces.clear()
    node_id = register(b, owner, hot)
    rotate = b.node_update(owner, node_id, other)
    b.nonces.clear()
    unproven = replace(rotate.payload, new_key_proof=bytes(64))
    assert stateless_rejection(b, b.tx(owner, unproven)) is Reason.BAD_KEY_PROOF
    b.nonces.clear()
    # a proof for another node of the same owner does not carry over either
    wrong_node = replace(
        rotate.payload,
        new_key_proof=prove_node_key(other, chain_id, owner.public_key, rotate.nonce, b"\x01" * 20),
    )
    assert stateless_rejection(b, b.tx(owner, wrong_node)) is Reason.BAD_KEY_PROOF
    b.nonces.clear()
    b.commit([b.node_update(owner, node_id, other)])


def test_node_key_squatting_is_refused(b: Builder) -> None:
    """A watcher copies a pending register's node key and proof into its own register to
    front-run it: the proof names the first owner, so the copy is refused; and a key
    once used by a node cannot be taken by another while its history is kept."""
    alice, mallory, hot = funded_key(), owner_key(5), SigningKey(b"\x76" * 32)
    honest = b.node_register(alice, hot)
    copied = b.tx(mallory, honest.payload)  # same key and proof, Mallory's signature and nonce
    assert stateless_rejection(b, copied) is Reason.BAD_KEY_PROOF
    b.nonces.clear()
    # even at the same nonce, the proof is Alice's, not Mallory's
    at_same_nonce = Tx.create(mallory, b.chain.params.chain_id, honest.nonce, 1_000, honest.payload)
    assert stateless_rejection(b, at_same_nonce) is Reason.BAD_KEY_PROOF
    b.commit([honest])
    node = get_node_by_key(b.chain.state, hot.public_key)
    assert node is not None and node.owner == address_of(alice.public_key)
    # Alice rotates away; the key, even with its holder's consent, stays hers meanwhile
    b.commit([b.node_update(alice, node.node_id, SigningKey(b"\x77" * 32))])
    assert rejection(b, b.node_register(mallory, hot)) is Reason.NODE_KEY_IN_USE


def test_unbonding_does_not_escape_slashing(b: Builder) -> None:
    """A validator equivocates and unregisters at once, hoping its collateral returns
    before the evidence lands. Evidence expires before the collateral can return (a
    genesis rule), so evidence at its maximum age still burns it."""
    params = b.chain.params
    with pytest.raises(GenesisError):
        replace(params, evidence_max_age=params.unbonding_period).validate()
    b.commit()
    offender, owner = node_hot_key(3), owner_key(3)
    node = get_node_by_key(b.chain.state, offender.public_key)
    assert node is not None
    vote_height = b.chain.height
    evidence = _equivocation(offender, params.chain_id, vote_height)
    b.commit([b.tx(owner, NodeUnregister(node.node_id))])
    while b.chain.height + 1 < vote_height + params.evidence_max_age:
        b.commit()
    b.commit([b.tx(funded_key(), evidence)])
    slashed = get_node(b.chain.state, node.node_id)
    assert slashed is not None and slashed.status is NodeStatus.UNBONDING
    assert slashed.collateral == node.collateral - node.collateral * params.slash_bps // 10_000
    before = get_account(b.chain.state, address_of(owner.public_key)).balance
    while get_node(b.chain.state, node.node_id) is not None:
        b.commit()
    returned = get_account(b.chain.state, address_of(owner.public_key)).balance - before
    assert returned == slashed.collateral  # what is left after the burn, no more


def test_equivocating_at_many_heights_is_slashed_once(b: Builder) -> None:
    """Issue 26 #6: a faulty signer equivocates at several heights; each offence had its
    own id, so the same fault burned the collateral again and again. The first slashing
    tombstones the key: evidence of any earlier vote of it is refused `key_tombstoned`
    (in a block and at mempool admission), and the node loses `slash_bps` once."""
    params = b.chain.params
    for _ in range(3):
        b.commit()
    offender = node_hot_key(3)
    node = get_node_by_key(b.chain.state, offender.public_key)
    assert node is not None
    first, second = (_equivocation(offender, params.chain_id, h) for h in (2, 3))
    b.commit([b.tx(funded_key(), first)])
    slashed = get_node(b.chain.state, node.node_id)
    assert slashed is not None
    assert slashed.collateral == node.collateral - node.collateral * params.slash_bps // 10_000
    again = b.tx(funded_key(), second)
    assert rejection(b, again) is Reason.KEY_TOMBSTONED
    with pytest.raises(TxError) as refused:
        check_fee_free(b.chain.state, params, b.chain.height + 1, again)
    assert refused.value.reason is Reason.KEY_TOMBSTONED
    assert get_node(b.chain.state, node.node_id) == slashed


def test_tombstoned_key_cannot_come_back(b: Builder) -> None:
    """Issue 26 #6: once jailed time is served, a slashed key confirmed its node again
    while its earlier votes could still be evidence. Until they expire the key is
    tombstoned: no NODE_CONFIRM signed by it and no other node registering it; the owner
    rotates to a fresh key (and tops the collateral up) to come back."""
    b.chain.params = replace(b.chain.params, jail_period=2)
    params = b.chain.params
    b.commit()
    offender, owner = node_hot_key(3), owner_key(3)
    node = get_node_by_key(b.chain.state, offender.public_key)
    assert node is not None
    b.commit([b.tx(funded_key(), _equivocation(offender, params.chain_id, 1))])
    slashed = get_node(b.chain.state, node.node_id)
    assert slashed is not None and slashed.status is NodeStatus.JAILED
    shortfall = params.stratus.collateral - slashed.collateral
    b.commit([b.node_update(owner, node.node_id, top_up=shortfall)])
    while b.chain.height < slashed.jailed_until:
        b.commit()
    assert rejection(b, confirm(b, offender, node.node_id)) is Reason.KEY_TOMBSTONED
    b.nonces.clear()
    assert rejection(b, b.node_register(funded_key(), offender)) is Reason.NODE_KEY_IN_USE
    b.nonces.clear()
    fresh = SigningKey(b"\x79" * 32)
    b.commit([b.node_update(owner, node.node_id, fresh)])
    b.commit([confirm(b, fresh, node.node_id)])
    back = get_node(b.chain.state, node.node_id)
    assert back is not None and back.status is NodeStatus.CONFIRMED


def test_slashed_stratus_node_is_out_of_its_tier_until_topped_up(b: Builder) -> None:
    """Issue 26 #8: a slashed Stratus node served its jail, confirmed again and was paid
    and weighted as a full Stratus node on 95 % of the collateral. It now stays out of
    its tier (its NODE_CONFIRM refused `below_tier_collateral`: not paid, not a validator,
    not placed) until its owner tops the collateral up with NODE_UPDATE, which never
    takes the collateral beyond the tier's."""
    params = b.chain.params
    b.commit()
    offender, owner = node_hot_key(3), owner_key(3)
    node = get_node_by_key(b.chain.state, offender.public_key)
    assert node is not None and node.tier is Tier.STRATUS
    b.commit([b.tx(funded_key(), _equivocation(offender, params.chain_id, 1))])
    slashed = get_node(b.chain.state, node.node_id)
    assert slashed is not None
    while b.chain.height < max(
        slashed.jailed_until, slashed.status_height + params.evidence_max_age + 1
    ):
        b.commit()
    assert rejection(b, confirm(b, offender, node.node_id)) is Reason.BELOW_TIER_COLLATERAL
    b.nonces.clear()
    out = get_node(b.chain.state, node.node_id)
    assert out is not None and out.status is NodeStatus.JAILED
    assert out.paid_total == slashed.paid_total
    assert not select_validators(b.chain.state, params.max_validators).power_of(offender.public_key)
    shortfall = params.stratus.collateral - slashed.collateral
    too_much = b.node_update(owner, node.node_id, top_up=shortfall + 1)
    assert rejection(b, too_much) is Reason.TOP_UP_TOO_LARGE
    b.nonces.clear()
    address = address_of(owner.public_key)
    before = get_account(b.chain.state, address).balance
    b.commit([b.node_update(owner, node.node_id, top_up=shortfall)])
    assert get_account(b.chain.state, address).balance == before - shortfall - FEE
    b.commit([confirm(b, offender, node.node_id)])
    back = get_node(b.chain.state, node.node_id)
    assert back is not None and back.status is NodeStatus.CONFIRMED
    assert back.collateral == params.stratus.collateral


def test_key_history_survives_a_restart(tmp_path: Path) -> None:
    """Key records and validator sets are state like any other: written with the block,
    loaded on restart, and covered by the state root."""
    chain = open_chain(tmp_path / "home")
    b = Builder(chain)
    old, new = node_hot_key(1), SigningKey(b"\x78" * 32)
    node = get_node_by_key(chain.state, old.public_key)
    assert node is not None
    b.commit([b.node_update(owner_key(1), node.node_id, new)])
    while chain.height <= chain.params.epoch_length:
        b.commit()
    root, record = chain.tree.root, get_key_record(chain.state, old.public_key)
    sets = kept_validator_sets(chain.state)
    assert record is not None and record.retired_height == 1 and len(sets) == 2
    chain.close()
    again = open_chain(tmp_path / "home")
    try:
        assert again.tree.root == root
        assert get_key_record(again.state, old.public_key) == record
        assert kept_validator_sets(again.state) == sets
    finally:
        again.close()


def test_every_tx_kind_is_applied_through_the_handler_table() -> None:
    """One dispatch for every kind, TRANSFER included (it no longer bypasses the table): a
    kind without a handler would fail every block carrying it."""
    assert set(HANDLERS) == set(TxKind)
