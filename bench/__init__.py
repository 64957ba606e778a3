"""Benchmarks: each prints the real path beside the raw primitive that bounds it.

They drive the test suite's own harness (tests/support, tests/wan, tests/integration), so
they run from a source checkout. The checkout's root goes on sys.path here, so that
`python -P -m bench.X` (which leaves the working directory off the path) finds it too.
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if (_ROOT / "tests" / "support").is_dir() and str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))
