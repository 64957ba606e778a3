"""Issue 24, api21 3: a tx refused `replacement_underpriced` (another tx holds its nonce in
the pool and it does not outbid it) is parked for no one: a client's was a 400 conflict
since rev20a 1, a peer's was parked. Two txs at one nonce: only one can commit, the pool
holds the one this node would propose, and parking the other only costs memory (a funded
key signs rivals of its own pooled txs at will). It is let go as a `mempool_full` tx is:
handed to the tx relay, which fetches it again when announced after its cool-down, so
it can still take the nonce if the pooled tx leaves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import FEE, Builder, funded_key, open_chain, owner_key

TO = address_of(owner_key(6).public_key)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    chain = open_chain(tmp_path / "home")
    try:
        yield chain
    finally:
        chain.close()


def _at(chain: Chain, nonce: int, amount: int, fee: int = FEE) -> Tx:
    return Tx.create(funded_key(), chain.params.chain_id, nonce, fee, Transfer(TO, amount))


def test_api21_a_peers_rival_at_a_pooled_nonce_is_not_parked(chain: Chain) -> None:
    refetched: list[bytes] = []
    service = NodeService(chain, refetch=refetched.extend)
    pooled = _at(chain, 0, 1)
    service.submit(pooled.raw)
    rivals = [_at(chain, 0, 2 + i) for i in range(20)]  # a funded key signs them at will
    for rival in rivals:
        with pytest.raises(TxError) as refused:
            service.submit(rival.raw, from_peer=True, peer="p1")
        assert refused.value.reason is Reason.REPLACEMENT_UNDERPRICED
        assert not service.admission.is_parked(rival.id)
        assert service.tx_status(rival.id).state == "rejected"
    assert pooled.id in service.mempool
    # Let go, not lost: the tx relay fetches each again when announced after a cool-down.
    assert set(refetched) >= {rival.id for rival in rivals}


def test_api21_a_client_and_a_peer_rival_are_answered_alike(chain: Chain) -> None:
    service = NodeService(chain)
    service.submit(_at(chain, 0, 1).raw)
    answers = []
    for rival, from_peer in ((_at(chain, 0, 2), False), (_at(chain, 0, 3), True)):
        with pytest.raises(TxError) as refused:
            service.submit(rival.raw, from_peer=from_peer, peer="p1")
        answers.append((refused.value.reason, service.admission.is_parked(rival.id)))
    assert answers == [(Reason.REPLACEMENT_UNDERPRICED, False)] * 2


def test_api21_a_rival_takes_the_nonce_once_the_pooled_tx_leaves(chain: Chain) -> None:
    """The pooled tx is dropped by a proposer (it no longer applies): the rival, fetched
    again from a peer, is pooled and commits."""
    service = NodeService(chain)
    b = Builder(chain)
    pooled, rival = _at(chain, 0, 1), _at(chain, 0, 2)
    service.submit(pooled.raw)
    with pytest.raises(TxError):
        service.submit(rival.raw, from_peer=True, peer="p1")
    service.note_dropped(pooled, TxError(Reason.INSUFFICIENT_FUNDS, "spent elsewhere"))
    service.submit(rival.raw, from_peer=True, peer="p2")  # fetched again: pooled
    block = b.commit(service.candidates())
    service.on_committed(block, tuple(chain.events(block.height)))
    assert service.tx_status(rival.id).state == "confirmed"


def test_api21_a_tx_replaced_by_a_higher_fee_is_not_parked(chain: Chain) -> None:
    """The replaced tx is a rival too, of the tx that outbid it: not parked."""
    service = NodeService(chain)
    cheap, dear = _at(chain, 0, 1), _at(chain, 0, 1, fee=2 * FEE)
    service.submit(cheap.raw, from_peer=True, peer="p1")
    service.submit(dear.raw, from_peer=True, peer="p2")
    assert dear.id in service.mempool and cheap.id not in service.mempool
    assert not service.admission.is_parked(cheap.id)
