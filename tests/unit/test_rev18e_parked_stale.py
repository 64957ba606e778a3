"""rev18e: a paid tx parked on a dry-run refusal that its sender's account cannot clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.accounts import get_account
from fluxchain.core.apps import get_app
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.records import Account
from fluxchain.core.state import State
from fluxchain.core.tx import AppExtend
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, app_register, app_spec, funded_key, open_chain


def _account(state: State, address: bytes) -> Account:
    return get_account(state, address)


def test_rev18e_a_tx_refused_by_a_lagging_node_stays_refused_there_once_valid(
    tmp_path: Path,
) -> None:
    """Attack/accident: `check_paid` refusals depend on more than the sender's account —
    the height (APP_EXTEND's expire_too_far), other apps (domain_taken, app_exists), nodes
    (pinned_node_not_eligible until the pinned node's confirm commits). A node one block
    behind its peer (the usual gossip race) dry-runs a tx that is valid at the peer's
    next height, refuses it and parks it; `_drop` parks every refusal but already_known
    and a spent nonce. Parked txs are offered again only when the sender's account
    changes or its gap fills, and a peer's copy is answered with the parked refusal
    ("its sender's account is as it was, so the mempool would say it again": false
    here). What the user sees: an owner extending its app to the longest paid-ahead
    period (or registering an app pinned to a node just confirmed) gets its tx refused
    for good by every node that saw it a block early — `tx_status` says expire_too_far,
    and those nodes' proposers never include it; it waits on the nodes that pooled it
    or is lost. Fix: park only refusals the sender's account clears (funds, nonce, gap
    limits), and let a dry-run refusal be retried (forget + refetch, or re-offer parked
    stateful txs each block within the PARKED_OFFERS budget)."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain)
        b = Builder(chain)
        owner = funded_key()
        register = app_register(b, owner, app_spec(owner, "myapp", expire=1_000))
        service.on_committed(b.commit([register]), ())
        app = get_app(chain.state, "myapp")
        assert app is not None
        # Valid from the height after this node's next one (its peer is a block ahead):
        # the longest extension the rules allow there.
        blocks = chain.params.app_max_expire - app.expire_height + chain.height + 2
        extend = b.tx(owner, AppExtend("myapp", blocks))
        with pytest.raises(TxError):  # one block early here: expire_too_far
            service.submit(extend.raw, from_peer=True, peer="p1")
        before = _account(chain.state, address_of(owner.public_key))
        payer, payee = funded_key(5), b"\x07" * 20
        block = b.commit([b.transfer(payer, payee, COIN)])
        assert not b.rejected
        assert _account(chain.state, address_of(owner.public_key)) == before
        # The node commits that block (it changed the payer's and payee's accounts).
        service.on_committed(block, (), touched=[address_of(payer.public_key), payee])
        service.admission.check_paid(extend)  # it applies in this node's next block now
        if extend.id not in service.mempool:
            try:
                service.submit(extend.raw, from_peer=True, peer="p2")  # another peer's copy
            except TxError as exc:
                pytest.fail(f"a tx valid at this node's next height is refused for good: {exc}")
        assert extend.id in service.mempool
        assert [t.id for t in service.candidates()] == [extend.id]
    finally:
        chain.close()
