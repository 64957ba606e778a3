"""rev21a 2: a paid tx a proposer drops for a conflict with the block it builds stays
pooled while that block is pending (the committed state still takes it), and the block's
recheck then refuses it on every node alike; an `evicted` tx that a later block makes
fail for good (its app name taken) reads `rejected` with the reason, not `evicted`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.core.errors import TxError
from fluxchain.core.tx import AppRegister
from fluxchain.node import service as service_module
from fluxchain.node.mempool import Mempool, MempoolLimits
from tests.api.test_api import api, tx_status
from tests.support.chain import FEE, VALIDATORS, app_spec, funded_key, proposer_reveal


def test_fix21a_a_proposers_drop_while_its_block_is_pending_stays_pooled_until_the_recheck(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with api(tmp_path, Mempool(MempoolLimits())) as (client, service, b):
            winner, loser = funded_key(VALIDATORS), funded_key(VALIDATORS + 1)
            first = b.tx(winner, AppRegister(app_spec(winner, "shop", expire=1_000)), fee=3 * FEE)
            second = b.tx(loser, AppRegister(app_spec(loser, "shop", expire=1_000)))
            for tx in (first, second):
                service.submit(tx.raw)
            chain = service.chain
            # As the driver builds: the block's writes stay pending while it is proposed.
            b.time_ms += 1_000
            block, execution, rejected = chain.build_block(
                now_ms=b.time_ms,
                round_=0,
                last_commit=b.last_commit,
                candidates=service.candidates(),
                reveal=proposer_reveal(chain, 0, b.node_keys.values()),
            )
            assert first.raw in block.txs
            assert chain.state.has_pending()
            assert [tx.id for tx, _ in rejected] == [second.id], rejected
            for tx, exc in rejected:
                assert isinstance(exc, TxError)
                service.note_dropped(tx, exc)
            # The committed state still takes it: the drop was this block's, not for good.
            assert (await tx_status(client, second.id))["status"] == "pending"
            chain.abort(execution)
            block = b.commit([first])
            service.on_committed(block, tuple(chain.events(block.height)))
            status = await tx_status(client, second.id)
            assert status["status"] == "rejected", status
            assert status["reason"] == "app_exists", status

    asyncio.run(main())


def test_fix21a_an_evicted_register_whose_name_a_block_took_reads_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with api(tmp_path, Mempool(MempoolLimits(max_txs=1))) as (client, service, b):
            winner, loser = funded_key(VALIDATORS), funded_key(VALIDATORS + 1)
            second = b.tx(loser, AppRegister(app_spec(loser, "shop", expire=1_000)))
            first = b.tx(winner, AppRegister(app_spec(winner, "shop", expire=1_000)), fee=3 * FEE)
            service.submit(second.raw)
            service.submit(first.raw)  # the pool's one place: the cheaper one goes
            status = await tx_status(client, second.id)
            assert (status["status"], status["reason"]) == ("evicted", "mempool_full"), status
            block = b.commit([first])
            service.on_committed(block, tuple(service.chain.events(block.height)))
            # Past the height's re-check budget it reads as it was: the cautious answer.
            monkeypatch.setattr(service_module, "EVICTED_RECHECKS", 0)
            assert (await tx_status(client, second.id))["status"] == "evicted"
            monkeypatch.setattr(service_module, "EVICTED_RECHECKS", 1)
            status = await tx_status(client, second.id)
            assert (status["status"], status["reason"]) == ("rejected", "app_exists"), status

    asyncio.run(main())
