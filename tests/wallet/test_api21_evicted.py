"""Issue 24, api21 2: a send the node says is `evicted` (it left that node's pool after
being gossiped; it may still commit from a peer's) keeps its nonce until the chain settles
it: the account's nonce passes it, or the node says confirmed or rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wallet.test_sender import ADDRESS, ScriptedNode, signed
from wallet.client import _UNPROVEN_ORDER
from wallet.errors import WalletError
from wallet.sender import Sender

EVICTED = {"status": "evicted", "reason": "mempool_full", "message": "evicted by a higher fee"}


def test_api21_an_evicted_send_keeps_its_nonce_until_the_chain_settles_it(
    tmp_path: Path,
) -> None:
    node = ScriptedNode()
    sender = Sender(node, tmp_path)
    sent = sender.submit(ADDRESS, signed(0), 5)["id"]
    node.statuses[sent] = dict(EVICTED)
    plan = sender.plan(ADDRESS)
    assert plan.nonce == 1, "an evicted send's nonce was freed: a re-send would race it"
    assert [p.tx_id for p in plan.pending] == [sent]
    node.nonce = 1  # it committed elsewhere (or another tx spent its nonce)
    assert sender.plan(ADDRESS).nonce == 1 and sender.plan(ADDRESS).pending == ()
    node.nonce = 0
    node.statuses[sent] = {"status": "rejected", "reason": "nonce_mismatch"}
    assert sender.plan(ADDRESS).nonce == 0  # the node says it can no longer commit


def test_api21_waiting_on_an_evicted_send_waits_for_the_chain(tmp_path: Path) -> None:
    node = ScriptedNode()
    sender = Sender(node, tmp_path)
    node.statuses["e"] = dict(EVICTED)
    with pytest.raises(WalletError) as info:
        sender.wait("e", 0.2)
    assert info.value.reason == "timeout", info.value
    assert "may still commit" in info.value.message
    node.statuses["e"] = {"status": "confirmed", "height": 3, "events": []}
    assert sender.wait("e", 1.0)["height"] == 3


def test_api21_evicted_is_believed_before_unknown_or_rejected() -> None:
    """Verifying, with no proof either way, the wallet takes the status that loses
    nothing: an evicted send may still commit, so it ranks before unknown and rejected."""
    order = list(_UNPROVEN_ORDER)
    assert order.index("evicted") < order.index("unknown") < order.index("rejected")
