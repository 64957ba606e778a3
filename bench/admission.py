"""One node's per-tx work outside block execution, in CPU time: admission, the proposer's
candidate list, and the mempool's update after the block commits.

    python -m bench.admission [--rounds 5] [--txs 4000]

Each round opens a fresh devnet chain, signs TXS transfers from the four dev accounts,
and times with `time.process_time` (CPU, not wall clock: the yardstick on a shared
machine): the bare signature checks of those txs, `NodeService.submit` of each (what the
API and tx gossip call: decode, checks, signature, mempool insert), `candidates()` (what
a proposer builds from) and `on_committed` of the block that holds them (mempool update,
tx status, the block stream), then `late_us`: each tx submitted again as a peer's late
copy once its block is committed (refused `already_known`). The median round is printed:

    admission: submit_us=… verify_us=… ratio=… candidates_us=… committed_us=… late_us=…

`ratio` is submit over bare verify within the round, so it cancels the machine's drift.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fluxchain.core.errors import Reason, TxError
from fluxchain.genesis_builder import DEV_ACCOUNTS
from fluxchain.node.service import NodeService
from tests.support.chain import VALIDATORS, Builder, funded_key, open_chain


@dataclass(frozen=True, slots=True)
class Round:
    """µs of CPU per tx of one round."""

    submit_us: float
    verify_us: float
    candidates_us: float
    committed_us: float
    late_us: float

    @property
    def ratio(self) -> float:
        return self.submit_us / self.verify_us


def one_round(home: Path, count: int) -> Round:
    """Admit `count` transfers into a fresh chain's node service; time each stage."""
    chain = open_chain(home)
    try:
        service = NodeService(chain)
        builder = Builder(chain)
        keys = [funded_key(VALIDATORS + i) for i in range(DEV_ACCOUNTS)]
        sink = b"\x01" * 20  # one new account, then plain transfers
        txs = [builder.transfer(keys[i % len(keys)], sink) for i in range(count)]
        started = time.process_time()
        assert all(tx.signature_valid() for tx in txs)
        verify = time.process_time() - started
        started = time.process_time()
        for tx in txs:
            service.submit(tx.raw)
        submit = time.process_time() - started
        started = time.process_time()
        candidates = service.candidates()
        listed = time.process_time() - started
        assert len(candidates) == count
        block = builder.commit(candidates)
        started = time.process_time()
        service.on_committed(block, ())
        committed = time.process_time() - started
        assert len(service.mempool) == 0
        started = time.process_time()
        for tx in txs:
            try:
                service.submit(tx.raw, from_peer=True)
            except TxError as exc:
                assert exc.reason is Reason.ALREADY_KNOWN, exc
        late = time.process_time() - started
        per_tx = 1e6 / count
        return Round(
            submit * per_tx, verify * per_tx, listed * per_tx, committed * per_tx, late * per_tx
        )
    finally:
        chain.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--txs", type=int, default=4_000, help="txs a round (≤ 4,000)")
    args = parser.parse_args()
    if not 1 <= args.txs <= 1_000 * DEV_ACCOUNTS or args.rounds < 1:
        parser.error("--txs must be 1..4000 (the mempool's per-sender limit), --rounds ≥ 1")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="flux-bench-admission-") as work:
        for i in range(args.rounds):
            measured = one_round(Path(work) / f"round{i}", args.txs)
            rounds.append(measured)
            print(
                f"round {i}: submit_us={measured.submit_us:.1f} "
                f"verify_us={measured.verify_us:.1f} ratio={measured.ratio:.2f} "
                f"candidates_us={measured.candidates_us:.2f} "
                f"committed_us={measured.committed_us:.2f} late_us={measured.late_us:.1f}",
                flush=True,
            )
    by_ratio = sorted(rounds, key=lambda r: r.ratio)
    mid = by_ratio[(len(by_ratio) - 1) // 2]
    print(
        f"admission: submit_us={mid.submit_us:.1f} verify_us={mid.verify_us:.1f} "
        f"ratio={mid.ratio:.2f} candidates_us={mid.candidates_us:.2f} "
        f"committed_us={mid.committed_us:.2f} late_us={mid.late_us:.1f}"
    )


if __name__ == "__main__":
    main()
