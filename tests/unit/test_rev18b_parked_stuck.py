"""rev18b: parked txs that stay parked, or leave, for the wrong reasons (review of held18b)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Evidence, Transfer, Tx
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.admission import TxAdmission
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, node_hot_key, open_chain
from tests.support.commits import commit_to
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def _unfunded(index: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, account_path(index))


def _evidence(b: Builder, reporter: SigningKey, offender: SigningKey, height: int) -> Tx:
    chain_id = b.chain.params.chain_id
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return b.tx(reporter, Evidence(*evidence_pair(a, c)), fee=0)


def test_rev18b_evidence_parked_while_a_height_ahead_is_pooled_once_that_height_comes(
    tmp_path: Path,
) -> None:
    """Attack/race: a node one height behind gets a peer's evidence of the equivocation
    being decided ahead of it: refused `bad_evidence` (beyond the height being decided),
    a reason that clears with height, so it is parked. Blocks then come that do not
    write the reporter's account (a fee-free tx's sender is rarely written), so it is
    never offered again, and every later peer copy gets the stale refusal: the node
    never pools the evidence, and the equivocator goes unpunished by every proposer that
    was a block behind. Duties refused confirm_too_soon, jailed-until, down_cooldown or
    wrong_epoch are parked the same way. Fix direction: offer parked fee-free txs again
    on every commit (they are few: one per (kind, node)), or do not park refusals that
    depend on height/node records rather than the sender's account (forget them)."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())
        b = Builder(chain)
        commit_to(service, b)
        reporter, offender = funded_key(), node_hot_key(1)
        ahead = chain.height + 2  # what a peer one height ahead is deciding
        report = _evidence(b, reporter, offender, ahead)
        with pytest.raises(TxError) as early:
            service.submit(report.raw, from_peer=True)
        assert early.value.reason is Reason.BAD_EVIDENCE
        commit_to(service, b)
        commit_to(service, b)
        assert chain.height == ahead
        # A node that never saw it early pools the very same bytes now.
        fresh = NodeService(chain, Mempool())
        fresh.submit(report.raw, from_peer=True)
        try:
            service.submit(report.raw, from_peer=True)
        except TxError as exc:
            pytest.fail(f"a peer's copy of now-valid evidence is refused: {exc.reason}")
        assert report.id in service.mempool
    finally:
        chain.close()


def test_rev18b_a_free_flood_of_unfunded_txs_does_not_push_out_an_honest_parked_tx(
    tmp_path: Path,
) -> None:
    """Attack: a peer (or API client) with no funds signs PARKED_TXS txs from fresh keys
    (free) and pushes them: each is refused insufficient_funds and parked, and the
    oldest parked are forgotten, honest ones included. Every node parked the honest
    B->C (its funding A->B not yet committed), so no node announces it again: once A->B
    commits, no node pools B->C; the user's tx is lost network-wide. Fix direction: a
    quota of parked txs per peer (and per sender), evicting from the largest holder, not
    oldest first; or never let unfunded-sender txs of one origin evict others.
    (held18c: the honest tx and the flood come from two peers, as they would: parked txs
    are counted by origin, and a peer's flood pushes out its own oldest.)"""
    chain = open_chain(tmp_path / "home")
    try:
        cap = 20  # PARKED_TXS scaled down: the attack is the same at 10,000
        admission = TxAdmission(chain, parked_capacity=cap)
        service = NodeService(chain, Mempool(), admission=admission)
        b = Builder(chain)
        chain_id = chain.params.chain_id
        funder, bob = funded_key(), _unfunded(80)
        bob_address = address_of(bob.public_key)
        pay = Tx.create(bob, chain_id, 0, 10_000, Transfer(b"\x0c" * 20, COIN, b""))
        with pytest.raises(TxError):
            service.submit(pay.raw, from_peer=True, peer="honest")  # before its funding
        assert admission.is_parked(pay.id)
        for i in range(cap):
            junk_pay = Transfer(b"\x0d" * 20, 1, b"")
            junk = Tx.create(_unfunded(200 + i), chain_id, 0, 10_000, junk_pay)
            with pytest.raises(TxError):
                service.submit(junk.raw, from_peer=True, peer="flooder")
        commit_to(service, b, [b.transfer(funder, bob_address, 10 * COIN)])
        assert pay.id in service.mempool, "the honest parked tx was pushed out by free junk"
    finally:
        chain.close()


