"""A full PROPOSAL the engine already holds is dropped before its block is decoded
(fix17 1, issue 22).

The duplicate test (`Driver.holds`, by round and block hash) ran only after the whole
frame was decoded: the block parsed, every tx hashed, the tx root computed. A peer
re-sending the same 1 MiB proposal (consensus gossip delivers a copy again after
`consensus_redeliver_after`) cost the node that work each time. The proposal's fields
name its block hash: the test now runs on them first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_a_full_proposal_hashes_its_txs_once import full_proposal_roots

COPIES = 3


def test_fix17_copies_of_a_held_full_proposal_are_not_decoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots, relayed = full_proposal_roots(tmp_path, monkeypatch, COPIES)
    assert relayed == [False] * COPIES, "a copy of a held proposal was relayed"
    assert roots == 1, (
        f"the block's tx root was computed {roots} times for one proposal and {COPIES} copies of it"
    )
