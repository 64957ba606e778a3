"""Child process for the crash test: import blocks from a file into a home until killed.

python -m tests.integration.crash_importer HOME BLOCKS_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

from fluxchain.core.block import Block
from fluxchain.core.encoding import unpack
from fluxchain.core.votes import Commit
from tests.support.chain import devnet_genesis, open_chain


def main() -> None:
    home, blocks_file = Path(sys.argv[1]), Path(sys.argv[2])
    blocks = unpack(blocks_file.read_bytes(), max_bytes=1 << 30)
    chain = open_chain(home, devnet_genesis())
    print(f"resuming at {chain.height}", flush=True)
    for raw, commit in blocks[chain.height :]:
        chain.import_block(Block.decode(raw, 1 << 24, 1 << 16), Commit.from_fields(commit))
    chain.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
