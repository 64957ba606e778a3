"""A single-process devnet for the wallet's end-to-end tests.

    python -m tests.wallet.devnode --port 0 --home DIR [--port-file F] [--block-ms 200]

Opens a Chain on the 4-validator devnet genesis, serves the real node API (NodeService +
create_app) on 127.0.0.1, and every `--block-ms` builds a block from the mempool's
candidates and imports it with a commit signed by all four validator keys — what
tests/support/chain.Builder does, plus what a real proposer does with txs that no longer
apply (`note_dropped`, so `GET /txs/{id}` says `rejected` with the chain's reason).
The validators' hot keys also send their NODE_CONFIRM each confirm window (the node
daemon's duty), so the genesis Stratus nodes stay confirmed and keep hosting apps.

With `--port 0` the OS picks the port; it is written to `--port-file` once the API
listens. The genesis is written to HOME/genesis.json: the wallets of the tests trust it.
SIGTERM / SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

from aiohttp import web

from fluxchain.api.server import create_app
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import TxError
from fluxchain.core.genesis import Genesis
from fluxchain.core.tx import Benchmark, NodeConfirm, Tx
from fluxchain.core.votes import Commit, sign_commit
from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.node.duties import VERSION, confirm_due
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import VALIDATORS, node_hot_key, proposer_reveal

log = logging.getLogger("devnode")

# Comfortably above the devnet's (laptop-sized) Stratus minimums.
BENCHMARK = Benchmark(
    cores=8,
    threads=16,
    ram_mb=65_536,
    disk_gb=880,
    disk_write_mbps=1_000,
    cpu_score=1_000,
    bandwidth_mbit=1_000,
)


class Producer:
    """Makes one block per tick from the mempool, signed by every validator."""

    def __init__(self, chain: Chain, service: NodeService) -> None:
        self.chain = chain
        self.service = service
        self.last_commit: Commit | None = None
        self.keys = {node_hot_key(i).public_key: node_hot_key(i) for i in range(VALIDATORS)}

    def signers(self) -> list[SigningKey]:
        return [
            self.keys[v.pubkey] for v in self.chain.validators().validators if v.pubkey in self.keys
        ]

    def send_confirms(self) -> None:
        """Each validator's NODE_CONFIRM when its window asks for one (fee-free)."""
        params, state = self.chain.params, self.chain.state
        for key in self.keys.values():
            node = confirm_due(state, params, key.public_key, self.chain.height)
            if node is None:
                continue
            address = address_of(key.public_key)
            nonce = self.service.mempool.next_nonce(address, self.service.account_of(address).nonce)
            tx = Tx.create(
                key, params.chain_id, nonce, 0, NodeConfirm(node.node_id, BENCHMARK, VERSION)
            )
            with contextlib.suppress(TxError):  # already pooled or too soon: retried next block
                self.service.submit(tx.raw)

    def produce(self) -> Block:
        self.send_confirms()
        candidates = self.service.candidates()
        block, execution, rejected = self.chain.build_block(
            now_ms=int(time.time() * 1000),
            round_=0,
            last_commit=self.last_commit,
            candidates=candidates,
            reveal=proposer_reveal(self.chain, 0),
        )
        self.chain.abort(execution)
        for tx, exc in rejected:
            if isinstance(exc, TxError):
                self.service.note_dropped(tx, exc)
        commit = sign_commit(
            self.signers(), self.chain.params.chain_id, block.height, 0, block.hash()
        )
        block = Block.decode(block.encode(), 1 << 30, 1 << 20)
        self.chain.import_block(block, commit)
        self.last_commit = commit
        self.service.on_committed(block, tuple(self.chain.events(block.height)))
        return block


def devnode_genesis(home: Path) -> Genesis:
    """The devnode's genesis, written to HOME/genesis.json (what a wallet trusts) when new.

    Dated now: a light client trusts the genesis for one trust period from its time."""
    path = home / "genesis.json"
    if path.exists():
        return Genesis.load(path)
    genesis = new_devnet_genesis(VALIDATORS, genesis_time_ms=int(time.time() * 1000))
    home.mkdir(parents=True, exist_ok=True)
    genesis.save(path)
    return genesis


async def serve(home: Path, port: int, port_file: Path | None, block_ms: int) -> None:
    chain = Chain.open(home, devnode_genesis(home))
    service = NodeService(chain)
    runner = web.AppRunner(create_app(service))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(bound))
        tmp.replace(port_file)
    log.info("devnode listening port=%d home=%s", bound, home)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = Producer(chain, service)
    try:
        while not stop.is_set():
            producer.produce()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), block_ms / 1000)
    finally:
        await runner.cleanup()
        chain.close()
        log.info("devnode stopped height=%d", chain.height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, default=None)
    parser.add_argument("--block-ms", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.home, args.port, args.port_file, args.block_ms))


if __name__ == "__main__":
    main()
