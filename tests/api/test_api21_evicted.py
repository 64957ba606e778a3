"""Issue 24, api21 2: a client's tx pooled here (so gossiped to peers) and then evicted
from this node's pool may still commit from a peer's pool. `GET /txs/{id}` said
`rejected` (or `unknown`), and the wallet freed its nonce: a re-send at that nonce raced
it. It now says `evicted` (with why) until the chain settles it: confirmed, or
`rejected` once its nonce is spent by another tx."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node import service as service_module
from fluxchain.node.mempool import Mempool, MempoolLimits
from tests.api.test_api import api, tx_status
from tests.support.chain import FEE, funded_key, owner_key

TO = address_of(owner_key(6).public_key)


def _at(chain_id: str, nonce: int, amount: int, fee: int = FEE, key_index: int = 0) -> Tx:
    key = owner_key(key_index) if key_index else funded_key()
    return Tx.create(key, chain_id, nonce, fee, Transfer(TO, amount))


def test_api21_a_tx_evicted_after_gossip_is_evicted_until_the_chain_settles_it(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with api(tmp_path, Mempool(MempoolLimits(max_txs=1))) as (client, service, b):
            chain_id = service.chain.params.chain_id
            mine = _at(chain_id, 0, 1)
            answer = await client.post("/txs", json={"tx": mine.raw.hex()})
            assert (await answer.json())["status"] == "pending"
            dearer = _at(chain_id, 0, 1, fee=3 * FEE, key_index=5)  # another sender
            service.submit(dearer.raw, from_peer=True, peer="p1")  # evicts `mine`
            assert mine.id not in service.mempool
            status = await tx_status(client, mine.id)
            assert status["status"] == "evicted", status
            assert status["reason"] == "mempool_full", status
            # A re-post refused at the door (the pool is still full of dearer txs) does
            # not make it `rejected`: the copies the peers got may still commit.
            again = await client.post("/txs", json={"tx": mine.raw.hex()})
            assert again.status == 429
            assert (await tx_status(client, mine.id))["status"] == "evicted"
            # A block that leaves its nonce unspent: still evicted.
            block = b.commit([dearer])
            service.on_committed(block, tuple(service.chain.events(block.height)))
            assert (await tx_status(client, mine.id))["status"] == "evicted"
            # Another node's block commits it: confirmed.
            block = b.commit([mine])
            service.on_committed(block, tuple(service.chain.events(block.height)))
            assert (await tx_status(client, mine.id))["status"] == "confirmed"

    asyncio.run(main())


def test_api21_an_evicted_tx_whose_nonce_another_tx_spent_is_rejected(tmp_path: Path) -> None:
    async def main() -> None:
        async with api(tmp_path, Mempool(MempoolLimits(max_txs=1))) as (client, service, b):
            chain_id = service.chain.params.chain_id
            mine = _at(chain_id, 0, 1)
            await client.post("/txs", json={"tx": mine.raw.hex()})
            service.submit(_at(chain_id, 0, 1, fee=3 * FEE, key_index=5).raw)  # evicts it
            assert (await tx_status(client, mine.id))["status"] == "evicted"
            rival = _at(chain_id, 0, 2)  # the same nonce, committed from another pool
            block = b.commit([rival])
            service.on_committed(block, tuple(service.chain.events(block.height)))
            status = await tx_status(client, mine.id)
            assert status["status"] == "rejected", status
            assert status["reason"] == "nonce_mismatch", status

    asyncio.run(main())


def test_api21_a_tx_a_proposer_dropped_is_evicted(tmp_path: Path) -> None:
    """A proposer dropped it for a reason no change of its sender's account clears (a
    cancel of an app that is gone): not parked, but gossiped, so `evicted`."""

    async def main() -> None:
        async with api(tmp_path) as (client, service, _b):
            chain_id = service.chain.params.chain_id
            mine = _at(chain_id, 0, 1)
            await client.post("/txs", json={"tx": mine.raw.hex()})
            service.note_dropped(mine, TxError(Reason.UNKNOWN_APP, "no such app"))
            status = await tx_status(client, mine.id)
            assert status["status"] == "evicted", status
            assert status["reason"] == "unknown_app", status

    asyncio.run(main())


def test_api21_evicted_records_are_bounded_and_refusals_do_not_push_them_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack (anyone: unfunded keys sign for free): a flood of refused txs fills the
    refusals' record (`REJECTED_KEPT`); an evicted tx's record is apart, so it stays
    `evicted` (a wallet keeps its nonce). Its own bound (`EVICTED_KEPT`) is filled only
    by txs that were pooled, and pushes out the oldest."""
    monkeypatch.setattr(service_module, "REJECTED_KEPT", 2)
    monkeypatch.setattr(service_module, "EVICTED_KEPT", 3)

    async def main() -> None:
        async with api(tmp_path) as (client, service, b):
            chain_id = service.chain.params.chain_id
            dropped = [_at(chain_id, 0, 1, key_index=i) for i in (1, 2, 3, 5)]
            for tx in dropped:
                service.submit(tx.raw)
                service.note_dropped(tx, TxError(Reason.UNKNOWN_APP, "no such app"))
            flood = [b.tx(owner_key(100 + i), Transfer(TO, 1)) for i in range(5)]
            for tx in flood:  # unfunded: refused (and held), recorded as refusals
                await client.post("/txs", json={"tx": tx.raw.hex()})
            states = [(await tx_status(client, tx.id))["status"] for tx in dropped]
            assert states == ["unknown", "evicted", "evicted", "evicted"], states

    asyncio.run(main())


def test_rev21a_evicted_records_past_their_byte_bound_go_from_the_sender_holding_the_most_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records are bounded by bytes too (`EVICTED_BYTES`): past it the sender holding
    the most bytes loses its oldest, so one key's evicted txs push out its own, not an
    older record of another key."""

    async def main() -> None:
        async with api(tmp_path) as (client, service, _b):
            chain_id = service.chain.params.chain_id
            honest = _at(chain_id, 0, 1, key_index=1)
            churn = [_at(chain_id, 0, amount) for amount in range(1, 5)]
            monkeypatch.setattr(service_module, "EVICTED_BYTES", 3 * len(honest.raw))
            for tx in [honest, *churn]:
                service.submit(tx.raw)
                service.note_dropped(tx, TxError(Reason.UNKNOWN_APP, "no such app"))
            states = [(await tx_status(client, tx.id))["status"] for tx in [honest, *churn]]
            assert states == ["evicted", "unknown", "unknown", "evicted", "evicted"], states

    asyncio.run(main())
