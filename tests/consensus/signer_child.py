"""A validator process that signs forever, for the SIGKILL test of the signer guard.

It walks (height, round, step) forward as a validator would, but asks for random block
hashes and sometimes repeats or goes back, so that a guard that forgot anything across
a crash would be caught signing a conflict. Each signature it gets is printed at once.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from consensus.errors import DoubleSignError
from consensus.events import SignVote
from consensus.signer import FileSignerStore, SignerGuard
from fluxchain.core.crypto import SigningKey, sha256
from fluxchain.core.votes import NIL, VoteType

CHAIN_ID = "fluxchain-test"
KEY = SigningKey(sha256(b"signer-child"))
VALUES = (NIL, sha256(b"a"), sha256(b"b"))


def main() -> None:
    home, attempt = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(attempt)
    guard = SignerGuard(KEY, CHAIN_ID, FileSignerStore(home))
    print("ready", flush=True)
    while True:
        state = guard.state
        height, round_, step = state.height or 1, state.round, max(state.step, 2)
        choice = rng.random()
        if choice < 0.5:  # move forward
            step += 1
            if step > 3:
                step, round_ = 2, round_ + 1
            if rng.random() < 0.2:
                height, round_, step = height + 1, 0, 2
        elif choice < 0.6 and round_ > 0:  # go back a round
            round_ -= 1
        request = SignVote(
            VoteType.PREVOTE if step == 2 else VoteType.PRECOMMIT,
            height,
            round_,
            rng.choice(VALUES),
        )
        try:
            vote = guard.sign_vote(request)
        except DoubleSignError:
            continue
        print(int(vote.type), vote.height, vote.round, vote.block_hash.hex() or "nil", flush=True)


if __name__ == "__main__":
    main()
