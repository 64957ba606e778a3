"""Review rev17c: the record of committed txs (wan17) against a peer, a client and a
byzantine validator. Defences that held: only blocks this node committed are recorded,
and a client sees the same refusal for a tx committed lately or long ago."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.server import create_app
from fluxchain.core.block import Block
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.execute import Execution
from fluxchain.node.admission import TxAdmission
from fluxchain.node.service import NodeService
from fluxchain.node.sync import SyncedBlock, import_in_order
from tests.support.chain import Builder, funded_key, open_chain


def test_rev17c_a_refused_synced_block_or_an_aborted_proposal_notes_no_tx(
    tmp_path: Path,
) -> None:
    """A byzantine peer serves a block with a commit that does not finalize it, and a
    proposal is executed but never decided: neither block's txs are refused as confirmed
    (a user's tx is pooled, not lost); the block sync did commit is recorded whole."""
    source = open_chain(tmp_path / "source")
    node = open_chain(tmp_path / "node")
    try:
        b = Builder(source)
        key = funded_key()
        first, second = b.transfer(key, b"\x01" * 20), b.transfer(key, b"\x02" * 20)
        block1 = b.commit([first])
        block2, _ = b.block([second])
        service = NodeService(node)

        def after_each(block: Block, execution: Execution) -> None:  # as the driver's
            service.on_committed(block, execution.events, execution.tx_ids)

        synced = (
            SyncedBlock("honest", block1, b.last_commit),  # type: ignore[arg-type]
            SyncedBlock("byzantine", block2, b.last_commit),  # type: ignore[arg-type]
        )
        outcome = import_in_order(node, synced, after_each=after_each)
        assert outcome.imported == 1 and outcome.refused is not None
        # A proposal executed on top of the head, then abandoned (another round decided).
        execution = node.execute_proposal(block2)
        node.abort(execution)
        with pytest.raises(TxError) as late:
            service.submit(first.raw, from_peer=True)
        assert late.value.reason is Reason.ALREADY_KNOWN
        assert service.admission.committed_lately(first.id)
        assert not service.admission.committed_lately(second.id)
        assert service.submit(second.raw, from_peer=True) == second
        assert service.tx_status(second.id).state == "pending"
    finally:
        source.close()
        node.close()


def test_rev17c_a_client_gets_one_refusal_for_a_tx_committed_lately_or_long_ago(
    tmp_path: Path,
) -> None:
    """POST /txs of a tx committed lately (refused from the record, before decoding) and
    of one committed long ago (out of the record: refused by the tx index) answer alike:
    400, already_known, "this tx is already confirmed"; its status says confirmed."""

    async def main() -> None:
        chain = open_chain(tmp_path / "home")
        service = NodeService(chain, admission=TxAdmission(chain, committed_capacity=1))
        client = TestClient(TestServer(create_app(service)))
        await client.start_server()
        try:
            b = Builder(chain)
            key = funded_key()
            old, new = b.transfer(key, b"\x01" * 20), b.transfer(key, b"\x02" * 20)
            for tx in (old, new):
                block = b.commit([tx])
                service.on_committed(block, tuple(chain.events(block.height)))
            assert not service.admission.committed_lately(old.id)
            assert service.admission.committed_lately(new.id)
            answers = []
            for tx in (old, new):
                response = await client.post("/txs", json={"tx": tx.raw.hex()})
                answers.append((response.status, await response.json()))
                status = await (await client.get(f"/txs/{tx.id.hex()}")).json()
                assert status["status"] == "confirmed"
            assert answers[0] == answers[1]
            assert answers[0][0] == 400
            assert "already_known" in str(answers[0][1])
            assert "this tx is already confirmed" in str(answers[0][1])
            batch = await client.post("/txs/batch", json={"txs": [old.raw.hex(), new.raw.hex()]})
            results = (await batch.json())["results"]
            assert results[0] == results[1]
        finally:
            await client.close()
            chain.close()

    asyncio.run(main())
