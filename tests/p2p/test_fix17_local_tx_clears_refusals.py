"""A tx the node admits from its own API forgets the refusals counted for it (fix17 3,
issue 22).

A tx refused for a full mempool is not fetched for a cool-down that doubles at each
refusal in a row; its count lives in its refused record, and past it in
`_refusals_before` (bounded as the records). Admitting the tx ends both when it came from
a peer (`announce`), but a tx posted to the node's own API is pushed by body, never
announced: its record and its count stayed, up to 100,000 of each beside the records, and
a later refusal of it counted on from them. Every admission path now clears them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fluxchain.core.crypto import SigningKey
from fluxchain.core.encoding import pack
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.home import Home
from fluxchain.node.mempool import MempoolLimits
from fluxchain.node.node import Node
from p2p.messages import Gossip, Kind
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _raw_peer
from tests.p2p.harness import RawPeer
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def _transfer(key: SigningKey, chain_id: str, fee: int) -> Tx:
    return Tx.create(key, chain_id, 0, fee, Transfer(b"\x01" * 20, COIN, b""))


def _counts_refusals(node: Node, tx_id: bytes) -> bool:
    """Whether the node's tx fetcher keeps a count of refusals of `tx_id`."""
    fetcher = node.network._tx_fetch
    return tx_id in fetcher._refused or tx_id in fetcher._refusals_before


@contextlib.asynccontextmanager
async def refused_for_a_full_mempool(tmp_path: Path) -> AsyncIterator[tuple[Node, RawPeer, Tx]]:
    """A started devnet node whose one-tx mempool is full, a raw peer, and the tx that
    peer pushed to it, refused for the full mempool (room is still short on return)."""
    devnet = Devnet(tmp_path / "net")
    node = Node(Home(devnet.homes[0]))
    chain_id = devnet.genesis.chain_id
    first = _transfer(derive_key(INSECURE_TEST_MNEMONIC, account_path(4)), chain_id, 10_000)
    refused = _transfer(derive_key(INSECURE_TEST_MNEMONIC, account_path(5)), chain_id, 5_000)
    await node.start()
    try:
        node.service.mempool.limits = MempoolLimits(max_txs=1)
        node.service.submit(first.raw)  # the pool is full
        async with _raw_peer(node) as peer:
            await peer.send(Gossip(Kind.TXS, pack([refused.raw])))
            await wait_until_async(
                lambda: refused.id in node.network._tx_fetch._refused,
                what="the peer's tx refused for a full mempool",
            )
            assert refused.id not in node.service.mempool
            yield node, peer, refused
    finally:
        await node.stop()


def test_fix17_a_refused_tx_admitted_from_the_api_keeps_no_refusal_count(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with refused_for_a_full_mempool(tmp_path) as (node, _, refused):
            node.service.mempool.limits = MempoolLimits(max_txs=2)  # room frees
            node.service.submit(refused.raw)  # its user posts it to our API
            assert node.service.tx_status(refused.id).state == "pending"
            assert not _counts_refusals(node, refused.id), (
                "a tx admitted from the API still counts its refusals before"
            )

    asyncio.run(scenario())
