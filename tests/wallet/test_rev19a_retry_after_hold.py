"""rev19a, a defence that held: a hostile node's Retry-After (huge, negative, NaN,
non-numeric, an HTTP date) never makes `flux` wait more than RETRY_AFTER_MAX_S a try,
nor ask more than BUSY_RETRIES + 1 times; the final refusal is `busy`, exit 10."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from tests.wallet.test_cli19_busy_retry import _Node, _tx
from wallet.client import BUSY_RETRIES, RETRY_AFTER_MAX_S, NodeClient
from wallet.errors import ExitCode, WalletError

HOSTILE = ["99999999999", "1e400", "inf", "-5", "nan", "soon", "Wed, 21 Oct 2099 07:28:00 GMT", ""]


@pytest.fixture
def busy_node() -> Iterator[tuple[str, type[_Node]]]:
    handler = type("Node", (_Node,), {"posts": [], "busy_posts": 10**6})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("retry_after", HOSTILE)
def test_rev19a_a_hostile_retry_after_is_bounded(
    busy_node: tuple[str, type[_Node]], retry_after: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = busy_node
    handler.retry_after = retry_after
    waits: list[float] = []
    monkeypatch.setattr("wallet.client.time.sleep", waits.append)  # what it would wait
    with pytest.raises(WalletError) as caught:
        NodeClient(url).submit(_tx().raw)
    assert caught.value.reason == "busy" and caught.value.exit_code == ExitCode.BUSY
    assert len(handler.posts) == BUSY_RETRIES + 1
    assert len(waits) == BUSY_RETRIES
    assert all(0.0 <= w <= RETRY_AFTER_MAX_S for w in waits), waits