def test_rev18b_one_senders_parked_queue_does_not_delay_another_senders_offer(
    tmp_path: Path,
) -> None:
    """Attack: parked txs have no per-sender cap, and the offer queue is first come
    first served across senders. An attacker parks PARKED_TXS txs of one sender (nonces
    past max_per_sender: nonce_too_far, free) and credits that sender 1 unit every block
    (one transfer fee): each block then offers PARKED_OFFERS of its hopeless txs (every
    one refused again) and puts every other sender's due offers behind its queue, so an
    honest parked tx whose funding committed waits PARKED_TXS / PARKED_OFFERS blocks (10)
    on every node. note_changed also re-sorts the sender's whole parked set every block,
    outside the PARKED_OFFERS bound. Fix direction: offer a sender's parked txs in nonce
    order and stop at its first refusal (a later nonce cannot pass), or round-robin the
    offers between senders; cap parked txs per sender (max_per_sender)."""
    chain = open_chain(tmp_path / "home")
    try:
        per_block = 2  # PARKED_OFFERS scaled down
        admission = TxAdmission(chain, offers_per_block=per_block)
        service = NodeService(chain, Mempool(MempoolLimits(max_per_sender=10)), admission=admission)
        b = Builder(chain)
        chain_id = chain.params.chain_id
        funder = funded_key()
        attacker, honest = _unfunded(90), _unfunded(91)
        attacker_address = address_of(attacker.public_key)
        honest_address = address_of(honest.public_key)
        for nonce in range(10, 10 + 5 * per_block):  # nonce_too_far for good at nonce 0
            tx = Tx.create(attacker, chain_id, nonce, 10_000, Transfer(b"\x0e" * 20, 1, b""))
            with pytest.raises(TxError):
                service.submit(tx.raw, from_peer=True)
        pay = Tx.create(honest, chain_id, 0, 10_000, Transfer(b"\x0f" * 20, COIN // 2, b""))
        with pytest.raises(TxError):
            service.submit(pay.raw, from_peer=True)
        commit_to(service, b, [b.transfer(funder, attacker_address, COIN)])  # opens it
        commit_to(
            service,
            b,
            [b.transfer(funder, attacker_address, 1), b.transfer(funder, honest_address, COIN)],
        )
        commit_to(service, b, [b.transfer(funder, attacker_address, 1)])
        assert pay.id in service.mempool, "the honest tx waits behind the attacker's queue"
    finally:
        chain.close()


def test_rev18b_a_tx_evicted_for_room_is_pooled_again_once_room_frees(tmp_path: Path) -> None:
    """Attack: a full pool; an attacker's higher fee evicts a user's tx (parked,
    mempool_full). The attacker's tx commits and the pool empties, but the user's sender
    account never changes (one tx, nothing sent to it), so its parked tx is never
    offered, its announcements count as held and a peer's copy gets the stale
    mempool_full: on every node that evicted it the tx is pending forever (p2p.md says
    "Not done"; security.md says "mempool_full txs are never kept"). Fix direction: offer
    parked mempool_full txs again when the pool has room after a commit (by fee), or do
    not park them (forget them, as at the door)."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool(MempoolLimits(max_txs=1)))
        b = Builder(chain)
        user, rich = funded_key(), funded_key(2)
        low = b.tx(user, Transfer(b"\x10" * 20, COIN, b""), fee=10_000)
        service.submit(low.raw, from_peer=True)
        high = b.tx(rich, Transfer(b"\x11" * 20, COIN, b""), fee=50_000)
        service.submit(high.raw, from_peer=True)
        assert low.id not in service.mempool
        commit_to(service, b, [high])
        commit_to(service, b)
        assert len(service.mempool) == 0  # room for it now
        try:
            service.submit(low.raw, from_peer=True)
        except TxError as exc:
            pytest.fail(f"a peer's copy of the evicted tx is refused: {exc.reason}")
        assert low.id in service.mempool
    finally:
        chain.close()
