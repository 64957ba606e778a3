"""p2p frames of a set of nodes, read from each node's `/metrics` (bench.wan, bench.devnet)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp


class Frames:
    """Frames the chain's nodes sent and received, summed over nodes, from each node's
    `/metrics` (fluxchain_p2p_frames_total by direction and kind, and
    fluxchain_p2p_messages_total: websocket messages, a BATCH of frames counting one). A
    node that does not export them (a build before the counters) counts nothing."""

    def __init__(self) -> None:
        self.frames: dict[tuple[str, str], float] = {}
        self.messages: dict[str, float] = {}
        self.tx_ids: dict[str, float] = {}
        # fluxchain_signatures_verified_total by path, and "taken":
        # fluxchain_admission_block_verified_taken_total (copies admitted unverified).
        self.signatures: dict[str, float] = {}

    @classmethod
    async def read(cls, session: aiohttp.ClientSession, apis: Sequence[str]) -> Frames:
        """The sums now, over the nodes serving `apis`."""
        totals = cls()
        texts = await asyncio.gather(
            *(_metrics_text(session, api) for api in apis), return_exceptions=True
        )
        for text in texts:
            if isinstance(text, BaseException):
                continue
            for line in text.splitlines():
                if line.startswith("fluxchain_p2p_frames_total{"):
                    labels, value = line[len("fluxchain_p2p_frames_total{") :].split("} ")
                    fields = dict(item.split("=") for item in labels.split(","))
                    key = (fields["direction"].strip('"'), fields["kind"].strip('"'))
                    totals.frames[key] = totals.frames.get(key, 0.0) + float(value)
                elif line.startswith("fluxchain_p2p_messages_total{"):
                    labels, value = line[len("fluxchain_p2p_messages_total{") :].split("} ")
                    direction = labels.split("=")[1].strip('"')
                    totals.messages[direction] = totals.messages.get(direction, 0.0) + float(value)
                elif line.startswith("fluxchain_p2p_tx_ids_total{"):
                    labels, value = line[len("fluxchain_p2p_tx_ids_total{") :].split("} ")
                    what = labels.split("=")[1].strip('"')
                    totals.tx_ids[what] = totals.tx_ids.get(what, 0.0) + float(value)
                elif line.startswith("fluxchain_signatures_verified_total{"):
                    labels, value = line[len("fluxchain_signatures_verified_total{") :].split("} ")
                    path = labels.split("=")[1].strip('"')
                    totals.signatures[path] = totals.signatures.get(path, 0.0) + float(value)
                elif line.startswith("fluxchain_admission_block_verified_taken_total "):
                    value = line.split(" ")[1]
                    totals.signatures["taken"] = totals.signatures.get("taken", 0.0) + float(value)
        return totals

    def since(
        self, before: Frames, seconds: float, nodes: int, txs: int = 0, confirmed: int = 0
    ) -> str:
        """key=value fields: frames a node sent and received a second, websocket messages
        it sent a second, and the kinds it sent most (per node per second); given the
        `txs` submitted, the tx relay's ids a node handled per tx (`ids_per_tx`); given
        the txs `confirmed`, the signatures a node verified per one (`sigs_per_tx`)."""
        if not self.frames:
            return "frames_per_s_node=-"
        per = seconds * nodes

        def rate(table: dict[Any, float], old: dict[Any, float], key: Any) -> float:
            return (table.get(key, 0.0) - old.get(key, 0.0)) / per

        sent = {
            kind: rate(self.frames, before.frames, (d, kind))
            for d, kind in self.frames
            if d == "sent"
        }
        received = sum(
            rate(self.frames, before.frames, key) for key in self.frames if key[0] == "received"
        )
        top = sorted(sent.items(), key=lambda item: -item[1])[:8]
        return (
            f"frames_per_s_node={sum(sent.values()):.0f}/{received:.0f} "
            f"messages_per_s_node={rate(self.messages, before.messages, 'sent'):.0f}/"
            f"{rate(self.messages, before.messages, 'received'):.0f} "
            f"sent_kinds={','.join(f'{kind}:{value:.0f}' for kind, value in top)}"
            + (f" {self.ids_per_tx(before, txs, nodes)}" if txs else "")
            + (f" {self.sigs_per_tx(before, confirmed, nodes)}" if confirmed else "")
        )

    def ids_per_tx(self, before: Frames, txs: int, nodes: int) -> str:
        """key=value field: the tx relay's ids a node handled per tx submitted
        (`fluxchain_p2p_tx_ids_total`: announced to it, news among them, announced by it,
        asked, fetched)."""
        if not self.tx_ids or txs <= 0:
            return "ids_per_tx_node=-"
        per = txs * nodes
        fields = (
            f"{what}:{(value - before.tx_ids.get(what, 0.0)) / per:.2f}"
            for what, value in sorted(self.tx_ids.items())
        )
        return f"ids_per_tx_node={','.join(fields)}"

    def sigs_per_tx(self, before: Frames, txs: int, nodes: int) -> str:
        """key=value fields: tx signatures all nodes verified since `before` per `txs` a
        node (`sigs_per_tx_node`: ~1.0 when each tx is verified once a node), and its
        paths, with the copies of block-checked txs admitted unverified (`taken`)."""
        if not self.signatures or txs <= 0:
            return "sigs_per_tx_node=-"
        per = txs * nodes
        delta = {
            path: (value - before.signatures.get(path, 0.0)) / per
            for path, value in sorted(self.signatures.items())
        }
        verified = sum(value for path, value in delta.items() if path != "taken")
        paths = ",".join(f"{path}:{value:.2f}" for path, value in delta.items())
        return f"sigs_per_tx_node={verified:.2f} sigs_by_path={paths}"

    def per_height(self, before: Frames, heights: int, nodes: int, validators: int) -> str:
        """key=value fields per height: heights decided, frames a node sent a height, and
        VOTE frames a node received per vote of another validator it needed (round 0: two
        a validator a height; 1.0 would be each vote once)."""
        if not self.frames or heights <= 0:
            return f"heights={heights}"

        def total(direction: str, kind: str | None = None) -> float:
            return sum(
                value - before.frames.get(key, 0.0)
                for key, value in self.frames.items()
                if key[0] == direction and (kind is None or key[1] == kind)
            )

        votes_needed = heights * 2 * validators * (nodes - 1)
        return (
            f"heights={heights} frames_per_height_node={total('sent') / heights / nodes:.0f} "
            f"vote_frames_per_vote={total('received', 'VOTE') / votes_needed:.2f}"
        )

    def per_tx(self, before: Frames, txs: int) -> str:
        """key=value fields: frames all nodes sent per tx, by kind (the most first), and
        websocket messages all nodes sent per tx (a BATCH of frames counting one)."""
        if not self.frames or txs <= 0:
            return "frames_per_tx=-"
        sent = {
            kind: (value - before.frames.get((d, kind), 0.0)) / txs
            for (d, kind), value in self.frames.items()
            if d == "sent"
        }
        messages = (self.messages.get("sent", 0.0) - before.messages.get("sent", 0.0)) / txs
        top = sorted(sent.items(), key=lambda item: -item[1])
        return (
            f"frames_per_tx={sum(sent.values()):.2f} messages_per_tx={messages:.2f} "
            f"sent_kinds={','.join(f'{kind}:{value:.3f}' for kind, value in top if value)}"
        )


async def _metrics_text(session: aiohttp.ClientSession, api: str) -> str:
    async with session.get(f"{api}/metrics") as response:
        return await response.text()
