"""`fluxchain COMMAND --home HOME` with its imports done ahead: a test-only launcher.

    python -m tests.integration.warm_start COMMAND --home HOME   # then a line on stdin

It imports the CLI (every module `fluxchain` loads at start), creates the file named by
$WARM_START_READY, then waits for a line on its stdin and runs the command as `fluxchain`
would; stdin closed first, it exits without running it. A test restarting a process
inside a window the node times (an agent back before the node counts it gone,
`agent_link.STALE_S`) readies the next one beforehand: on a loaded machine importing
the CLI alone took 10 s, the whole window. From the line on it is the real command,
reading its home and state as a cold start does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fluxchain import cli


def main() -> None:
    Path(os.environ["WARM_START_READY"]).touch()
    if not sys.stdin.readline():
        return
    cli.main(sys.argv[1:])


if __name__ == "__main__":
    main()
