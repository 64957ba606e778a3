"""`flux` honours a 429's Retry-After (issue 24, cli19): a node that sheds a post (`busy`,
nothing taken) is asked again after the delay it gives, a bounded number of times; past
that the wallet says the node is busy, with the node's reason and exit status 10, and the
send's nonce stays free."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import devnet_params
from tests.support.chain import funded_key
from wallet.client import BUSY_RETRIES, NodeClient
from wallet.errors import ExitCode, WalletError
from wallet.sender import Sender


class _Node(http.server.BaseHTTPRequestHandler):
    """POST /txs: 429 `busy` (Retry-After from `retry_after`) `busy_posts` times, then 202."""

    busy_posts = 0
    retry_after = "0"
    posts: list[float] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(time.monotonic())
        body: dict[str, object]
        if len(self.posts) <= self.busy_posts:
            status, body = 429, {"error": {"reason": "busy", "message": "the queue is full"}}
        else:
            status, body = 202, {"id": "ab" * 32, "status": "pending"}
        data = json.dumps(body).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", self.retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def node() -> Iterator[tuple[str, type[_Node]]]:
    handler = type("Node", (_Node,), {"posts": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _tx() -> Tx:
    return Tx.create(funded_key(), devnet_params().chain_id, 0, 1_000, Transfer(b"\1" * 20, 5))


def test_a_busy_node_is_asked_again_after_its_retry_after(
    node: tuple[str, type[_Node]],
) -> None:
    url, handler = node
    handler.busy_posts, handler.retry_after = 2, "1"
    assert NodeClient(url).submit(_tx().raw)["id"] == "ab" * 32
    posts = handler.posts
    assert len(posts) == 3
    # Each retry waited the second the node asked for.
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(posts)), posts


def test_a_node_still_busy_after_the_retries_is_reported_busy_and_the_nonce_kept(
    node: tuple[str, type[_Node]], tmp_path: Path
) -> None:
    url, handler = node
    handler.busy_posts = BUSY_RETRIES + 1
    sender = Sender(NodeClient(url), tmp_path)
    with pytest.raises(WalletError) as caught:
        sender.submit("tflux1example", _tx(), 5)
    assert len(handler.posts) == BUSY_RETRIES + 1  # bounded
    error = caught.value
    assert error.reason == "busy"
    assert error.exit_code == ExitCode.BUSY
    assert "busy" in error.message and "try again later" in error.message
    assert not (tmp_path / "pending.json").exists()  # nothing recorded: the nonce is free
