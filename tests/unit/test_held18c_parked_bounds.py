"""Parked txs are bounded per sender and counted by origin, and a block's offers are
round-robin across senders, each stopping at its first refusal (held18c, rev18b 2 and 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import PARKED_PER_SENDER, TxAdmission
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.calls import counting
from tests.support.chain import Builder, funded_key, open_chain
from tests.support.commits import commit_to
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def _unfunded(index: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, account_path(index))


def _pay(service: NodeService, key: SigningKey, nonce: int, fee: int = 10_000) -> Tx:
    return Tx.create(
        key, service.chain.params.chain_id, nonce, fee, Transfer(b"\x0c" * 20, COIN, b"")
    )


def _refused(service: NodeService, tx: Tx, peer: str | None) -> None:
    with pytest.raises(TxError):
        if peer is None:
            service.submit(tx.raw)
        else:
            service.submit(tx.raw, from_peer=True, peer=peer)


def test_held18c_a_peers_flood_never_pushes_out_this_nodes_own_parked_tx(tmp_path: Path) -> None:
    """A client's B->C, posted before its funding commits, stays parked under a peer's
    flood of unfunded txs (the flooder's own oldest go), and is pooled once funded."""
    chain = open_chain(tmp_path / "home")
    try:
        admission = TxAdmission(chain, parked_capacity=4)
        refetched: list[bytes] = []
        service = NodeService(chain, Mempool(), admission=admission, refetch=refetched.extend)
        b = Builder(chain)
        bob = _unfunded(80)
        pay = _pay(service, bob, 0)
        _refused(service, pay, None)
        junk = [_pay(service, _unfunded(300 + i), 0) for i in range(10)]
        for tx in junk:
            _refused(service, tx, "flooder")
        assert admission.is_parked(pay.id)
        assert refetched == [tx.id for tx in junk[:7]]  # the flooder's oldest, told the relay
        commit_to(service, b, [b.transfer(funded_key(), address_of(bob.public_key), 10 * COIN)])
        assert pay.id in service.mempool
    finally:
        chain.close()


def test_held18c_a_sender_parks_its_lowest_nonces_only(tmp_path: Path) -> None:
    """Past PARKED_PER_SENDER a sender's highest nonce goes (it waits on the others),
    even when it came first; the relay is told to fetch it again."""
    chain = open_chain(tmp_path / "home")
    try:
        refetched: list[bytes] = []
        service = NodeService(chain, Mempool(), refetch=refetched.extend)
        poor = _unfunded(81)
        txs = [_pay(service, poor, n) for n in range(PARKED_PER_SENDER + 2)]
        for tx in txs[1:]:
            _refused(service, tx, "peer-a")
        _refused(service, txs[0], "peer-b")
        parked = [tx.nonce for tx in txs if service.admission.is_parked(tx.id)]
        assert parked == list(range(PARKED_PER_SENDER))
        assert refetched == [txs[-1].id, txs[-2].id]
        assert not any(tx.id in service.admission.checked for tx in txs[-2:])
    finally:
        chain.close()


def test_held18c_a_senders_offers_stop_at_its_first_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block that credits a sender with PARKED_PER_SENDER parked txs too little for
    its first's fee offers that one only: its later nonces cannot pass either."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())
        b = Builder(chain)
        poor = _unfunded(82)
        txs = [_pay(service, poor, n, fee=COIN) for n in range(PARKED_PER_SENDER)]
        for tx in txs:
            _refused(service, tx, "peer-a")
        adds: list[bytes] = []
        monkeypatch.setattr(service.mempool, "add", counting(adds, service.mempool.add))
        for amount in (100_000, 1, 1):  # an account's least deposit, then credits
            commit_to(service, b, [b.transfer(funded_key(), address_of(poor.public_key), amount)])
        assert adds == [txs[0].id] * 3
        assert all(service.admission.is_parked(tx.id) for tx in txs)
    finally:
        chain.close()
