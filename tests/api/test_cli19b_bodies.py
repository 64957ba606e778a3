"""cli19b: request bodies are taken as sent. A coded body (gzip, deflate) is refused 415
`unsupported_encoding` on every route, so byte bounds count bytes on the wire; a tx post
is capped at what its txs can need (413 `too_large`), its unknown fields refused, and a
body with more JSON values than its txs can hold refused before it is parsed."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pytest

from fluxchain.api.bodies import SUBMIT_BATCH_SEPARATORS, parse_json
from fluxchain.api.models import MAX_BATCH, MAX_OWNER_BODY, SubmitBatch
from fluxchain.api.queries import ApiError
from fluxchain.api.routes import GATE
from fluxchain.core.tx import Transfer
from fluxchain.node.service import NodeService
from tests.api.test_api import Client, run
from tests.support.chain import Builder, funded_key

POST_ROUTES = ("/txs", "/txs/batch", "/apps/validate", "/apps/web/operate", "/agent/report")
JSON = {"Content-Type": "application/json"}


def test_a_compressed_body_is_refused_415_on_every_post_route(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        tx = b.tx(funded_key(0), Transfer(b"\x01" * 20, 1))
        coded = gzip.compress(json.dumps({"tx": tx.raw.hex()}).encode())
        for path in POST_ROUTES:
            for coding in ("gzip", "deflate", "br"):
                headers = {**JSON, "Content-Encoding": coding}
                r = await client.post(path, data=coded, headers=headers)
                assert r.status == 415, (path, coding, r.status, await r.text())
                error = (await r.json())["error"]
                assert error["reason"] == "unsupported_encoding", (path, error)
        assert client.app is not None and client.app[GATE].reading_bytes == 0
        assert service.mempool.get(tx.id) is None
        # `identity` is no coding: the body is taken as it is.
        plain = {"tx": tx.raw.hex()}
        r = await client.post("/txs", json=plain, headers={"Content-Encoding": "identity"})
        assert r.status == 202, await r.text()

    run(tmp_path, body)


async def _head_answer(port: int | None, head: bytes) -> bytes:
    """The answer to a request whose body is never sent past `head`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), timeout=10.0)
    finally:
        writer.close()


def test_tx_posts_are_capped_at_what_their_txs_can_need(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        # One tx of max_tx_bytes in hex, its quotes and the object around it, with room.
        cap = 2 * service.chain.params.max_tx_bytes + 16 + 1024
        head = b"POST /txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        declared = await _head_answer(
            client.port, head + b"Content-Length: %d\r\n\r\n{" % (cap + 1)
        )
        assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
        assert b'"too_large"' in declared
        # Of unknown length: refused once the bytes pass the cap.
        chunk = b"0" * (cap + 1)
        chunked = await _head_answer(
            client.port, head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(chunk) + chunk
        )
        assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
        # A body at the cap is read and judged on its content.
        padded = b'{"tx": "00"}'.ljust(cap, b" ")
        r = await client.post("/txs", data=padded, headers=JSON)
        assert r.status == 400, await r.text()
        assert (await r.json())["error"]["reason"] == "bad_field"

    run(tmp_path, body)


def test_unknown_fields_in_a_tx_post_are_refused(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        tx = b.tx(funded_key(0), Transfer(b"\x01" * 20, 1))
        for path, sent in (
            ("/txs", {"tx": tx.raw.hex(), "memo": "hi"}),
            ("/txs/batch", {"txs": [tx.raw.hex()], "memo": "hi"}),
        ):
            r = await client.post(path, json=sent)
            assert r.status == 400, (path, r.status, await r.text())
            error = (await r.json())["error"]
            assert error["reason"] == "bad_request" and "memo" in error["message"]
        assert service.mempool.get(tx.id) is None

    run(tmp_path, body)


def test_a_batch_is_parsed_only_if_its_separators_fit_its_txs() -> None:
    """Any formatting of MAX_BATCH txs passes the bound; far more values do not."""
    txs = ["ab" * 120] * MAX_BATCH
    for text in (json.dumps({"txs": txs}), json.dumps({"txs": txs}, indent=2)):
        assert parse_json(text.encode(), SubmitBatch, SUBMIT_BATCH_SEPARATORS).txs == txs
    for raw in (
        json.dumps({"txs": [*txs, *["ab"] * 20]}).encode(),
        b'{"txs": [], "pad": [' + b"[]," * 1_000_000 + b"[]]}",
    ):
        with pytest.raises(ApiError) as refused:
            parse_json(raw, SubmitBatch, SUBMIT_BATCH_SEPARATORS)
        assert (refused.value.status, refused.value.reason) == (400, "bad_request")
    with pytest.raises(ApiError) as invalid:
        parse_json(b'{"txs": [', SubmitBatch, SUBMIT_BATCH_SEPARATORS)
    assert invalid.value.message == "body is not valid JSON"


def test_owner_requests_and_agent_reports_are_bounded_before_they_are_parsed(
    tmp_path: Path,
) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        big = b"[" + b"[]," * (MAX_OWNER_BODY // 3) + b"[]]"
        r = await client.post("/apps/web/operate", data=big, headers=JSON)
        assert r.status == 413, await r.text()
        assert (await r.json())["error"]["reason"] == "too_large"
        # A wrong agent token is refused before its body is read: 401, not 400.
        wrong = {**JSON, "Authorization": "Bearer wrong"}
        r = await client.post("/agent/report", data=b"not json", headers=wrong)
        assert r.status == 401, await r.text()
        assert (await r.json())["error"]["reason"] == "unauthorized"

    run(tmp_path, body)
