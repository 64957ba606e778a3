"""What the gateway reads: confirmed state from the node it follows, and each hosting node's
agent report from that node's registered endpoint.

The followed node is the operator's own (trusted for what the chain confirmed); the
hosting nodes are anyone's, so their reports are bounded in size and time and only ever
narrow what the chain already allows (`routes.build_table`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp

log = logging.getLogger("fluxchain.gateway")

REPORT_TIMEOUT_S: Final = 2.0
MAX_REPORT_BYTES: Final = 1 << 20  # an agent report of 1,000 workloads is well under this
RECONNECT_S: Final = 1.0
MAX_PAGES: Final = 1_000  # of /apps (1,000 apps each): far more apps than a chain holds


class NodeUnreachableError(Exception):
    """An API did not answer, or answered something unusable."""


async def get_json(
    session: aiohttp.ClientSession, url: str, timeout: float = 5.0, limit: int = 64 << 20
) -> Any:
    """GET a JSON body of at most `limit` bytes; NodeUnreachableError on any failure."""
    try:
        # never redirected: a hosting node would send the gateway's GETs anywhere it likes
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            if response.status != 200:
                raise NodeUnreachableError(f"GET {url}: HTTP {response.status}")
            if (response.content_length or 0) > limit:
                raise NodeUnreachableError(f"GET {url}: body over {limit} bytes")
            body = bytearray()
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise NodeUnreachableError(f"GET {url}: body over {limit} bytes")
            # RecursionError: 100,000 `[` nest deeper than the parser's stack allows
            return json.loads(body)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError, RecursionError) as exc:
        raise NodeUnreachableError(f"GET {url}: {exc}") from None


class ChainFollower:
    """The followed node: its confirmed height (pushed over `/ws`) and its apps.

    Several URLs may be given (the operator's own nodes): the follower reads from the
    first that answers and moves to the next when it stops answering, so the gateway keeps
    following the chain while one of them restarts."""

    def __init__(self, node_urls: list[str], session: aiohttp.ClientSession) -> None:
        if not node_urls:
            raise ValueError("a gateway follows at least one node")
        self.node_urls = [u.rstrip("/") for u in node_urls]
        self.current = 0
        self.session = session
        self.height = 0  # the last confirmed height the stream announced
        self.connected = False

    @property
    def node_url(self) -> str:
        return self.node_urls[self.current]

    def _next_node(self) -> None:
        self.current = (self.current + 1) % len(self.node_urls)

    async def apps(self) -> list[Any]:
        """Every registered app with its placed instances (`GET /apps`, every page),
        confirmed state."""
        error: NodeUnreachableError | None = None
        for _ in self.node_urls:
            try:
                return await self._all_pages(self.node_url)
            except NodeUnreachableError as exc:
                error = exc
            self._next_node()
        assert error is not None
        raise error

    async def _all_pages(self, url: str) -> list[Any]:
        out: list[Any] = []
        after = ""
        for _ in range(MAX_PAGES):
            query = f"?{urlencode({'after': after})}" if after else ""
            body = await get_json(self.session, f"{url}/apps{query}")
            if not isinstance(body, dict) or not isinstance(body.get("apps"), list):
                raise NodeUnreachableError(f"GET {url}/apps: no apps list")
            out += body["apps"]
            following = body.get("next")
            if following is None:
                return out
            if not isinstance(following, str) or following <= after:
                raise NodeUnreachableError(f"GET {url}/apps: a page cursor that goes back")
            after = following
        raise NodeUnreachableError(f"GET {url}/apps: more than {MAX_PAGES} pages")

    async def follow(self, on_block: Callable[[int], None]) -> None:
        """Forever: each committed block of `/ws` calls `on_block(height)`; reconnects,
        to the next node when one stops answering."""
        while True:
            url = self.node_url
            try:
                async with self.session.ws_connect(url + "/ws", heartbeat=10) as ws:
                    self.connected = True
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        height = _height_of(message.json())
                        if height is not None and height > self.height:
                            self.height = height
                            on_block(height)
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError, RecursionError) as exc:
                log.warning("block stream from %s: %s", url, exc)
            self.connected = False
            if self.node_url == url:
                self._next_node()
            await asyncio.sleep(RECONNECT_S)


def _height_of(message: Any) -> int | None:
    with contextlib.suppress(KeyError, TypeError, ValueError, OverflowError):
        return int(message["height"])
    return None


async def agent_report(session: aiohttp.ClientSession, endpoint: str) -> Any:
    """`GET /agent` of the node whose registered endpoint is `endpoint` (host:port)."""
    return await get_json(
        session, f"http://{endpoint}/agent", timeout=REPORT_TIMEOUT_S, limit=MAX_REPORT_BYTES
    )
