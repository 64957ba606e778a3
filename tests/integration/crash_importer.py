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
    # As sync imports: each block with the next one, which is decoded while the block's
    # batch is written on a helper thread, so a kill can land inside that write too.
    todo = blocks[chain.height :]
    block = Block.decode(todo[0][0], 1 << 24, 1 << 16) if todo else None
    for index, (_, commit) in enumerate(todo):
        assert block is not None
        upcoming = (
            Block.decode(todo[index + 1][0], 1 << 24, 1 << 16) if index + 1 < len(todo) else None
        )
        chain.import_block(block, Commit.from_fields(commit), upcoming)
        block = upcoming
    chain.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
