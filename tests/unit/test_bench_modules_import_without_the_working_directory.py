"""The benchmarks run as `python -P -m bench.X` (issue 24 measures that way): with the
working directory off sys.path they must still find the test harness they drive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_every_benchmark_imports_with_the_working_directory_off_the_path(tmp_path: Path) -> None:
    modules = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")
    assert "import" in modules and "wan" in modules
    script = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module('bench.' + m)"
    done = subprocess.run(
        [sys.executable, "-P", "-c", script, *modules],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
