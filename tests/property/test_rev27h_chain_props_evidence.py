"""rev27h: tests/property/test_chain_props.py draws an "evidence" action, which
`_make_txs` signs with its local `tx` helper's default fee, 1,000. Since hard27 a fee-free
kind's fee is 0 (`fee_not_zero`, `tx.check_stateless_rules`), and hard27 moved the shared
helpers (`tests/support/chain.default_fee`) but not this one: every EVIDENCE the property
draws is refused at the block build. What happens now: the action's evidence never enters
a block and no offender is ever slashed, so the supply, determinism and no-replay
invariants silently stopped covering evidence and slashing, with the test still green.
What should happen: the action's evidence is a valid EVIDENCE (fee 0) that the block
includes, as it was before hard27."""

from __future__ import annotations

from fluxchain.core.errors import TxError
from fluxchain.core.tx import TxKind, check_stateless_rules
from tests.property.test_chain_props import MemChain, _make_txs
from tests.support.chain import devnet_genesis


def test_rev27h_the_chain_props_evidence_action_is_included() -> None:
    chain = MemChain(devnet_genesis())
    for _ in range(3):
        chain.build([])
    # ("evidence", reporter ACCOUNTS[0], offender node_hot_key(1), height 1 + 1 % 2 = 2)
    txs = _make_txs(chain, {}, [("evidence", 0, 1, 1)])
    assert [tx.kind for tx in txs] == [TxKind.EVIDENCE]
    refusal = ""
    try:
        check_stateless_rules(txs[0], chain.genesis.params)
    except TxError as exc:
        refusal = f"{exc.reason}: {exc.message}"
    included, _ = chain.build(txs)
    assert [tx.kind for tx in included] == [TxKind.EVIDENCE], (
        f"the property's evidence (fee {txs[0].fee}) was not included: {refusal or 'refused'}"
    )
