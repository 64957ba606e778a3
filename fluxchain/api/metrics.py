"""Prometheus gauges for `/metrics`, read from the node's view when scraped, the API's
own counters of the requests its tx admission and its read budget refused, and the node's
tx signature checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from fluxchain.api.budget import REASONS as READ_REASONS
from fluxchain.api.shedding import BUSY, CLIENT_GONE, SLOW_BODY
from fluxchain.api.view import NodeView, SignatureCounts

# The reasons the admission gate refuses a request for, all of them always listed so that
# a rate over them starts at 0, not at the first refusal.
ADMISSION_REASONS: Final = (BUSY, SLOW_BODY, CLIENT_GONE)


class Metrics:
    """Prometheus gauges, one registry per node (tests run several nodes in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.height = Gauge(
            "fluxchain_height", "Height of the last committed block", registry=self.registry
        )
        self.round = Gauge(
            "fluxchain_consensus_round", "Current consensus round", registry=self.registry
        )
        self.peers = Gauge("fluxchain_peers", "Connected peers", registry=self.registry)
        self.mempool = Gauge("fluxchain_mempool_txs", "Txs in the mempool", registry=self.registry)
        self.mempool_bytes = Gauge(
            "fluxchain_mempool_bytes", "Bytes in the mempool", registry=self.registry
        )
        self.block_time = Gauge(
            "fluxchain_block_time_seconds", "Mean recent block interval", registry=self.registry
        )
        self.tps = Gauge(
            "fluxchain_tx_per_second",
            "Committed txs per second, recent blocks",
            registry=self.registry,
        )

    def refresh(self, view: NodeView) -> None:
        """Set every gauge from the node's current figures."""
        self.height.set(view.chain.height)
        self.round.set(view.consensus_round())
        self.peers.set(view.peer_count())
        txs, size = view.mempool_size
        self.mempool.set(txs)
        self.mempool_bytes.set(size)
        self.block_time.set(view.block_time_s())
        self.tps.set(view.tx_per_s())


class AdmissionRefusals(Collector):
    """`fluxchain_api_admission_refused_total{reason}`: tx posts the API's admission gate
    refused since start: `busy` (429, the queue full), `slow_body` (408), `client_gone`."""

    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        counts = self._read()
        refused = CounterMetricFamily(
            "fluxchain_api_admission_refused",
            "Tx posts the API's admission gate refused since start, by reason",
            labels=["reason"],
        )
        for reason in ADMISSION_REASONS:
            refused.add_metric([reason], counts.get(reason, 0))
        yield refused


class ReadRefusals(Collector):
    """`fluxchain_api_reads_refused_total{reason}`: requests the API's read budget refused
    since start (api/budget.py): `rate_limited`, `replay_limited` (both 429)."""

    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        counts = self._read()
        refused = CounterMetricFamily(
            "fluxchain_api_reads_refused",
            "Requests the API's read budget refused since start, by reason",
            labels=["reason"],
        )
        for reason in READ_REASONS:
            refused.add_metric([reason], counts.get(reason, 0))
        yield refused


class SignatureChecks(Collector):
    """`fluxchain_signatures_verified_total{path}`: tx signatures the node verified since
    start, `admission` (a tx's frame or post) or `block` (a block check's txs not admitted
    before, its verifier processes' included), and
    `fluxchain_admission_block_verified_taken_total`: copies of txs verified here before
    (by a block check, or by admission and then let go) admitted without a second check.
    Their sum over confirmed txs is ~1 when each is verified once."""

    def __init__(self, read: Callable[[], SignatureCounts]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        counts = self._read()
        verified = CounterMetricFamily(
            "fluxchain_signatures_verified",
            "Tx signatures this node verified since start, by path",
            labels=["path"],
        )
        verified.add_metric(["admission"], counts.admission)
        verified.add_metric(["block"], counts.block)
        yield verified
        yield CounterMetricFamily(
            "fluxchain_admission_block_verified_taken",
            "Copies of txs verified here before (a passed block check, or admission and let"
            " go), admitted without a second check",
            value=counts.block_verified_taken,
        )
