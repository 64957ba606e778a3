"""One node's Python work a tx on admission and the pool, with a warm pool of ~50,000.

    python -P -m bench.pool [--rounds 3] [--signatures]

Each round opens a fresh devnet chain, funds SENDERS accounts in one block, pools WARM of
their transfers in two node services (one as the API, one as a peer's gossip), then times
with `time.process_time` (CPU, the yardstick on a shared machine), per tx: `Mempool.add`
alone on a warm pool of its own (`add_us`), `NodeService.submit` of NEW more through the
API (`api_us`) and as a peer's copy (`peer_us`), a second peer's copy of each
(`copy_us`, refused `already_known`), and `on_committed` of a full block of pooled txs
(`committed_us`). The signature check's C call is left out unless `--signatures`: it is
the same on every tree and its spread hides the rest. The median of each is printed:

    pool: add_us=… api_us=… peer_us=… copy_us=… committed_us=…
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import fluxchain.core.tx as tx_module
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.mempool import DEFAULT_MAX_TXS, Mempool
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import FEE, VALIDATORS, Builder, funded_key, open_chain
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key

SENDERS = 64  # as bench.devnet's load
BLOCK = 9_984  # a block of the devnet's 10,000 cap, whole nonces a sender
NEW = 6_400
WARM = DEFAULT_MAX_TXS - NEW  # the pool ends full


@contextlib.contextmanager
def cpu_timed(out: dict[str, list[float]], name: str, count: int) -> Iterator[None]:
    """Add the block's CPU µs a tx (of `count`) to `out[name]`, the collector off."""
    gc.collect()
    gc.disable()
    started = time.process_time()
    try:
        yield
    finally:
        out.setdefault(name, []).append((time.process_time() - started) * 1e6 / count)
        gc.enable()


def _signature_not_checked(key: bytes, digest: bytes, signature: bytes) -> bool:
    """The signature check's C call, left out (the bench's signed txs are all valid)."""
    return True


def funded_chain(home: Path, senders: list[SigningKey]) -> tuple[Chain, Builder]:
    chain = open_chain(home)
    builder = Builder(chain)
    funders = [funded_key(VALIDATORS + i) for i in range(4)]
    pay = [
        builder.transfer(funders[i % 4], address_of(s.public_key), 10_000 * COIN)
        for i, s in enumerate(senders)
    ]
    builder.commit(pay)
    return chain, builder


def one_round(
    home: Path, senders: list[SigningKey], txs: list[Tx], out: dict[str, list[float]]
) -> None:
    chain, builder = funded_chain(home, senders)
    try:
        warm, new = txs[:WARM], txs[WARM:]
        api, peer = NodeService(chain), NodeService(chain)
        pool = Mempool()
        for tx in warm:
            api.submit(tx.raw)
            peer.submit(tx.raw, from_peer=True, peer="a")
            pool.add(tx, api.account_of)
        with cpu_timed(out, "add_us", len(new)):
            for tx in new:
                pool.add(tx, api.account_of)
        with cpu_timed(out, "api_us", len(new)):
            for tx in new:
                api.submit(tx.raw)
        with cpu_timed(out, "peer_us", len(new)):
            for tx in new:
                peer.submit(tx.raw, from_peer=True, peer="a")
        with cpu_timed(out, "copy_us", len(new)):
            for tx in new:
                with contextlib.suppress(TxError):
                    peer.submit(tx.raw, from_peer=True, peer="b")
        block = builder.commit([tx for i, tx in enumerate(warm) if i < BLOCK])
        assert len(block.txs) == BLOCK, len(block.txs)
        with cpu_timed(out, "committed_us", 2 * BLOCK):
            api.on_committed(block, ())
            peer.on_committed(block, ())
        assert len(api.mempool) == len(peer.mempool) == len(txs) - BLOCK
    finally:
        chain.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--signatures", action="store_true", help="check signatures too")
    args = parser.parse_args()
    if not args.signatures:
        setattr(tx_module, "verify", _signature_not_checked)  # noqa: B010  (not exported: mypy)
    senders = [derive_key(INSECURE_TEST_MNEMONIC, account_path(100 + i)) for i in range(SENDERS)]
    to = address_of(funded_key(VALIDATORS).public_key)  # an account: no new payee's deposit
    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="flux-bench-pool-") as work:
        chain_id = open_chain(Path(work) / "ids").params.chain_id
        per = (WARM + NEW) // SENDERS
        txs = [
            Tx.create(senders[i % SENDERS], chain_id, i // SENDERS, FEE, Transfer(to, 1))
            for i in range(SENDERS * per)
        ]
        for i in range(args.rounds):
            one_round(Path(work) / f"round{i}", senders, txs, out)
            print(f"round {i}: " + " ".join(f"{k}={v[-1]:.2f}" for k, v in out.items()), flush=True)
    print("pool: " + " ".join(f"{k}={statistics.median(v):.2f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
