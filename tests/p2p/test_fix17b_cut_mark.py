"""Every asker tells a sender's cut answer from one missing txs, whatever either side's
limits (fix17b 2, after rev17a 2, issue 22).

The cut mark was half the asker's own `answer_bytes`: a sender with a 5 MiB send queue
cuts near 3.7 MiB, under a default asker's 4 MiB, and the tail was taken for misses. The
mark is now the protocol's ANSWER_CUT_MARK (lower only for an asker of smaller limits),
which a sender of any queue down to 2 MiB cuts above, with its largest tx left out."""

from __future__ import annotations

import pytest

from p2p.limits import Limits
from p2p.messages import MiB
from p2p.tx_fetch import ANSWER_CUT_MARK, answer_bytes, cut_mark

LARGEST_TX = 64 * 1024  # the genesis default `max_tx_bytes`

ASKERS = {
    "default": Limits(),
    "5 MiB queue": Limits(send_queue_bytes=5 * MiB),
    "256 KiB budget": Limits(bytes_burst=256 * 1024.0),
}


@pytest.mark.parametrize("asker", list(ASKERS))
@pytest.mark.parametrize("queue_mib", [2, 3, 5, 8, 24])
def test_fix17b_a_cut_answer_is_above_every_askers_cut_mark(queue_mib: int, asker: str) -> None:
    smallest_cut = answer_bytes(Limits(send_queue_bytes=queue_mib * MiB)) - LARGEST_TX
    assert smallest_cut > cut_mark(ASKERS[asker])


def test_fix17b_answers_of_small_txs_stay_below_the_cut_mark() -> None:
    """A full request of ~250-byte txs (1,024 ids) is answered well below the mark, so an
    honest miss at its end goes to the next announcer at once, as before."""
    assert 1024 * 250 < ANSWER_CUT_MARK == cut_mark(Limits())
