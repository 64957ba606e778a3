"""pool18b: what fixing rev18c's findings must keep true around the fixes."""

from __future__ import annotations

import contextlib
from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import AppCancel, Transfer, Tx
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, open_chain
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def test_a_failing_tx_behind_a_valid_one_leaves_every_pool_when_it_becomes_next(
    tmp_path: Path,
) -> None:
    """A junk APP_CANCEL queued behind a valid transfer passes admission (only a sender's
    next nonce is dry-run); once a block commits the transfer, a non-proposer evicts it
    with the executor's reason, and the txs behind it are gapped."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        sender = derive_key(INSECURE_TEST_MNEMONIC, account_path(95))
        service.on_committed(
            b.commit([b.transfer(funded_key(), address_of(sender.public_key))]), ()
        )
        first = b.transfer(sender, b"\x03" * 20, COIN // 10)
        junk = b.tx(sender, AppCancel("no-such-app"))
        after = b.transfer(sender, b"\x03" * 20, COIN // 10)
        for t in (first, junk, after):
            service.submit(t.raw)
        assert all(t.id in service.mempool for t in (first, junk, after))
        service.on_committed(b.commit([first]), ())  # this node did not propose
        assert junk.id not in service.mempool
        assert service.tx_status(junk.id).reason == str(Reason.UNKNOWN_APP)
        assert [t.id for t in service.candidates()] == []  # `after` waits behind the gap
    finally:
        chain.close()


def test_a_gap_filled_in_the_pool_offers_the_senders_parked_txs_at_once(
    tmp_path: Path,
) -> None:
    """Past the gapped quota a sender's txs are parked; when the gap fills they are pooled
    without waiting for a block to change the sender's account."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool(MempoolLimits(max_gapped_per_sender=2)))
        b = Builder(chain)
        sender = derive_key(INSECURE_TEST_MNEMONIC, account_path(96))
        service.on_committed(
            b.commit([b.transfer(funded_key(), address_of(sender.public_key))]), ()
        )
        txs = [b.transfer(sender, b"\x05" * 20, COIN // 10) for _ in range(6)]
        for t in txs[1:]:
            with contextlib.suppress(TxError):
                service.submit(t.raw, from_peer=True, peer="p1")
        assert sum(t.id in service.mempool for t in txs) == 2  # the quota; 3 parked
        service.submit(txs[0].raw, from_peer=True, peer="p1")
        assert all(t.id in service.mempool for t in txs)
        assert len(service.candidates()) == 6
    finally:
        chain.close()


def test_a_filler_evicts_the_gapped_tail_its_balance_no_longer_covers_and_parks_it(
    tmp_path: Path,
) -> None:
    """The gap filler is covered up to its nonce; the later txs it leaves uncovered leave
    the pool, highest nonce first, and are parked (offered again when the balance grows)."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        sender = derive_key(INSECURE_TEST_MNEMONIC, account_path(97))
        fee = 10_000
        amount = COIN // 10
        spend = 4 * (fee + amount)  # four of the five txs
        service.on_committed(
            b.commit([b.transfer(funded_key(), address_of(sender.public_key), spend)]), ()
        )
        txs = [
            Tx.create(sender, chain.params.chain_id, n, fee, Transfer(b"\x05" * 20, amount))
            for n in range(5)
        ]
        for t in [txs[1], txs[2], txs[3], txs[4], txs[0]]:  # 1..4 cost all the balance
            with contextlib.suppress(TxError):
                service.submit(t.raw, from_peer=True, peer="p1")
        assert [t.id in service.mempool for t in txs] == [True, True, True, True, False]
        assert service.admission.is_parked(txs[4].id)
        assert service.tx_status(txs[4].id).reason == str(Reason.INSUFFICIENT_FUNDS)
    finally:
        chain.close()
