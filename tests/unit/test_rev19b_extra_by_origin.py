"""The extra-txs store counts its txs by origin, as the parked set does (rev19b 3): past
its bound a flooding peer pushes out its own txs, not another peer's or this node's."""

from __future__ import annotations

from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.extra_txs import ExtraTxs
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

CHAIN_ID = "flux-test"


def _txs(account: int, count: int) -> list[Tx]:
    key = derive_key(INSECURE_TEST_MNEMONIC, account_path(account))
    return [
        Tx.create(key, CHAIN_ID, n, 5_000, Transfer(b"\x01" * 20, COIN, b"")) for n in range(count)
    ]


def test_a_flooding_peer_pushes_out_its_own_extra_txs() -> None:
    own, honest, flood = _txs(1, 1), _txs(2, 2), _txs(3, 20)
    store = ExtraTxs(max_txs=6, max_bytes=1 << 20)
    store.add(own[0], None)
    for tx in honest:
        store.add(tx, "honest")
    for tx in flood:
        store.add(tx, "flooder")
    assert len(store) == 6
    assert all(store.get(tx.id) == tx.raw for tx in (*own, *honest))
    # The flooder keeps only its newest three: its oldest went first.
    assert [store.get(tx.id) is not None for tx in flood] == [False] * 17 + [True] * 3
