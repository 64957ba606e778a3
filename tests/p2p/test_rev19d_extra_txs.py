"""Review rev19d: the store of checked txs let go, kept for compact-proposal rebuilds
(`fluxchain/node/extra_txs.py`, `NodeService._includable`)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.extra_txs import ExtraTxs
from fluxchain.node.home import Home
from fluxchain.node.mempool import MempoolLimits
from fluxchain.node.node import Node
from tests.integration.harness import Devnet
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

KEPT = 32  # the store's count bound, shrunk from 32,768 so that the test is quick
SYBILS = 4  # peer ids the attacker connects with (inbound slots are free to take)
VARIANTS = 40  # txs each sybil sends, all of one funded key at one nonce
HONEST = 20  # txs of a flooding honest peer refused for the full pool


def test_rev19d_one_funded_key_cannot_fill_the_extra_store_with_txs_of_one_nonce(
    tmp_path: Path,
) -> None:
    """Attack: one funded key signs any number of distinct txs at its next nonce (another
    payee or amount each: free, none is ever paid for) and a few peer ids push them to a
    node whose pool is full. Each is refused with `mempool_full` and each passes
    `_includable` (nonce in the window, balance covers the fee), so each is kept; yet a
    block can take at most one tx of a (sender, nonce). The by-origin bound only makes a
    peer push out its own: with a few sybil ids the attacker holds its share of the store
    against each honest peer, and the honest peer whose refused txs the next proposals
    name (the one flooding) is the largest origin and pushes out its own.
    User sees: under a flood, compact proposals needing fetches again (issue 24's lost
    rounds) while peers send same-nonce variants of one funded account.
    Fix direction: count kept txs by (sender, nonce): one a nonce (a higher fee replaces,
    as the pool's replace-by-fee), at most `max_per_sender` a sender, so an entry costs
    the attacker a funded account's window, not a signature."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    chain_id = devnet.genesis.chain_id
    own_key, honest_key, attacker_key = (
        derive_key(INSECURE_TEST_MNEMONIC, account_path(i)) for i in (3, 4, 5)
    )
    own = Tx.create(own_key, chain_id, 0, 5_000, Transfer(b"\x01" * 20, COIN, b""))
    honest = [
        Tx.create(honest_key, chain_id, n, 5_000, Transfer(b"\x02" * 20, COIN, b""))
        for n in range(HONEST)
    ]
    variants = [
        [
            Tx.create(
                attacker_key, chain_id, 0, 5_000, Transfer(b"\x03" * 20, COIN + s * 1000 + i, b"")
            )
            for i in range(VARIANTS)
        ]
        for s in range(SYBILS)
    ]

    async def scenario() -> None:
        await node.start()
        try:
            service = node.service
            service.extra = ExtraTxs(max_txs=KEPT)
            service.mempool.limits = MempoolLimits(max_txs=1)
            service.submit(own.raw)  # the node's own client fills the pool
            for s, txs in enumerate(variants):
                for tx in txs:
                    with contextlib.suppress(TxError):
                        service.submit(tx.raw, from_peer=True, peer=f"{s:x}" * 64)
            for tx in honest:
                with contextlib.suppress(TxError):
                    service.submit(tx.raw, from_peer=True, peer="e" * 64)
            kept_honest = sum(service.extra.get(tx.id) is not None for tx in honest)
            kept_variants = sum(
                service.extra.get(tx.id) is not None for txs in variants for tx in txs
            )
            assert kept_honest == HONEST, (
                f"the extra store ({KEPT} txs) keeps {kept_honest} of an honest peer's "
                f"{HONEST} refused txs and {kept_variants} txs of one sender at one nonce "
                f"(a block takes one) from {SYBILS} peer ids"
            )
        finally:
            await node.stop()

    asyncio.run(scenario())
