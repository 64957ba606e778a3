"""The order a node asks peers for a compact proposal's missing txs (fix16b 1)."""

from __future__ import annotations

from fluxchain.node.txs_sources import Trust, TxsSource, next_txs_source

SYBILS = [TxsSource(f"sybil{i}", Trust.INBOUND, holder=True) for i in range(5)]
VALIDATOR = TxsSource("validator", Trust.VALIDATOR, holder=False)
DIALED = TxsSource("dialed", Trust.OUTBOUND, holder=True)


def asked_in_turn(candidates: list[TxsSource], per_group: int) -> list[str]:
    """Every peer asked, in order, when none of them answers."""
    tried: list[str] = []
    while (source := next_txs_source(candidates, tried, per_group)) is not None:
        tried.append(source)
    return tried


def test_a_validator_that_only_relayed_comes_before_inbound_peers_claiming_the_proposal() -> None:
    order = asked_in_turn([*SYBILS, DIALED, VALIDATOR], per_group=3)
    assert order == ["validator", "dialed", "sybil0", "sybil1", "sybil2"]


def test_silent_claimers_use_up_only_their_own_group() -> None:
    relayer = TxsSource("relayer", Trust.INBOUND, holder=False)
    assert asked_in_turn([*SYBILS, relayer], per_group=3) == [
        "sybil0",
        "sybil1",
        "sybil2",
        "relayer",
    ]


def test_a_group_whose_turns_went_to_earlier_asks_is_skipped() -> None:
    tried = ["sybil0", "sybil1", "sybil2"]
    assert next_txs_source(SYBILS, tried, per_group=3) is None
    assert next_txs_source([], [], per_group=3) is None
