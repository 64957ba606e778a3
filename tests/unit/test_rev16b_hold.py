"""Defences of fix16b that held under review rev16b."""

from __future__ import annotations

from fluxchain.node.txs_sources import Trust, TxsSource, next_txs_source


def test_rev16b_asks_are_bounded_by_six_groups_of_three_however_many_sybils() -> None:
    """Many claimers and relayers of every rank: at most 3 asks a group, 18 in all, and
    each peer at most once."""
    candidates = [
        TxsSource(f"{trust.name}-{holder}-{i}", trust, holder)
        for trust in Trust
        for holder in (True, False)
        for i in range(50)
    ]
    tried: list[str] = []
    while (source := next_txs_source(candidates, tried, 3)) is not None:
        assert source not in tried
        tried.append(source)
    assert len(tried) == 18
    ranks = [(int(s.split("-")[0] != "VALIDATOR"), s) for s in tried[:6]]
    assert all(rank == 0 for rank, _ in ranks), "validators are asked first"


def test_rev16b_inbound_sybils_never_go_before_a_dialed_holder() -> None:
    """Inbound claimers (any number) come after an outbound relayer."""
    candidates = [TxsSource(f"sybil{i}", Trust.INBOUND, True) for i in range(20)]
    candidates.append(TxsSource("dialed", Trust.OUTBOUND, False))
    assert next_txs_source(candidates, [], 3) == "dialed"
