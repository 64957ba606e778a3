"""rev18a: how a real node offers parked txs again (held18).

held18 offered a parked tx to the mempool only when an announcement of it arrived after a
block committed since its last offer (`Node.has_tx`); held18b offers it when a committed
block changes its sender's account (`NodeService.on_committed`), and nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.encoding import pack
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import PARKED_PER_SENDER
from fluxchain.node.home import Home
from fluxchain.node.node import Node
from p2p.messages import Gossip, Kind, TxIds
from tests.integration.harness import Devnet
from tests.integration.test_compact_proposal import _raw_peer
from tests.support.calls import counting
from tests.support.wait import wait_until_async
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

PARKED = 40  # a Sybil parks up to PARKED_TXS (10,000) this way, for free


def test_rev18a_re_announced_parked_ids_of_unchanged_senders_cost_no_pool_or_index_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack (Sybil peer): push PARKED_TXS txs of unfunded keys (signing is free; each
    is refused insufficient_funds and parked), then re-announce all their ids after every
    block. Each id's offer is "due" again at each height, so every block costs the node up
    to 10,000 mempool attempts, 10,000 tx-index LevelDB reads (`_refused` asks
    `chain.tx_location` of every refusal but a pooled copy's) and 10,000 loop callbacks,
    for txs nothing in the block could have cleared; on main they cost a dict look-up.
    What an operator sees: block-rate CPU spent on one peer's junk ids (docs/security.md
    says re-announcing refused ids "costs a dict look-up each").
    Fix direction: offer a parked tx only once its sender's account changed since its
    last offer (or from the commit hook, for the senders a block touched); a parked tx
    is never committed (a commit forgets it), so its offer needs no tx-index read."""

    async def scenario() -> None:
        devnet = Devnet(tmp_path / "net", validators=1)  # it commits on its own
        node = Node(Home(devnet.homes[0]))
        chain_id = devnet.genesis.chain_id
        # Never funded; a few keys, since a sender parks PARKED_PER_SENDER (held18c).
        keys = [derive_key(INSECURE_TEST_MNEMONIC, account_path(400 + i)) for i in range(4)]
        txs = [
            Tx.create(
                keys[n // PARKED_PER_SENDER],
                chain_id,
                n % PARKED_PER_SENDER,
                5_000,
                Transfer(b"\x0b" * 20, COIN, b""),
            )
            for n in range(PARKED)
        ]
        await node.start()
        admission = node.service.admission
        try:
            async with _raw_peer(node) as peer:
                await peer.send(Gossip(Kind.TXS, pack([tx.raw for tx in txs])))
                await wait_until_async(
                    lambda: all(admission.is_parked(tx.id) for tx in txs),
                    what="the junk txs parked",
                )
                height = node.chain.height
                await wait_until_async(
                    lambda: node.chain.height > height, what="a block committed", timeout=30.0
                )
                reads: list[bytes] = []
                adds: list[bytes] = []
                chain, pool = node.chain, node.service.mempool
                tx_location, add = chain.tx_location, pool.add
                monkeypatch.setattr(chain, "tx_location", counting(reads, tx_location))
                monkeypatch.setattr(pool, "add", counting(adds, add))
                await peer.send(TxIds(b"".join(tx.id for tx in txs)))
                await peer.send(Gossip(Kind.TXS, pack([tx.raw for tx in txs])))  # pushed again
                # One more junk tx after them: a peer's frames are handled in order, so once
                # it is parked the announcement and the copies before it were handled.
                marker = Tx.create(keys[-1], chain_id, 0, 5_000, Transfer(b"\x0b" * 20, 1, b""))
                await peer.send(Gossip(Kind.TXS, pack([marker.raw])))
                await wait_until_async(
                    lambda: admission.is_parked(marker.id), what="the announcement handled"
                )
                # And a block committed after them (held18b: parked txs are offered again
                # from the commit, for the accounts it changed: not the junk senders').
                handled = node.chain.height
                await wait_until_async(
                    lambda: node.chain.height > handled, what="a block committed", timeout=30.0
                )
                junk_reads = [i for i in reads if i in {tx.id for tx in txs}]
                junk_adds = [i for i in adds if i in {tx.id for tx in txs}]
                assert (len(junk_adds), len(junk_reads)) == (0, 0), (
                    f"{len(junk_adds)} pool attempts and {len(junk_reads)} tx-index reads for "
                    f"{PARKED} re-announced and re-pushed ids of senders no block touched"
                )
        finally:
            await node.stop()

    asyncio.run(scenario())


def test_rev18a_a_parked_tx_is_pooled_once_its_funding_commits_without_a_late_announcement(
    tmp_path: Path,
) -> None:
    """Busy honest network: a node one block behind gets B->C (whose funding A->B its
    peers have committed) from all its peers within milliseconds: all in the same height,
    so it parks it and every announcement finds its offer not due. Then it commits A->B,
    and nobody announces B->C again (each peer announced it once), so it never offers it
    to its pool: as a proposer it never includes B->C, and the held18 fix does nothing for
    the case issue 22 describes. What a user sees: B->C waits for another proposer.
    Fix direction: when a block commits, offer the parked txs of the senders it touched
    (bounded per block), rather than waiting for an announcement."""

    async def scenario() -> None:
        devnet = Devnet(tmp_path / "net", validators=1)
        node = Node(Home(devnet.homes[0]))
        chain_id = devnet.genesis.chain_id
        a = derive_key(INSECURE_TEST_MNEMONIC, account_path(1))
        b = derive_key(INSECURE_TEST_MNEMONIC, account_path(93))  # unfunded
        c = address_of(derive_key(INSECURE_TEST_MNEMONIC, account_path(94)).public_key)
        fund = Tx.create(a, chain_id, 0, 5_000, Transfer(address_of(b.public_key), 5 * COIN, b""))
        pay = Tx.create(b, chain_id, 0, 5_000, Transfer(c, COIN, b""))
        await node.start()
        try:
            async with _raw_peer(node) as peer:
                await peer.send(Gossip(Kind.TXS, pack([pay.raw])))
                await wait_until_async(
                    lambda: node.service.admission.is_parked(pay.id), what="B->C parked"
                )
                node.service.submit(fund.raw)
                await wait_until_async(
                    lambda: node.service.tx_status(fund.id).state == "confirmed",
                    what="A->B committed",
                    timeout=30.0,
                )
                await wait_until_async(
                    lambda: node.service.tx_status(pay.id).state in ("pending", "confirmed"),
                    what="B->C pooled once A->B committed (no new announcement)",
                    timeout=10.0,
                )
        finally:
            await node.stop()

    asyncio.run(scenario())
