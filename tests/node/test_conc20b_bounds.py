"""conc20b: the parked set's byte bound pushes out the origin holding the most bytes, the
block-checked set counts a tx's bytes once, and a parked tx aged out of `checked` is
unparked without a crash."""

from __future__ import annotations

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import PARKED_TXS_BYTES, TxAdmission
from fluxchain.store.chain import Chain
from tests.node.test_rev20b_parked_bytes import junk_tx
from tests.node.test_rev20b_verified_bytes import large_tx

UNFUNDED = TxError(Reason.INSUFFICIENT_FUNDS, "unfunded")


def small_tx(chain: Chain, i: int) -> Tx:
    key = SigningKey((10_000 + i).to_bytes(4, "big") * 8)
    return Tx.create(key, chain.params.chain_id, 1, 10**9, Transfer(b"\x05" * 20, 1))


def test_a_large_tx_flooder_pushes_out_its_own_parked_txs_not_a_peers_small_ones(
    chain: Chain,
) -> None:
    """An honest peer's 400 small parked txs outnumber the flooder's large ones that fit
    the byte bound (~270): past it the flooder (the most bytes, not the most txs) loses
    its own, not the peer's."""
    admission = TxAdmission(chain)
    honest = [small_tx(chain, i) for i in range(400)]
    for tx in honest:
        admission.park(tx, UNFUNDED, "honest")
    junk = [junk_tx(chain.params.chain_id, i) for i in range(1, 301)]
    for tx in junk:
        admission.park(tx, UNFUNDED, "flooder")
    assert all(admission.is_parked(tx.id) for tx in honest)
    held = sum(len(tx.raw) for tx in junk if admission.is_parked(tx.id))
    assert PARKED_TXS_BYTES - 2 * len(junk[0].raw) < held + sum(len(t.raw) for t in honest)
    assert held <= PARKED_TXS_BYTES
    assert admission.is_parked(junk[-1].id)  # the flooder's oldest went first


def test_a_parked_tx_aged_out_of_checked_is_unparked_without_a_crash(chain: Chain) -> None:
    """A parked tx (its sender never funded) becomes the oldest of `checked` as others
    pass: the next admission pushes it out of both (it raised KeyError)."""
    admission = TxAdmission(chain, capacity=3)
    parked = small_tx(chain, 0)
    admission.park(parked, UNFUNDED, "peer")
    for i in range(1, 5):
        admission.keep(small_tx(chain, i))
    assert not admission.is_parked(parked.id)
    assert parked.id not in admission.checked
    assert len(admission.checked) == 3


def test_a_block_checked_again_in_later_rounds_counts_its_bytes_once(chain: Chain) -> None:
    """A proposer's block checked in five rounds, then another block: both kept (two
    full blocks' bytes), the first not pushed out by its own bytes counted five times."""
    admission = TxAdmission(chain)
    per_block = chain.params.max_block_bytes // len(large_tx(chain, 0).raw)
    first = [large_tx(chain, n) for n in range(per_block)]
    second = [large_tx(chain, n) for n in range(per_block, 2 * per_block)]
    for _ in range(5):
        admission.note_verified(first)
    admission.note_verified(second)
    assert all(admission.verified_tx(tx.id) == tx.raw for tx in first + second)
