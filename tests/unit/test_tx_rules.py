"""Every rejection reason of every core tx kind, and the happy path of each.

App kinds (APP_*) are covered in tests/apps/.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fluxchain.core.accounts import get_account
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.nodes import get_node, get_node_by_key
from fluxchain.core.params import COIN, Tier
from fluxchain.core.records import META, NodeStatus
from fluxchain.core.tx import (
    Benchmark,
    Evidence,
    Hardware,
    NodeConfirm,
    NodeRegister,
    NodeUnregister,
    NodeUpdate,
    Transfer,
    Tx,
    UptimeAttest,
    UptimeReport,
    decode_tx,
)
from fluxchain.core.uptime import targets_of
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from tests.chainkit import Builder, funded_key, node_hot_key, open_chain, owner_key

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
    tx = b.tx(
        owner,
        NodeRegister(tier, hot.public_key, "10.0.0.1:16127", "DE", "EU", Hardware(4, 8_192, 220)),
    )
    b.commit([tx])
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
    hw = Hardware(4, 8_192, 220)
    same_key = b.tx(owner, NodeRegister(Tier.CUMULUS, owner.public_key, "a.b:1", "DE", "EU", hw))
    assert rejection(b, same_key) is Reason.BAD_FIELD
    b.nonces.clear()
    taken = b.tx(
        owner, NodeRegister(Tier.CUMULUS, node_hot_key(0).public_key, "a.b:1", "DE", "EU", hw)
    )
    assert rejection(b, taken) is Reason.NODE_KEY_IN_USE
    b.nonces.clear()
    weak = b.tx(
        owner, NodeRegister(Tier.STRATUS, hot.public_key, "a.b:1", "DE", "EU", Hardware(1, 100, 1))
    )
    assert rejection(b, weak) is Reason.BENCHMARK_BELOW_TIER
    b.nonces.clear()
    poor = SigningKey(b"\x22" * 32)
    b.commit([b.transfer(owner, address_of(poor.public_key), 100 * COIN)])
    broke = b.tx(poor, NodeRegister(Tier.CUMULUS, hot.public_key, "a.b:1", "DE", "EU", hw))
    assert rejection(b, broke) is Reason.INSUFFICIENT_FUNDS
    for endpoint, country, continent in [
        ("no-port", "DE", "EU"),
        ("a:1", "de", "EU"),
        ("a:1", "DE", "XX"),
        ("a:70000", "DE", "EU"),
    ]:
        bad = b.tx(
            owner, NodeRegister(Tier.CUMULUS, hot.public_key, endpoint, country, continent, hw)
        )
        assert stateless_rejection(b, bad) is Reason.BAD_FIELD
    fields = unpack(
        b.tx(owner, NodeRegister(Tier.CUMULUS, hot.public_key, "a:1", "DE", "EU", hw)).raw
    )
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
    assert (
        rejection(b, b.tx(owner, NodeUpdate(node_id, "a:1", "DE", "EU", b"")))
        is Reason.NODE_WRONG_STATE
    )
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
    assert (
        rejection(b, b.tx(owner, NodeUpdate(b"\x01" * 20, "a:1", "DE", "EU", b"")))
        is Reason.UNKNOWN_NODE
    )
    b.nonces.clear()
    stranger = owner_key(5)
    assert (
        rejection(b, b.tx(stranger, NodeUpdate(node_id, "a:1", "DE", "EU", b"")))
        is Reason.NOT_OWNER
    )
    b.nonces.clear()
    taken = NodeUpdate(node_id, "a:1", "DE", "EU", node_hot_key(1).public_key)
    assert rejection(b, b.tx(owner, taken)) is Reason.NODE_KEY_IN_USE
    b.nonces.clear()
    own = NodeUpdate(node_id, "a:1", "DE", "EU", owner.public_key)
    assert rejection(b, b.tx(owner, own)) is Reason.BAD_FIELD
    b.nonces.clear()
    b.commit(
        [b.tx(owner, NodeUpdate(node_id, "node.example:16127", "FR", "EU", new_hot.public_key))]
    )
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
    # a quorum (2 of 3) of down reports marks the victim DOWN in that very block
    b.commit(
        [b.tx(node_hot_key(checkers[0]), UptimeAttest(ids[checkers[0]], epoch, (down,)), fee=0)]
    )
    assert get_node(state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]
    again = b.tx(node_hot_key(checkers[0]), UptimeAttest(ids[checkers[0]], epoch, (down,)), fee=0)
    assert rejection(b, again) is Reason.ALREADY_ATTESTED
    b.nonces.clear()
    b.commit(
        [b.tx(node_hot_key(checkers[1]), UptimeAttest(ids[checkers[1]], epoch, (down,)), fee=0)]
    )
    node = get_node(state, victim)
    assert node is not None and node.status is NodeStatus.DOWN
    assert any(e.kind.name == "NODE_DOWN" for e in b.chain.events(b.chain.height))
    # a down node is not paid and cannot attest; it comes back by confirming
    paid = node.paid_total
    b.commit()
    assert get_node(state, victim).paid_total == paid  # type: ignore[union-attr]
    vt = targets[victim_index]
    bad = b.tx(
        node_hot_key(victim_index),
        UptimeAttest(victim, epoch, (UptimeReport(vt[0], True, 1),)),
        fee=0,
    )
    assert rejection(b, bad) is Reason.NODE_WRONG_STATE
    b.nonces.clear()
    b.commit([confirm(b, node_hot_key(victim_index), victim)])
    assert get_node(state, victim).status is NodeStatus.CONFIRMED  # type: ignore[union-attr]


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
    assert stateless_rejection(b, b.tx(reporter, Evidence(same, same))) is Reason.BAD_EVIDENCE
    b.nonces.clear()
    other_chain = _equivocation(offender, "other", 2)
    assert stateless_rejection(b, b.tx(reporter, other_chain)) is Reason.BAD_EVIDENCE
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
