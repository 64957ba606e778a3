"""rev19a: the admission gate bounds bodies still arriving by the bytes *received*, but
aiohttp inflates a `Content-Encoding: deflate` (or gzip) body before the gate counts it.

Attack: four connections each send ~16 KiB of deflate that inflates to MAX_BODY - 1 bytes
of spaces and then stall (the declared Content-Length is never reached). ~64 KiB sent
fills `max_reading_bytes` (64 MiB, meant to take 64 MiB sent every `body_timeout_s`), so
every honest `/txs` and `/txs/batch` post is refused 429 `busy` until the body timeout,
and again as soon as the attacker repeats: ~6.5 KiB/s keeps the node's API shut.
What a user sees: `flux send` exits 10 `busy` after its retries while the node is idle.
Fix direction: refuse a Content-Encoding on tx posts (or serve the API with
`auto_decompress=False`), or count the compressed bytes received against the bound.
"""

from __future__ import annotations

import asyncio
import zlib
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

BODY_TIMEOUT_S = 3.0
ATTACKERS = 4  # 4 x (MAX_BODY - 1) inflated bytes: just under the 64 MiB bound


def _txs(builder: Builder, count: int) -> list[Tx]:
    keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
    return [builder.tx(keys[i % len(keys)], Transfer(b"\x01" * 20, 1)) for i in range(count)]


def _deflated_stall() -> bytes:
    """Deflate of MAX_BODY - 1 spaces, flushed so all of it inflates, the stream unfinished."""
    squeeze = zlib.compressobj(9)
    return squeeze.compress(b" " * (MAX_BODY - 1)) + squeeze.flush(zlib.Z_SYNC_FLUSH)


def test_rev19a_a_few_kib_of_deflate_fill_the_reading_bound_and_shut_out_honest_posts(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    try:
        txs = _txs(Builder(chain), 2)
        service = NodeService(chain)
        blob = _deflated_stall()
        sent = ATTACKERS * len(blob)
        assert sent < 128 * 1024  # modest bandwidth: ~64 KiB per body timeout

        async def scenario() -> None:
            app = create_app(service, AdmitLimits(body_timeout_s=BODY_TIMEOUT_S))
            gate = app[GATE]
            client = TestClient(TestServer(app))
            await client.start_server()
            writers: list[asyncio.StreamWriter] = []
            answers: list[asyncio.Task[bytes]] = []
            try:
                for _ in range(ATTACKERS):
                    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
                    writer.write(
                        b"POST /txs/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\nContent-Encoding: deflate\r\n"
                        b"Content-Length: %d\r\n\r\n" % (len(blob) + 64) + blob
                    )
                    await writer.drain()
                    writers.append(writer)
                    answers.append(asyncio.ensure_future(reader.read(4096)))
                # Every stalled body inflated and held, or (a defence) every one answered.
                await wait_until_async(
                    lambda: (
                        gate.reading_bytes >= ATTACKERS * (MAX_BODY - 1)
                        or all(a.done() for a in answers)
                    ),
                    timeout=10.0,
                )
                single = await client.post("/txs", json={"tx": txs[0].raw.hex()})
                assert single.status == 202, (
                    f"an honest post was refused ({single.status} {await single.text()}) "
                    f"while {sent} bytes sent held {gate.reading_bytes} reading bytes"
                )
                batch = await client.post("/txs/batch", json={"txs": [txs[1].raw.hex()]})
                assert batch.status == 200, await batch.text()
            finally:
                for answer in answers:
                    answer.cancel()
                for writer in writers:
                    writer.close()
                await client.close()

        asyncio.run(scenario())
    finally:
        chain.close()
