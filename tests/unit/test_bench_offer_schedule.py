"""The devnet bench's ways of posting (issue 24, sessions 18 and 21). By default one client
a node posts on its own, so a node slow to answer delays only its own senders' txs, never
another node's posts, and the load is offered on schedule; concurrent clients (the flood)
keep the schedule too; serial ones (the default before session 21) let that node hold back
every node's batches, which `submit_s` shows. A tx's latency counts from its tick."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web

from bench.devnet import Follower
from bench.load_clients import Load, batch_body
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.tx import Transfer, Tx
from tests.support.bench_nodes import NODES, offer_to_fake_nodes

SLOW_S = 0.3  # node 0's answer to each post: three ticks
HOLD_S = 30.0  # a held node's answer at the latest: far past the load's second
RATE, SECONDS = 200, 1  # ten ticks of 20 txs


class Nodes:
    """Four fake nodes; `slow_node` answers each post SLOW_S late, or, `held`, holds its
    answers until every other node has all its txs (a node as slow as it gets; at most
    HOLD_S). Every answered tx is final at once; each tx's arrival at its node and each
    node's posts in flight are kept."""

    def __init__(self, slow_node: int, *, held: bool = False) -> None:
        self.slow_node = slow_node
        self.held = held
        self.follower = Follower()
        self.arrived: dict[bytes, tuple[int, float, int]] = {}  # id: node, when, nonce
        self.in_flight: Counter[int] = Counter()
        self.peak: Counter[int] = Counter()
        self.posts: Counter[int] = Counter()
        self.others_have_all = asyncio.Event()
        self.hold_outlasted = False  # the others never got all their txs while it held

    async def batch(self, request: web.Request) -> web.Response:
        node = int(request.match_info["node"])
        self.in_flight[node] += 1
        self.peak[node] = max(self.peak[node], self.in_flight[node])
        self.posts[node] += 1
        try:
            now = time.perf_counter()  # the clock of `Load.submitted`
            txs = [Tx.decode(bytes.fromhex(t), 1 << 20) for t in (await request.json())["txs"]]
            for tx in txs:
                self.arrived[tx.id] = (node, now, tx.nonce)
            # Sender s posts through node s % NODES (`by_client`), one sender a node here.
            others = sum(1 for n, _, _ in self.arrived.values() if n != self.slow_node)
            if others == RATE * SECONDS * (NODES - 1) // NODES:
                self.others_have_all.set()
            if node == self.slow_node:
                await self._answer_late()
            final_at = asyncio.get_running_loop().time()
            for tx in txs:
                self.follower.final[hashlib.sha256(tx.raw).digest()] = final_at
            return web.json_response({"results": [{} for _ in txs]})
        finally:
            self.in_flight[node] -= 1

    async def _answer_late(self) -> None:
        if not self.held:
            await asyncio.sleep(SLOW_S)
            return
        if self.hold_outlasted:
            return
        try:
            await asyncio.wait_for(self.others_have_all.wait(), HOLD_S)
        except TimeoutError:
            self.hold_outlasted = True

    async def offer(self, **options: Any) -> Load:
        return await offer_to_fake_nodes(self.batch, self.follower, NODES, RATE, SECONDS, **options)


def test_by_default_a_slow_node_delays_no_other_nodes_posts() -> None:
    nodes = Nodes(slow_node=0, held=True)
    load = asyncio.run(nodes.offer())
    assert len(load.submitted) == RATE * SECONDS and not load.refused
    assert set(load.submitted) <= nodes.follower.final.keys()
    # Every other node got every tick's txs while node 0 had answered none of its posts:
    # no tick, and no other node's post, waited on node 0's answer.
    assert not nodes.hold_outlasted, (
        f"node 0 held its answer {HOLD_S} s and the other nodes still lacked txs: "
        f"{Counter(node for node, _, _ in nodes.arrived.values())}"
    )
    # One post in flight a node; node 0's txs, which came while it answered, went in the
    # next post (fewer posts than ticks), each sender's in nonce order.
    assert max(nodes.peak.values()) == 1, dict(nodes.peak)
    assert nodes.posts[0] < SECONDS / 0.1, dict(nodes.posts)
    slow = sorted((at, nonce) for node, at, nonce in nodes.arrived.values() if node == 0)
    assert [nonce for _, nonce in slow] == sorted(nonce for _, nonce in slow)


def test_concurrent_clients_keep_the_schedule_with_a_slow_node() -> None:
    nodes = Nodes(slow_node=0, held=True)
    load = asyncio.run(nodes.offer(posting="concurrent"))
    assert len(load.submitted) == RATE * SECONDS and not load.refused
    # Every tick's txs reached the other nodes while node 0 answered nothing.
    assert not nodes.hold_outlasted, (
        f"node 0 held its answer {HOLD_S} s and the other nodes still lacked txs: "
        f"{Counter(node for node, _, _ in nodes.arrived.values())}"
    )


def test_serial_clients_wait_on_the_slow_node() -> None:
    load = asyncio.run(Nodes(slow_node=0).offer(posting="serial"))
    # Ten ticks behind one slow answer each: the last began about 10 x SLOW_S - 0.9 s late.
    assert load.late_s > 3 * SLOW_S and load.submit_s > 10 * SLOW_S


def test_a_batch_body_encoded_ahead_is_the_json_the_api_takes() -> None:
    """`Load.encode` then `batch_body` give the body `{"txs": [hex, ...]}`, and a tx not
    encoded ahead (a funding tx) is encoded on the spot."""
    key = SigningKey(sha256(b"body"))
    txs = [
        Tx.create(key, "flux-devnet", n, 1_000, Transfer(b"\x01" * 20, 1, b"")) for n in range(3)
    ]
    load = Load(1)
    load.encode(txs[:2])
    assert json.loads(batch_body(txs, load.encoded)) == {"txs": [t.raw.hex() for t in txs]}
