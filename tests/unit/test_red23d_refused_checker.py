"""red23d: a target that refuses a few of its checkers' probes costs each of them a payout,
for free (fresh-eyes review; failing test).

A checker reports what its probe saw. A target that answers every checker but a chosen
few (a firewall rule on their endpoints, which are public) gets an up quorum: the few
honest "down" reports are contradicted and each costs its sender its next payout
(`_judge_ended_epoch` → forfeit), while the target stays CONFIRMED, in the queue and
paid. With 21 checkers a target may refuse 6 and keep its up quorum (15 of 21 > 2/3),
every epoch; the ring changes each epoch, so an operator with 20 % of a tier's nodes
(each honest node checks ~4 of them in every epoch) can keep a forfeit owed by nearly
every honest node of the tier at each of its turns (one per node, renewed every 20
blocks against a turn every ~N blocks): the passed-over payouts go down the queue to the
attacker's nodes. docs/economics.md counts "an honest checker whose own probe failed" as
the price of the rule; it does not count a target that makes probes fail on purpose.
Refusing a checker must not be free for the target: either the refused checker does not
lose its payout, or the target loses one too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fluxchain.genesis_builder import devnet_params, new_devnet_genesis
from tests.support.chain import Builder, node_hot_key, open_chain
from tests.unit.test_uptime_quorum import (
    NODES,
    K,
    _contradicted_at_epoch_end,
    _forfeits,
    _report,
    _victim,
)


@pytest.fixture
def chain(tmp_path: Path) -> Builder:
    params = replace(devnet_params(), checkers_per_node=K)
    genesis = new_devnet_genesis(NODES, genesis_time_ms=1_000_000, params=params)
    builder = Builder(open_chain(tmp_path / "home", genesis))
    builder.node_keys.update({node_hot_key(i).public_key: node_hot_key(i) for i in range(NODES)})
    while builder.chain.height < params.epoch_length:  # the first epoch boundary builds a ring
        builder.commit()
    return builder


def test_red23d_a_target_refusing_one_checker_costs_it_a_payout_for_free(chain: Builder) -> None:
    target, checkers = _victim(chain)  # here the target is the attacker's node
    refused = checkers[0]  # its probes time out: the target dropped them
    _report(chain, target, [(refused, False)] + [(c, True) for c in checkers[1:]])
    assert _contradicted_at_epoch_end(chain) == {(refused, target, False)}
    lost = _forfeits(chain, [refused, target])
    assert lost[refused] <= lost[target], (
        f"the honest checker the target refused lost {lost[refused]} payout(s); "
        f"the target, up and paid, lost {lost[target]}"
    )
