"""The TXS gossip frame's payload: a non-empty, bounded array of tx encodings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from fluxchain.core.encoding import pack
from fluxchain.core.errors import DecodeError
from fluxchain.genesis_builder import DEV_ACCOUNTS
from fluxchain.node.node import (
    MAX_TXS_PER_FRAME,
    TXS_GOSSIP_WAIT_S,
    TXS_PER_TURN,
    Node,
    _decode_txs_payload,
)
from fluxchain.node.service import NodeService
from p2p.messages import Kind
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain
from tests.support.wait import wait_until_async


def test_a_batch_of_tx_encodings_decodes_in_order() -> None:
    assert _decode_txs_payload(pack([b"a", b"bc"])) == [b"a", b"bc"]


@pytest.mark.parametrize(
    "payload",
    [
        pack([]),  # nothing in it
        pack([b"a", 1]),  # not a byte string
        pack(b"a"),  # not an array
        pack([b"a"] * (MAX_TXS_PER_FRAME + 1)),  # over the bound
        pack([b"a"]) + b"\x00",  # trailing bytes
    ],
)
def test_malformed_batches_are_refused(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        _decode_txs_payload(payload)


def test_a_full_txs_frame_lets_the_event_loop_turn_while_it_is_admitted(tmp_path: Path) -> None:
    """Issue 24: a full TXS frame (2,000 txs, ~100 ms of signature checks) was admitted in
    one go, and votes and the consensus task waited behind it. Now the loop turns every
    TXS_PER_TURN txs; every tx is still admitted and the frame is still relayed."""
    chain = open_chain(tmp_path)
    try:
        builder = Builder(chain)
        keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
        raws = [builder.transfer(keys[i % len(keys)], b"\x01" * 20).raw for i in range(2_000)]
        service = NodeService(chain)
        host = SimpleNamespace(service=service, network=None)

        async def scenario() -> tuple[bool, int]:
            turns = 0
            done = False

            async def ticker() -> None:
                nonlocal turns
                while not done:
                    turns += 1
                    await asyncio.sleep(0)

            ticking = asyncio.get_running_loop().create_task(ticker())
            await asyncio.sleep(0)
            start = turns
            relay = await Node._on_txs(host, "peer-a", raws)  # type: ignore[arg-type]
            done = True
            await ticking
            return relay, turns - start

        relay, turns = asyncio.run(scenario())
        assert relay and len(service.mempool) == len(raws)
        assert turns >= len(raws) // TXS_PER_TURN - 1
    finally:
        chain.close()


def test_txs_admitted_over_many_short_turns_leave_in_few_frames(tmp_path: Path) -> None:
    """Issue 24: with API batches admitted 50 txs a turn (api/shedding.py), a TXS frame per
    turn of the loop would be a frame per 50 txs, each with its own encryption, websocket
    and relay costs at every peer. A locally admitted tx waits TXS_GOSSIP_WAIT_S for others
    to share its frame: 1,000 txs admitted 50 a turn leave in a few frames, every tx once,
    in order."""
    chain = open_chain(tmp_path)
    try:
        builder = Builder(chain)
        keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
        txs = [builder.transfer(keys[i % len(keys)], b"\x01" * 20) for i in range(1_000)]
        frames: list[list[bytes]] = []
        host = _gossip_host(lambda payload: frames.append(_decode_txs_payload(payload)))

        async def scenario() -> None:
            for index, tx in enumerate(txs):
                if index % 50 == 0:
                    await asyncio.sleep(0)  # a turn of the loop between slices
                Node._gossip_tx(host, tx)  # type: ignore[arg-type]
            await wait_until_async(
                lambda: sum(map(len, frames)) >= len(txs), 10, "every admitted tx sent"
            )

        asyncio.run(scenario())
        assert [raw for frame in frames for raw in frame] == [tx.raw for tx in txs]
        assert len(frames) <= 2
    finally:
        chain.close()


def _gossip_host(sent: Callable[[bytes], object]) -> SimpleNamespace:
    """Just the part of a Node that `_gossip_tx` and `_flush_txs` use."""
    host = SimpleNamespace(_outgoing_txs=[], _outgoing_bytes=0, _txs_timer=None)
    host.network = SimpleNamespace(note_own_txs=lambda tx_ids: None)  # fix17: the relay told
    host._broadcast = lambda kind, payload, lane=None: sent(payload)
    host._flush_txs = lambda: Node._flush_txs(host)  # type: ignore[arg-type]
    return host


def test_a_tx_after_a_full_frame_waits_its_own_time_not_the_full_frames(tmp_path: Path) -> None:
    """rev11: a frame that left full kept its wait timer, which then flushed the next
    frame's first txs early (a partial frame, more frames under load). A tx queued after
    a full frame leaves TXS_GOSSIP_WAIT_S after its own arrival, or later; never sooner
    (a timer never fires early, so a loaded machine cannot make this fail falsely)."""
    chain = open_chain(tmp_path)
    try:
        builder = Builder(chain)
        keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
        txs = [
            builder.transfer(keys[i % len(keys)], b"\x01" * 20)
            for i in range(MAX_TXS_PER_FRAME + 1)
        ]
        left: list[tuple[float, int]] = []

        async def scenario() -> float:
            loop = asyncio.get_running_loop()
            host = _gossip_host(
                lambda payload: left.append((loop.time(), len(_decode_txs_payload(payload))))
            )
            for tx in txs[:-1]:
                Node._gossip_tx(host, tx)  # type: ignore[arg-type]
            await asyncio.sleep(TXS_GOSSIP_WAIT_S * 0.75)
            queued_at = loop.time()
            Node._gossip_tx(host, txs[-1])  # type: ignore[arg-type]
            await asyncio.sleep(TXS_GOSSIP_WAIT_S * 3)
            return queued_at

        queued_at = asyncio.run(scenario())
        assert [count for _, count in left] == [MAX_TXS_PER_FRAME, 1]
        assert left[1][0] - queued_at >= TXS_GOSSIP_WAIT_S * 0.99
    finally:
        chain.close()


def test_gossiped_txs_are_announced_by_id_not_relayed_by_body(tmp_path: Path) -> None:
    """Issue 22 (wan22n): a TXS frame from a peer was relayed on as it came, body and all,
    to four more peers, so every 1 KB tx crossed ~90 links of a 19-node mesh. Now the txs
    a node admits from a peer are announced by id (the network sends TX_IDS to peers not
    known to hold them, which fetch what they lack) and the frame itself is not relayed;
    a tx it already holds, or refuses, is not announced."""
    chain = open_chain(tmp_path)
    try:
        builder = Builder(chain)
        keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
        txs = [builder.transfer(keys[i % len(keys)], b"\x01" * 20) for i in range(4)]
        service = NodeService(chain)
        service.submit(txs[0].raw, from_peer=True)  # held already
        announced: list[tuple[list[bytes], str | None]] = []
        punished: list[str] = []
        network = SimpleNamespace(
            announce_txs=lambda ids, source=None: announced.append((list(ids), source)),
            punish=lambda peer_id, points, reason: punished.append(peer_id),
        )
        host = SimpleNamespace(
            service=service, network=network, genesis=SimpleNamespace(chain_id="x")
        )
        host._on_txs = lambda *args: Node._on_txs(host, *args)  # type: ignore[arg-type]
        payload = pack([tx.raw for tx in txs] + [b"\x00garbage"])

        relay = asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, payload))  # type: ignore[arg-type]

        assert relay is False
        assert announced == [([tx.id for tx in txs[1:]], "peer-a")]
        assert len(service.mempool) == 4
        assert punished == ["peer-a"]  # the garbage still costs its sender, as before
    finally:
        chain.close()
