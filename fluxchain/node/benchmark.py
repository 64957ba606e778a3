"""The benchmark a node reports in NODE_CONFIRM: what this machine really has.

Measured: cores and threads (the CPUs this process may run on), RAM (/proc/meminfo),
free disk under the node home, sequential disk write speed (fsynced), and a CPU score
(SHA-256 compressions per millisecond on one core). Bandwidth cannot be measured from
inside one machine without a remote peer: the operator declares it in config.toml.
A runtime (the agent's Docker or process runtime) may lower the figures to what it can
really give (`cap`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Final

from fluxchain.core.tx import Benchmark

DISK_PROBE_BYTES: Final = 16 * 1024 * 1024  # large enough to get past the page cache's fsync
CPU_PROBE_SECONDS: Final = 0.2


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _physical_cores(threads: int) -> int:
    """Distinct (package, core) pairs from sysfs; falls back to the thread count."""
    seen = set()
    for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"):
        try:
            core = (cpu / "topology" / "core_id").read_text().strip()
            pkg = (cpu / "topology" / "physical_package_id").read_text().strip()
        except OSError:
            continue
        seen.add((pkg, core))
    return min(len(seen), threads) if seen else threads


def _ram_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _disk_write_mbps(directory: Path) -> int:
    probe = directory / ".benchmark-probe"
    block = os.urandom(1024 * 1024)
    start = time.perf_counter()
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(DISK_PROBE_BYTES // len(block)):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
        elapsed = time.perf_counter() - start
        probe.unlink(missing_ok=True)
    return int(DISK_PROBE_BYTES / (1024 * 1024) / max(elapsed, 1e-6))


def _cpu_score() -> int:
    data = b"\x00" * 64
    count = 0
    deadline = time.perf_counter() + CPU_PROBE_SECONDS
    while time.perf_counter() < deadline:
        for _ in range(1000):
            data = hashlib.sha256(data).digest()
        count += 1000
    return int(count / (CPU_PROBE_SECONDS * 1000))


def run_benchmark(directory: Path, bandwidth_mbit: int) -> Benchmark:
    """Measure this machine (takes about half a second)."""
    directory.mkdir(parents=True, exist_ok=True)
    threads = _threads()
    return Benchmark(
        cores=_physical_cores(threads),
        threads=threads,
        ram_mb=_ram_mb(),
        disk_gb=shutil.disk_usage(directory).free // 1024**3,
        disk_write_mbps=_disk_write_mbps(directory),
        cpu_score=_cpu_score(),
        bandwidth_mbit=bandwidth_mbit,
    )


def cap(benchmark: Benchmark, *, cores: int | None = None, ram_mb: int | None = None,
        disk_gb: int | None = None) -> Benchmark:  # fmt: skip
    """Lower the figures to what a runtime can give (never raise them)."""
    return replace(
        benchmark,
        cores=min(benchmark.cores, cores) if cores is not None else benchmark.cores,
        threads=min(benchmark.threads, cores) if cores is not None else benchmark.threads,
        ram_mb=min(benchmark.ram_mb, ram_mb) if ram_mb is not None else benchmark.ram_mb,
        disk_gb=min(benchmark.disk_gb, disk_gb) if disk_gb is not None else benchmark.disk_gb,
    )
