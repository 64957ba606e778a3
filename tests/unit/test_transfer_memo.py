"""A transfer's memo (issue 22): optional bytes for the payee, paid by size, and off the
wire when empty, so that every transfer signed before memos existed keeps its bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.encoding import pack, unpack
from fluxchain.core.errors import DecodeError, Reason, TxError
from fluxchain.core.params import COIN, MEMO_BYTES_PER_MIN_FEE
from fluxchain.core.tx import MAX_MEMO, Transfer, Tx, check_stateless, memo_fee
from tests.support.chain import FEE, VALIDATORS, Builder, funded_key, open_chain

PAYEE = b"\x07" * 20


def test_a_transfer_without_a_memo_encodes_as_before_memos() -> None:
    assert Transfer(PAYEE, 5).to_fields() == [PAYEE, 5]
    assert Transfer.from_fields([PAYEE, 5]) == Transfer(PAYEE, 5, b"")
    assert Transfer(PAYEE, 5, b"hi").to_fields() == [PAYEE, 5, b"hi"]


def test_an_empty_memo_written_out_is_refused_as_non_canonical() -> None:
    """One transfer, one encoding: [to, amount, b""] would be a second form of [to, amount]
    (a second tx id for the same signed intent)."""
    with pytest.raises(DecodeError) as refused:
        Transfer.from_fields([PAYEE, 5, b""])
    assert refused.value.reason is Reason.NON_CANONICAL
    key = funded_key()
    tx = Tx.create(key, "flux-devnet", 0, FEE, Transfer(PAYEE, 5))
    fields = unpack(tx.raw)
    assert fields[6] == [PAYEE, 5]  # the payload
    fields[6] = [PAYEE, 5, b""]
    with pytest.raises(DecodeError) as in_a_tx:
        Tx.decode(pack(fields), 1 << 20)
    assert in_a_tx.value.reason is Reason.NON_CANONICAL


def test_a_memo_beyond_its_bound_is_refused() -> None:
    with pytest.raises(DecodeError) as refused:
        Transfer.from_fields([PAYEE, 5, b"m" * (MAX_MEMO + 1)])
    assert refused.value.reason in (Reason.BAD_FIELD, Reason.TOO_LARGE)


def test_a_memo_is_paid_by_its_size(tmp_path: Path) -> None:
    """The minimum fee grows by one min_fee per started MEMO_BYTES_PER_MIN_FEE bytes: a
    1 KB tx pays for its bytes. Underpaid, it is refused (fee_too_low); paid, it is
    included and the payee gets the amount."""
    b = Builder(open_chain(tmp_path / "a"))
    params = b.chain.params
    memo = b"m" * (MEMO_BYTES_PER_MIN_FEE + 1)
    assert memo_fee(memo, params) == 2 * params.min_fee
    sender = funded_key(VALIDATORS)
    cheap = b.tx(sender, Transfer(PAYEE, COIN, memo), fee=params.min_fee)
    with pytest.raises(TxError) as refused:
        check_stateless(cheap, params)
    assert refused.value.reason is Reason.FEE_TOO_LOW
    b.nonces.clear()
    paid = b.tx(sender, Transfer(PAYEE, COIN, memo), fee=3 * params.min_fee)
    check_stateless(paid, params)
    block = b.commit([paid])
    assert block.txs == (paid.raw,) and not b.rejected
    assert Tx.decode(block.txs[0], 1 << 20).payload.memo == memo
