"""Issue 24 (shed18): a flood of API batches must not stall block production.

Twenty clients each post two 1,000-tx batches at once to a real node (`fluxchain run` on
loopback), as independent wallets do, without waiting for earlier answers. Before, every
batch in flight admitted 50 txs a turn of the node's loop, so consensus got a turn every
Nx50 txs and heights stopped while the posts piled up (bench.devnet --concurrent-clients
stalled 18-39 s). Now admission goes through one gate: blocks keep coming, the posts past
its queue are answered 429 `busy` with Retry-After, and a client that retries then gets
every tx in: none is lost without an answer.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp

from fluxchain.api.models import MAX_BATCH
from fluxchain.api.shedding import BUSY
from fluxchain.core.crypto import SigningKey, address_of, encode_address
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import DEV_ACCOUNTS
from tests.integration.harness import Devnet
from tests.support.wait import wait_until
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

CLIENTS = 20
BATCHES_PER_CLIENT = 2
FEE = 1_000
MAX_BLOCK_GAP_S = 3.0  # devnet blocks are 1 s apart; a full one takes longer on 2 cores
DRAIN_S = 90.0


def _key(i: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, account_path(i))


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as answer:
        return await answer.json()


async def _nonce(session: aiohttp.ClientSession, url: str, key: SigningKey, hrp: str) -> int:
    address = encode_address(address_of(key.public_key), hrp)
    return int((await _json(session, f"{url}/accounts/{address}"))["nonce"])


async def _post_until_taken(
    session: aiohttp.ClientSession, url: str, batch: list[Tx], answers: list[tuple[int, Any]]
) -> None:
    """Post `batch`; on 429 `busy`, wait Retry-After and post it again, as a client does."""
    while True:
        body = {"txs": [t.raw.hex() for t in batch]}
        async with session.post(f"{url}/txs/batch", json=body) as r:
            answer = await r.json()
            answers.append((r.status, answer))
            if r.status != 429:
                return
            assert answer["error"]["reason"] == BUSY, answer
            await asyncio.sleep(float(r.headers["Retry-After"]))


async def _flood(devnet: Devnet) -> tuple[list[tuple[float, int]], list[tuple[int, Any]], float]:
    url = devnet.url(0)
    chain_id = devnet.genesis.chain_id
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0)  # one connection per client, as wallets have
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        hrp = str((await _json(session, f"{url}/params"))["address_hrp"])
        funders = [_key(i) for i in range(devnet.validators + DEV_ACCOUNTS)]
        senders = [_key(1_000 + i) for i in range(CLIENTS * BATCHES_PER_CLIENT)]
        sink = address_of(funders[0].public_key)
        start = [await _nonce(session, url, k, hrp) for k in funders]
        funding = [
            Tx.create(
                funders[i % len(funders)],
                chain_id,
                start[i % len(funders)] + i // len(funders),
                FEE,
                Transfer(address_of(s.public_key), 100 * COIN),
            )
            for i, s in enumerate(senders)
        ]
        answers: list[tuple[int, Any]] = []
        await _post_until_taken(session, url, funding, answers)
        deadline = time.monotonic() + 60
        while [await _nonce(session, url, k, hrp) for k in funders] != [
            n + sum(1 for i in range(len(senders)) if i % len(funders) == j)
            for j, n in enumerate(start)
        ]:
            assert time.monotonic() < deadline, "the senders were not funded"
            await asyncio.sleep(0.2)
        batches = [
            [Tx.create(s, chain_id, n, FEE, Transfer(sink, COIN // 100)) for n in range(MAX_BATCH)]
            for s in senders
        ]
        heights: list[tuple[float, int]] = []
        flooding = True

        async def watch() -> None:
            while flooding:
                status = await _json(session, f"{url}/status")
                heights.append((time.monotonic(), int(status["height"])))
                await asyncio.sleep(0.1)

        watcher = asyncio.ensure_future(watch())
        answers.clear()
        began = time.monotonic()
        await asyncio.gather(*(_post_until_taken(session, url, b, answers) for b in batches))
        answered_s = time.monotonic() - began
        deadline = time.monotonic() + DRAIN_S
        while [await _nonce(session, url, s, hrp) for s in senders] != [MAX_BATCH] * len(senders):
            assert time.monotonic() < deadline, "the flood's txs were not all committed"
            await asyncio.sleep(0.5)
        flooding = False
        await watcher
        return heights, answers, answered_s


def test_shed18_twenty_clients_flooding_batches_keep_blocks_coming(tmp_path: Path) -> None:
    devnet = Devnet(tmp_path, validators=1)
    try:
        devnet.start(0)
        wait_until(
            lambda: (devnet.try_get(0, "/status") or {}).get("height", 0) >= 2,
            60,
            "the first blocks",
            nodes=devnet,
        )
        heights, answers, answered_s = asyncio.run(_flood(devnet))
        # Every post was answered: taken (each tx pending) or refused as a whole for now.
        taken = [body for status, body in answers if status == 200]
        busy = [body for status, body in answers if status == 429]
        assert len(taken) + len(busy) == len(answers), [s for s, _ in answers]
        assert len(taken) == CLIENTS * BATCHES_PER_CLIENT
        assert all("id" in r for body in taken for r in body["results"])
        # Blocks kept coming from the first post until every tx was committed.
        changes = [t for (_, before), (t, h) in itertools.pairwise(heights) if h != before]
        gaps = [b - a for a, b in itertools.pairwise([heights[0][0], *changes])]
        rise = heights[-1][1] - heights[0][1]
        print(f"answered_s={answered_s:.1f} busy={len(busy)} blocks={rise} gaps={gaps}")
        assert rise >= 4  # 40,000 txs: at least four devnet blocks (12,000 a block)
        assert max(gaps) <= MAX_BLOCK_GAP_S, f"no block for {max(gaps):.1f} s: {gaps}"
        assert busy, "forty batches at once fit the admission queue: nothing was shed"
    finally:
        devnet.close()
