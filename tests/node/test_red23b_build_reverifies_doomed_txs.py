"""Review red23b of the proposer's block building (`core.execute.build_block`, fed by
`NodeService.candidates`): what a sender's pooled txs that cannot apply cost each build.

Admission dry-runs a paid tx's handler only at its sender's next nonce (docs/security.md,
rev18c 2: "Left: a later nonce is not dry-run until it is next"), and `cost` counts a
NODE_REGISTER's fee, not its collateral. So a sender holding 1 FLUX pools a transfer at
its next nonce and up to 999 NODE_REGISTERs behind it (0.01 FLUX of fees covered, none
paid). Every build then takes the transfer and walks the registrations in nonce order:
`check_stateless` runs each one's proofs again (its node key's Ed25519 proof and its VRF
key's BLS pairing, ~1.6 ms, already checked at admission) before `apply_tx` refuses it
(`insufficient_funds` for the collateral, then `nonce_mismatch` for every later one).
`note_dropped` keeps them all (not the sender's committed next nonce), so the next
round's build, on this node or the next proposer, pays the same again; only a commit of
the head (one fee) brings the first registration up to `recheck_paid`.

Measured here (nice 10, load 7.8, one run): 999 registrations of one sender, 999 VRF
proofs and 2.9 s, then 3.5 s, a build on the event loop, every round, against a 3 s
propose timeout; a few senders make every build
miss it, and while no block commits the attacker pays nothing.
"""

from __future__ import annotations

import pytest

from fluxchain.core import vrf
from fluxchain.core.crypto import address_of
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN, Tier
from fluxchain.core.tx import Transfer
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, funded_key, node_hot_key, owner_key

REGISTRATIONS = 20


def count_vrf_proofs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every VRF key proof checked from here on (the dearer half of a
    registration's proofs)."""
    checked: list[str] = []
    pop_verify = vrf.pop_verify

    def counted(vrf_key: bytes, proof: bytes, chain_id: str, node_key: bytes) -> bool:
        checked.append(vrf_key[:4].hex())
        return pop_verify(vrf_key, proof, chain_id, node_key)

    monkeypatch.setattr(vrf, "pop_verify", counted)
    return checked


def test_red23b_a_build_does_not_reverify_a_senders_txs_that_cannot_apply(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = Builder(chain)
    # One collateral and 1 FLUX: each registration alone passes admission's committed-funds
    # check (fix23adm refuses one the balance cannot carry before its proofs), but the
    # balance carries one registration only.
    attacker = owner_key(60)
    collateral = chain.params.tier(Tier.CUMULUS).collateral
    b.commit([b.transfer(funded_key(), address_of(attacker.public_key), collateral + COIN)])
    service = NodeService(chain)
    service.submit(b.tx(attacker, Transfer(address_of(funded_key().public_key), 1_000)).raw)
    registrations = [b.node_register(attacker, node_hot_key(200 + i)) for i in range(REGISTRATIONS)]
    for registration in registrations:
        service.submit(registration.raw)  # behind the head: not dry-run
    assert all(r.id in service.mempool for r in registrations)
    proofs = count_vrf_proofs(monkeypatch)
    for round_ in range(2):  # the round's proposer, then the next round's
        block, _ = b.block(service.candidates(), round_)
        assert len(block.txs) == 2  # the transfer and the first registration; no later one
        for tx, exc in b.rejected:  # as the driver does after a build
            if isinstance(exc, TxError):
                service.note_dropped(tx, exc)
    # Each build checks the registration that applies and the first that cannot (this
    # test's builder passes no admission record, so nothing is skipped as verified).
    assert len(proofs) <= 4, (
        f"two builds checked {len(proofs)} VRF key proofs (~1.6 ms each) of "
        f"{REGISTRATIONS} registrations that cannot apply (the sender cannot pay a "
        "second collateral, and each later one follows a refused nonce), admitted and checked "
        "before; still pooled for the next round's build"
    )
