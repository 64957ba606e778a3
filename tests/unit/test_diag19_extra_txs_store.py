"""The store of checked txs let go, kept for compact-proposal rebuilds (issue 24, diag19),
is bounded by count and bytes, oldest out first, so a flood only pushes out older ones."""

from __future__ import annotations

from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.extra_txs import ExtraTxs
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

CHAIN_ID = "flux-test"


def _txs(count: int, memo: bytes = b"") -> list[Tx]:
    key = derive_key(INSECURE_TEST_MNEMONIC, account_path(4))
    return [
        Tx.create(key, CHAIN_ID, n, 5_000, Transfer(b"\x01" * 20, COIN, memo)) for n in range(count)
    ]


def test_the_store_is_bounded_by_count_and_bytes_oldest_out_first() -> None:
    txs = _txs(5)
    by_count = ExtraTxs(max_txs=3, max_bytes=1 << 20)
    for tx in txs:
        by_count.add(tx)
    assert len(by_count) == 3
    assert [by_count.get(tx.id) for tx in txs] == [None, None, *(tx.raw for tx in txs[2:])]

    big = _txs(4, memo=b"m" * 200)
    size = len(big[0].raw)
    by_bytes = ExtraTxs(max_txs=100, max_bytes=2 * size)
    for tx in big:
        by_bytes.add(tx)
    assert [by_bytes.get(tx.id) is not None for tx in big] == [False, False, True, True]
    by_bytes.add(big[3])  # again: no second copy, nothing pushed out
    assert len(by_bytes) == 2
