"""Issue 24 (cli19): a client that trickles its body (slowloris) held a place in the API's
admission queue for up to `body_timeout_s`, counted at its declared Content-Length (a
body of unknown length as 16 MiB): one such socket filled the 4 MiB queue and every
wallet's post was refused 429 `busy`, again as soon as it reconnected. A request now
joins the queue only once its body is in; bodies still arriving are bounded by the bytes
received, which only sending fills."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.models import MAX_BODY
from fluxchain.api.routes import GATE
from fluxchain.api.server import create_app
from fluxchain.api.shedding import BUSY, SLOW_BODY, AdmitLimits
from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import DEV_ACCOUNTS
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain
from tests.support.wait import wait_until_async

SLOW_CLIENTS = 200  # half declaring the largest body, half chunked (of unknown length)
BODY_TIMEOUT_S = 3.0


def _txs(builder: Builder, count: int) -> list[Tx]:
    keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
    return [builder.tx(keys[i % len(keys)], Transfer(b"\x01" * 20, 1)) for i in range(count)]


def _slow_head(port: int, chunked: bool) -> bytes:
    """A batch post's head and the first byte of its body, the rest never sent."""
    length = b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
    if not chunked:
        length = b"Content-Length: %d\r\n\r\n{" % MAX_BODY
    return (
        b"POST /txs/batch HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\n" % port
    ) + length


async def _open_slow(port: int, chunked: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_slow_head(port, chunked))
    await writer.drain()
    return reader, writer


def test_slowloris_clients_cannot_make_honest_posts_wait_or_be_refused_busy(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        txs = _txs(Builder(chain), 4)
        service = NodeService(chain)

        async def scenario() -> None:
            app = create_app(service, AdmitLimits(body_timeout_s=BODY_TIMEOUT_S))
            gate = app[GATE]
            client = TestClient(TestServer(app))
            await client.start_server()
            port = client.port
            assert port is not None
            slow = [await _open_slow(port, chunked=i % 2 == 1) for i in range(SLOW_CLIENTS)]
            try:
                await wait_until_async(lambda: gate.reading == SLOW_CLIENTS, timeout=10.0)
                single = await client.post("/txs", json={"tx": txs[0].raw.hex()})
                assert single.status == 202, await single.text()
                batch = await client.post(
                    "/txs/batch", json={"txs": [tx.raw.hex() for tx in txs[1:]]}
                )
                assert batch.status == 200, await batch.text()
                assert all("error" not in r for r in (await batch.json())["results"])
                # Answered while every slow body was still arriving: nothing waited on them.
                assert gate.reading == SLOW_CLIENTS and gate.refused == 0
                # Each slow client is cut at the body timeout, and an operator sees it.
                for reader, _ in slow:
                    head = await asyncio.wait_for(reader.read(4096), 2 * BODY_TIMEOUT_S)
                    assert head.startswith(b"HTTP/1.1 408"), head[:200]
                    assert SLOW_BODY.encode() in head
                metrics = await (await client.get("/metrics")).text()
                assert (
                    f'fluxchain_api_admission_refused_total{{reason="slow_body"}} '
                    f"{float(SLOW_CLIENTS)}" in metrics
                )
            finally:
                for _, writer in slow:
                    writer.close()
                await client.close()

        asyncio.run(scenario())
        assert len(service.mempool) == 4
    finally:
        chain.close()


def test_bodies_still_arriving_are_bounded_by_the_bytes_received(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        txs = _txs(Builder(chain), 8)
        service = NodeService(chain)
        bound = 64 * 1024

        async def scenario() -> None:
            limits = AdmitLimits(max_reading_bytes=bound, body_timeout_s=BODY_TIMEOUT_S)
            app = create_app(service, limits)
            gate = app[GATE]
            client = TestClient(TestServer(app))
            await client.start_server()
            port = client.port
            assert port is not None
            # A client that sent most of the bound and stalls: what it sent is held.
            reader, writer = await _open_slow(port, chunked=False)
            writer.write(b" " * (bound - 1024))
            await writer.drain()
            try:
                await wait_until_async(lambda: gate.reading_bytes >= bound - 1023, timeout=10.0)
                body = {"txs": [tx.raw.hex() for tx in txs]}
                assert len(json.dumps(body)) > 1024  # past the bound
                refused = await client.post("/txs/batch", json=body)
                assert refused.status == 429
                assert (await refused.json())["error"]["reason"] == BUSY
                # Its bytes are let go at the body timeout; the wallet's retry goes in.
                head = await asyncio.wait_for(reader.read(4096), 2 * BODY_TIMEOUT_S)
                assert head.startswith(b"HTTP/1.1 408"), head[:200]
                assert gate.reading_bytes == 0
                again = await client.post("/txs/batch", json=body)
                assert again.status == 200
            finally:
                writer.close()
                await client.close()

        asyncio.run(scenario())
        assert len(service.mempool) == 8
    finally:
        chain.close()
