"""Prometheus counters of the p2p layer's frames, read from the switch when scraped.

A collector rather than gauges set by `Metrics.refresh`: the figures are counters the
switch keeps itself (`p2p.connection.FrameCounts`), and their kinds are only known when
read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# What `Network.frame_counts` returns: {"sent"|"received": {kind: frames},
# "wire": {"sent"|"received": websocket messages}, "tx_ids": {what: ids}}.
FrameCountsReader = Callable[[], Mapping[str, Mapping[str, int]]]


class FrameCollector(Collector):
    """`fluxchain_p2p_frames_total{direction, kind}` (a frame of a batch counts as its own
    kind) and `fluxchain_p2p_messages_total{direction}` (websocket messages: a batch of
    frames is one), and `fluxchain_p2p_tx_ids_total{what}` (ids through the tx relay:
    announced_in, news, announced_out, asked, unasked, fetched, held)."""

    def __init__(self, read: FrameCountsReader) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        counts = self._read()
        frames = CounterMetricFamily(
            "fluxchain_p2p_frames",
            "p2p frames sent and received since start, by kind",
            labels=["direction", "kind"],
        )
        for direction in ("sent", "received"):
            for kind, value in counts.get(direction, {}).items():
                frames.add_metric([direction, kind], value)
        yield frames
        messages = CounterMetricFamily(
            "fluxchain_p2p_messages",
            "p2p websocket messages sent and received since start (a batch of frames is one)",
            labels=["direction"],
        )
        for direction, value in counts.get("wire", {}).items():
            messages.add_metric([direction], value)
        yield messages
        ids = CounterMetricFamily(
            "fluxchain_p2p_tx_ids",
            "tx ids through the relay since start: announced to us (news: a fetch started), "
            "announced by us, asked of peers, fetched",
            labels=["what"],
        )
        for what, value in counts.get("tx_ids", {}).items():
            ids.add_metric([what], value)
        yield ids
