"""Where a loaded node's CPU goes: process CPU times and py-spy profiles by activity.

`bench.devnet --profile DIR` samples each node process (and its verifier processes) with
py-spy while the load runs, writes the raw stacks to DIR/nodeN.txt, and prints one table
row per activity: the share of each node's on-CPU samples. `cpu_seconds` reads a process
tree's CPU time from /proc (Linux), which is what a change is judged by on a shared
machine: CPU per confirmed tx does not move with the other engineers' load the way wall
clock does.

    python -m bench.profile DIR/node0.txt DIR/node1.txt …   # the table of saved stacks
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# Leaf frames of a thread that waits (py-spy counts a waiting thread as busy when it
# cannot see the wait): the event loop's poll, an idle thread-pool worker, a verifier
# process waiting for work.
IDLE_LEAVES: Final = (
    "EpollSelector.select (selectors.py",
    "_worker (concurrent/futures/thread.py:81)",
    "Connection._recv (multiprocessing/connection.py",
    # a waiting worker thread (the block-sync checker's feed, perf14w)
    "Condition.wait (threading.py",
)

# Activity -> frames that mark it; a stack goes to the first activity one of whose frames
# it holds, so the order matters (admission runs under the API and the gossip handler).
ACTIVITIES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("verifier processes (block signatures)", ("_serve (fluxchain/store/verifier.py",)),
    ("admission: signature", ("NodeService.submit", "Tx.signature_valid")),
    # Admission decodes with `decode_unverified`, then its proofs (vstore22, fix22v);
    # `decode_tx` is the one-call form other callers use.
    ("admission: decode + stateless checks", ("NodeService.submit", "decode_unverified (")),
    ("admission: decode + stateless checks", ("NodeService.submit", "check_proofs (")),
    ("admission: decode + stateless checks", ("NodeService.submit", "decode_tx (")),
    ("admission: confirmed-tx lookup", ("NodeService.submit", "TxAdmission._refuse_spent")),
    ("admission: confirmed-tx lookup", ("NodeService.submit", "Chain.tx_location")),
    ("admission: mempool insert", ("NodeService.submit", "Mempool.add")),
    ("admission: other", ("NodeService.submit",)),
    ("API /txs/batch (JSON, model, response)", ("post_tx_batch",)),
    ("proposal build", ("Driver._build",)),
    ("block check / execute", ("Driver._validate",)),
    ("block check / execute", ("Chain.import_block",)),
    ("commit (state, LevelDB)", ("Chain.commit_block",)),
    ("after commit (mempool update, stream)", ("Driver._after_commit",)),
    # Before the consensus rows: the gossip handler (Node.on_gossip) runs these too, and
    # they were counted as "consensus other" until session 15 (fifth devnet pass).
    ("tx gossip (TXS frames, relay)", ("Node._on_txs",)),
    ("tx gossip (TXS frames, relay)", ("_decode_txs_payload",)),
    ("tx relay by id (announce, TX_IDS in and out)", ("TxFetcher.",)),
    ("compact proposal (ids, rebuild, encode)", ("Node._on_compact_proposal",)),
    ("compact proposal (ids, rebuild, encode)", ("encode_compact_proposal",)),
    ("consensus other (WAL, votes, signer)", ("Driver.",)),
    ("consensus other (WAL, votes, signer)", ("Node._on_vote",)),
    ("consensus other (WAL, votes, signer)", ("Node.on_gossip",)),
    ("consensus other (WAL, votes, signer)", ("consensus_gossip",)),
    ("tx gossip (TXS frames, relay)", ("_flush_txs",)),
    ("tx gossip (TXS frames, relay)", ("p2p/relay.py",)),
    ("p2p links (Noise, websocket frames)", ("p2p/",)),
    # after p2p: inbound peer links are aiohttp websockets too
    ("API other (HTTP, block stream)", ("aiohttp/web_",)),
)
OTHER: Final = "event loop, other"


def activity_of(frames: Sequence[str]) -> str | None:
    """The activity of one sampled stack (root first), or None if the thread waited."""
    if frames and frames[-1].startswith(IDLE_LEAVES):
        return None
    stack = ";".join(frames)
    for name, marks in ACTIVITIES:
        if all(mark in stack for mark in marks):
            return name
    return OTHER


def tally(lines: Iterable[str]) -> Counter[str]:
    """Samples per activity from py-spy's raw (collapsed) output: `frame;frame;… count`."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        activity = activity_of(stack.split(";"))
        if activity is not None:
            counts[activity] += int(count)
    return counts


def table(columns: Sequence[tuple[str, Counter[str]]]) -> str:
    """A Markdown table: one row per activity, each column a node's share in percent."""
    names = list(dict.fromkeys([name for name, _ in ACTIVITIES] + [OTHER]))
    header = "| activity | " + " | ".join(label for label, _ in columns) + " | all |"
    rule = "|---|" + "---|" * (len(columns) + 1)
    total_all = sum(sum(c.values()) for _, c in columns) or 1
    rows = [header, rule]
    for name in names:
        shares = [100 * c[name] / (sum(c.values()) or 1) for _, c in columns]
        all_share = 100 * sum(c[name] for _, c in columns) / total_all
        cells = " | ".join(f"{s:.1f} %" for s in shares)
        rows.append(f"| {name} | {cells} | {all_share:.1f} % |")
    samples = " | ".join(str(sum(c.values())) for _, c in columns)
    rows.append(f"| samples | {samples} | {total_all} |")
    return "\n".join(rows)


def descendants(pid: int) -> list[int]:
    """`pid` and every live process under it (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its live descendants so far (Linux /proc)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU of `pid` and its live descendants so far (Linux /proc): the
    system part is mostly the kernel's network stack on a relaying node."""
    user = system = 0
    for process in descendants(pid):
        try:
            stat = Path(f"/proc/{process}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        user, system = user + int(fields[11]), system + int(fields[12])  # utime, stime
    return user / _TICKS_PER_S, system / _TICKS_PER_S


def start_sampling(
    pids: Sequence[int], seconds: int, out: Path, *, gil: bool = False
) -> list[subprocess.Popen[bytes]]:
    """py-spy on each node (with its verifier processes) for `seconds`: out/nodeN.txt.

    `gil`: only threads holding the GIL are sampled (py-spy --gil): the Python work alone.
    Without it a thread is sampled wherever it stands while runnable, so a syscall where
    the kernel switches to another process (a socket write waking the peer, an fsync)
    takes a share of the samples without costing the CPU it suggests; with it, work in C
    that releases the GIL (the signature check, hashing of large inputs) is left out."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: pip install py-spy (a dev dependency)")
    out.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "--rate", "100", "--subprocesses", "--format", "raw"]
    if gil:
        argv.append("--gil")
    return [
        subprocess.Popen(
            [*argv, "--pid", str(pid), "--duration", str(seconds), "-o", str(out / f"node{i}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, pid in enumerate(pids)
    ]


def report_profiles(out: Path, count: int) -> None:
    """Print the activity table of out/node0.txt … out/node{count-1}.txt."""
    columns = []
    for i in range(count):
        path = out / f"node{i}.txt"
        if path.exists():
            with path.open() as lines:
                columns.append((f"node{i}", tally(lines)))
    print(table(columns), flush=True)


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        raise SystemExit(__doc__)
    columns = []
    for path in paths:
        with path.open() as lines:
            columns.append((path.stem, tally(lines)))
    print(table(columns))


if __name__ == "__main__":
    main()
