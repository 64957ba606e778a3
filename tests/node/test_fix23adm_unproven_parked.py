"""fix23adm: a signed registration short of its sender's committed funds is parked
unproven (its key proofs unchecked), under the parked set's bounds, and proven only when
an account change offers it again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fluxchain.core import vrf
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.node.test_rev22v_spent_nonce_cost import count_proof_checks
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key, owner_key

UNFUNDED = 4_000


def _registration(chain: Chain, i: int) -> Tx:
    return Builder(chain).node_register(owner_key(UNFUNDED + i), node_hot_key(VALIDATORS + 1))


def _fund(chain: Chain, service: NodeService, tx: Tx, amount: int) -> None:
    builder = Builder(chain)
    block = builder.commit([builder.transfer(funded_key(), address_of(tx.sender), amount)])
    service.on_committed(block, tuple(chain.events(block.height)))


def test_a_flood_of_unproven_registrations_pushes_out_its_own(chain: Chain) -> None:
    capacity = 4
    service = NodeService(chain, admission=TxAdmission(chain, parked_capacity=capacity))
    honest = _registration(chain, 0)
    flood = [_registration(chain, 1 + i) for i in range(3 * capacity)]
    for tx, peer in ((honest, "honest"), *((t, "flooder") for t in flood)):
        with pytest.raises(TxError) as refused:
            service.submit(tx.raw, from_peer=True, peer=peer)
        assert refused.value.reason is Reason.INSUFFICIENT_FUNDS
    admission = service.admission
    held = [t for t in (honest, *flood) if admission.is_parked(t.id)]
    assert len(held) == capacity, f"{len(held)} parked past the bound {capacity}"
    assert admission.is_unproven(honest.id), "the flood pushed out another origin's tx"
    gone = [t for t in flood if not admission.is_parked(t.id)]
    assert not any(admission.is_unproven(t.id) for t in gone), "kept unproven once let go"
    assert all(t.id not in admission.verified for t in (honest, *flood))


def test_an_unproven_registration_still_short_runs_no_proof(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = NodeService(chain)
    registration = _registration(chain, 0)
    with pytest.raises(TxError):
        service.submit(registration.raw, from_peer=True, peer="p")
    checks = count_proof_checks(monkeypatch)
    _fund(chain, service, registration, COIN)  # its account changes, short of collateral

    assert checks == [], f"{checks} for a registration its funds still cannot carry"
    status = service.tx_status(registration.id)
    assert (status.state, status.reason) == ("held", "insufficient_funds")
    assert service.admission.is_unproven(registration.id)


def test_an_unproven_registration_whose_proof_fails_is_let_go_unverified(chain: Chain) -> None:
    """Validly signed by an unfunded owner, with another key's VRF proof: parked on its
    signature, refused `bad_vrf_key` when its funds commit, and not remembered as verified
    (a block that takes it checks it in full)."""
    builder = Builder(chain)
    owner = owner_key(UNFUNDED)
    genuine = builder.node_register(owner, node_hot_key(VALIDATORS + 1))
    _, wrong_proof = vrf.claim(node_hot_key(VALIDATORS + 2), chain.params.chain_id)
    payload = replace(genuine.payload, vrf_proof=wrong_proof)
    bad = Tx.create(owner, chain.params.chain_id, genuine.nonce, genuine.fee, payload)
    service = NodeService(chain)
    with pytest.raises(TxError) as refused:
        service.submit(bad.raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.INSUFFICIENT_FUNDS
    assert service.admission.is_unproven(bad.id)

    collateral = chain.params.tier(genuine.payload.tier).collateral
    _fund(chain, service, bad, collateral + COIN)

    admission = service.admission
    assert not admission.is_parked(bad.id) and not admission.is_unproven(bad.id)
    assert bad.id not in service.mempool
    assert bad.id not in admission.verified, "a tx whose proof failed taken as verified"
    status = service.tx_status(bad.id)
    assert (status.state, status.reason) == ("rejected", "bad_vrf_key")
