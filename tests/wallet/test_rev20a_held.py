"""Review rev20a of api20: the wallet's handling of a `held` answer (docs/wallet.md §3)."""

from __future__ import annotations

from pathlib import Path

from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import devnet_params
from tests.support.chain import funded_key
from tests.wallet.test_sender import ADDRESS, ScriptedNode, signed
from wallet.errors import WalletError
from wallet.sender import Sender


def test_rev20a_a_held_resend_at_a_pooled_nonce_keeps_the_pooled_send(tmp_path: Path) -> None:
    """Attack (a user's `--nonce 0` re-send that does not outbid the pooled tx, or a twin
    wallet on the key): the node pools send A at nonce 0, then answers B at nonce 0
    `202 held [replacement_underpriced]` (it parks it, b916dc5). The wallet records B and
    drops its record of A, which is still pooled and the likelier to commit: the user sees
    "held, may still commit" for B, then B rejected (`nonce_mismatch`) once A commits,
    and A, which spent the funds, was never tracked or its cost held back. Docs §3 say a
    nonce already taken in the mempool is `nonce_conflict`. Fix direction: treat a held
    answer whose reason is a NONCE_REASONS one as `nonce_conflict` (record nothing), or
    have the node refuse it (400) rather than hold it."""
    node = ScriptedNode()
    sender = Sender(node, tmp_path)
    with sender.locked():
        first = sender.submit(ADDRESS, signed(0), 5)["id"]
    node.statuses[first] = {"status": "pending"}
    node.answer = {
        "status": "held",
        "reason": "replacement_underpriced",
        "message": "replacing nonce 0 needs a fee at least 10% above 1000",
    }
    # The same nonce and fee, another payload.
    other = Tx.create(funded_key(), devnet_params().chain_id, 0, 1_000, Transfer(b"\2" * 20, 5))
    assert other.id.hex() != first
    try:
        with sender.locked():
            answer = sender.submit(ADDRESS, other, 5)
    except WalletError as exc:
        assert str(exc.reason) == "nonce_conflict", exc
    else:
        node.statuses[answer["id"]] = {"status": "held", "reason": "replacement_underpriced"}
    tracked = [p.tx_id for p in sender.plan(ADDRESS).pending]
    assert first in tracked, f"the pooled send at nonce 0 is no longer tracked: {tracked}"
