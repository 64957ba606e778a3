"""A tx a real node refused for a reason that can clear is pooled once it clears and is
announced again (held18, issue 22).

A pays B; B at once pays C. A node that gets B->C before A->B commits refuses it
(insufficient_funds). On main the admission kept it as checked, `Node.has_tx` said held,
and every later announcement of it was ignored: only the node B used ever pooled it.
Now the refused tx is parked: its bytes are kept, it is not held, and an announcement
after the funding commits offers it to the mempool again (no fetch, no new decode)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.encoding import pack
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Gossip, Kind, TxIds
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _raw_peer
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def test_held18_a_tx_refused_for_funds_is_pooled_when_announced_after_its_funding_commits(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        devnet = Devnet(tmp_path / "net", validators=1)  # it commits on its own
        node = Node(Home(devnet.homes[0]))
        chain_id = devnet.genesis.chain_id
        a = derive_key(INSECURE_TEST_MNEMONIC, account_path(1))
        b = derive_key(INSECURE_TEST_MNEMONIC, account_path(90))  # unfunded
        c = address_of(derive_key(INSECURE_TEST_MNEMONIC, account_path(91)).public_key)
        fund = Tx.create(a, chain_id, 0, 5_000, Transfer(address_of(b.public_key), 5 * COIN, b""))
        pay = Tx.create(b, chain_id, 0, 5_000, Transfer(c, COIN, b""))
        await node.start()
        try:
            async with _raw_peer(node) as peer:
                await peer.send(Gossip(Kind.TXS, pack([pay.raw])))  # B->C before A->B
                await wait_until_async(
                    lambda: node.service.tx_status(pay.id).reason == "insufficient_funds",
                    what="B->C refused for B's funds",
                )
                assert node.has_tx(pay.id), "a parked tx's bytes are held: never fetched"
                node.service.submit(fund.raw)  # A->B, committed by the node's next block
                await wait_until_async(
                    lambda: node.service.tx_status(fund.id).state == "confirmed",
                    what="A->B committed",
                    timeout=30.0,
                )
                await peer.send(TxIds(pay.id))  # the peer announces B->C again
                await wait_until_async(
                    lambda: node.service.tx_status(pay.id).state in ("pending", "confirmed"),
                    what="B->C pooled after its funding committed and an announcement",
                    timeout=10.0,
                )
                assert node.network._tx_fetch.fetching() == 0, "held bytes fetched again"
                await wait_until_async(
                    lambda: node.service.tx_status(pay.id).state == "confirmed",
                    what="B->C committed",
                    timeout=30.0,
                )
        finally:
            await node.stop()

    asyncio.run(scenario())
