"""Prometheus gauges for `/metrics`, read from the node's view when scraped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from fluxchain.api.view import NodeView


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
