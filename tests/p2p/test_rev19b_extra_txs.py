"""Review rev19b: the store of checked txs let go, kept for compact-proposal rebuilds
(diag19, `fluxchain/node/extra_txs.py`)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.extra_txs import ExtraTxs
from fluxchain.node.home import Home
from fluxchain.node.mempool import MempoolLimits
from fluxchain.node.node import Node
from tests.integration.harness import Devnet
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

KEPT = 16  # the store's count bound, shrunk from 32,768 so that the test is quick


def test_rev19b_unfunded_junk_does_not_push_useful_txs_out_of_the_extra_store(
    tmp_path: Path,
) -> None:
    """Attack: a peer signs txs from a fresh key that holds nothing (free to make, never
    includable while the account is empty) and pushes them to a node whose pool is full:
    each is refused for a reason that "can clear" (mempool_full, or insufficient funds /
    nonce too far, parked and pushed out past 16 a sender) and goes into the FIFO extra
    store, pushing out the funded txs it was refused under the flood that the next
    proposals name. At the TX rate (5,000/s a peer) one peer flushes the 32,768 entries
    in ~7 s for the price of signatures.
    User sees: under a flood, compact proposals needing fetches again (issue 24's lost
    rounds) while a peer sends unfunded txs.
    Fix direction: keep only txs a block could hold now (sender funded for it, nonce in
    the pool's window), or evict per origin as parking does (`TxAdmission._evict`: a peer
    flooding pushes out its own)."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    chain_id = devnet.genesis.chain_id
    funded = derive_key(INSECURE_TEST_MNEMONIC, account_path(4))
    own, useful = (
        Tx.create(funded, chain_id, n, 5_000, Transfer(b"\x01" * 20, COIN, b"")) for n in (0, 1)
    )
    empty = SigningKey.generate()
    junk = [
        Tx.create(empty, chain_id, n, 5_000, Transfer(b"\x02" * 20, COIN, b""))
        for n in range(2 * KEPT + 20)
    ]

    async def scenario() -> None:
        await node.start()
        try:
            service = node.service
            service.extra = ExtraTxs(max_txs=KEPT)
            service.mempool.limits = MempoolLimits(max_txs=1)
            service.submit(own.raw)  # the node's own client fills the pool
            for tx in (useful, *junk):
                if tx is junk[0]:
                    assert service.extra.get(useful.id) == useful.raw  # kept, as designed
                with contextlib.suppress(TxError):  # refused: what the flood is for
                    service.submit(tx.raw, from_peer=True, peer="p" * 64)
            assert service.extra.get(useful.id) == useful.raw, (
                "a funded tx refused for a full pool was pushed out of the extra store "
                f"by {len(junk)} txs of an empty account"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
