"""rev19a, defences that held: a client that goes away mid-body (declared length or
chunked), or sends a chunked body past MAX_BODY, leaves no reading bytes or queue bytes
behind, and the next honest post goes in."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.models import MAX_BODY
from fluxchain.api.routes import GATE
from fluxchain.api.server import create_app
from fluxchain.api.shedding import AdmitLimits
from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import DEV_ACCOUNTS
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain
from tests.support.wait import wait_until_async

HEAD = b"POST /txs/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def _txs(builder: Builder, count: int) -> list[Tx]:
    keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
    return [builder.tx(keys[i % len(keys)], Transfer(b"\x01" * 20, 1)) for i in range(count)]


def test_rev19a_clients_gone_mid_body_or_past_max_body_leave_no_count_behind(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        txs = _txs(Builder(chain), 1)
        service = NodeService(chain)

        async def scenario() -> None:
            app = create_app(service, AdmitLimits(body_timeout_s=5.0))
            gate = app[GATE]
            client = TestClient(TestServer(app))
            await client.start_server()
            try:
                starts = (
                    b"Content-Length: 100000\r\n\r\n{" + b" " * 50_000,
                    b"Transfer-Encoding: chunked\r\n\r\nc350\r\n" + b" " * 30_000,
                )
                for start in starts:  # gone mid-body
                    _, writer = await asyncio.open_connection("127.0.0.1", client.port)
                    writer.write(HEAD + start)
                    await writer.drain()
                    await wait_until_async(lambda: gate.reading_bytes > 0, timeout=10.0)
                    writer.close()
                    await wait_until_async(
                        lambda: gate.reading == 0 and gate.reading_bytes == 0, timeout=10.0
                    )
                # A chunked body past MAX_BODY: 413 once the bytes pass it, nothing kept.
                reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
                chunk = b" " * (1 << 20)
                writer.write(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
                for _ in range(MAX_BODY // len(chunk) + 1):
                    writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                await writer.drain()
                head = await asyncio.wait_for(reader.read(4096), 10.0)
                assert head.startswith(b"HTTP/1.1 413"), head[:200]
                writer.close()
                await wait_until_async(
                    lambda: gate.reading == 0 and gate.reading_bytes == 0, timeout=10.0
                )
                assert gate.waiting == 0
                honest = await client.post("/txs/batch", json={"txs": [txs[0].raw.hex()]})
                assert honest.status == 200, await honest.text()
            finally:
                await client.close()

        asyncio.run(scenario())
        assert len(service.mempool) == 1
    finally:
        chain.close()
