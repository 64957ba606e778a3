"""Review red23b of the block stream's replay (`GET /ws?from=H`, api/routes.py `get_ws`):
what one request costs the node's event loop, the loop consensus runs on.

The replay reads, renders and sends every committed block from H to the head in one
loop: `ws.send_json` only yields when the socket's buffers are full, so to a client that
reads as fast as the node writes (a host in the same data centre, or one on this host)
every block from H is sent without consensus getting a turn. `from` may be 1 (no bound
but the head), and each block costs ~90 us here when empty (read from disk with its
events, rendered as JSON): a chain of a day at a block a second is ~8 s of the loop per
request, which anyone who reaches the API sends as often as it likes (honest explorers
and dashboards replaying from 1 do the same). Measured with a client in another process
over 127.0.0.1 (load 6.7): 2,000 empty blocks held the loop 0.24 s in one stretch.

The test counts the blocks read between two turns of the loop, not time: with the
client in the same process nothing drains the socket meanwhile, so a replay that never
yields reads every block in one turn.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.node.service import CommittedBlock, NodeService
from tests.api.test_api import Client, commit, run
from tests.support.chain import Builder

BLOCKS = 200
# Blocks a replay may send between two turns of the loop (~6 ms of empty blocks here).
MAX_BLOCKS_A_TURN = 64


def test_red23b_a_replay_from_height_1_lets_the_loop_turn_between_blocks(tmp_path: Path) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        for _ in range(BLOCKS):
            commit(service, b)
        turns = 0
        read_at_turn: list[int] = []
        committed_block = service.committed_block

        def counted(height: int) -> CommittedBlock | None:
            read_at_turn.append(turns)
            return committed_block(height)

        service.committed_block = counted  # type: ignore[method-assign]

        async def ticker() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        try:
            ws = await client.ws_connect("/ws?from=1")
            heights = [(await ws.receive_json())["height"] for _ in range(BLOCKS)]
            await ws.close()
        finally:
            ticking.cancel()
        assert heights == list(range(1, BLOCKS + 1))
        most = max(read_at_turn.count(turn) for turn in set(read_at_turn))
        assert most <= MAX_BLOCKS_A_TURN, (
            f"the replay read {most} of {BLOCKS} blocks in one turn of the event loop: "
            "GET /ws?from=1 holds consensus off for the whole chain's replay"
        )

    run(tmp_path, body)
