"""Review rev22v of vstore22 (issue 24): what a tx at a spent nonce still costs before
admission refuses it.

docs/security.md (issue 24, vstore22) says a tx below its sender's committed nonce is
refused "after the decode and the stateless checks, before the signature" and that "a
refusal costs the decode, a state read and a tx index read". For most kinds the stateless
checks are cheap, but a NODE_REGISTER's include its node key's proof of possession (an
Ed25519 verify) and its VRF key's (a BLS pairing check, `vrf.pop_verify`), both far dearer
than the tx signature the refusal saves: a late copy of a committed registration (or any
body at its spent nonce, signed by nobody) still pays them.
"""

from __future__ import annotations

import asyncio

import pytest

from fluxchain.core import crypto, vrf
from fluxchain.core import tx as tx_module
from fluxchain.core.encoding import pack
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Tx
from fluxchain.node.node import Node
from fluxchain.store.chain import Chain
from p2p.messages import Kind
from tests.node.test_conc20_verified_once import count_signature_checks
from tests.node.test_vstore22_spent_nonce import lagging_service
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key
from tests.support.gossip_host import gossip_host


def count_proof_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every Ed25519 verify in core/tx.py from here on (a node key's proof of
    possession, or a tx signature) and every VRF key's proof check."""
    checked: list[str] = []
    verify, pop_verify = crypto.verify, vrf.pop_verify  # tx.py's own names

    def counted_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
        checked.append("ed25519 verify")
        return verify(public_key, message, signature)

    def counted_pop_verify(vrf_key: bytes, proof: bytes, chain_id: str, node_key: bytes) -> bool:
        checked.append("vrf key proof")
        return pop_verify(vrf_key, proof, chain_id, node_key)

    monkeypatch.setattr(tx_module, "verify", counted_verify)
    monkeypatch.setattr(vrf, "pop_verify", counted_pop_verify)
    return checked


def committed_registration(chain: Chain) -> Tx:
    """A NODE_REGISTER committed, its sender's nonce past it, outside both records."""
    builder = Builder(chain)
    registration = builder.node_register(funded_key(), node_hot_key(VALIDATORS + 1))
    block = builder.commit([registration])
    assert list(block.txs) == [registration.raw], builder.rejected
    return registration


def test_rev22v_a_late_copy_of_a_committed_registration_pays_no_proof_check(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = lagging_service(chain)
    registration = committed_registration(chain)
    signatures = count_signature_checks(monkeypatch)
    proofs = count_proof_checks(monkeypatch)
    with pytest.raises(TxError) as refused:
        service.submit(registration.raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.ALREADY_KNOWN
    assert signatures == [], "the tx signature is skipped, as documented"
    assert proofs == [], (
        f"a copy at a spent nonce still had {proofs} checked before its refusal: dearer"
        " than the tx signature the refusal saves, and not 'the decode, a state read and"
        " a tx index read' (docs/security.md, issue 24)"
    )


def forged_bodies(tx: Tx, count: int) -> list[bytes]:
    """`count` (up to 8) bodies of `tx` that nobody signed, each its own id: one bit of
    its signature's last byte flipped (an Ed25519 signature's 512 bits give any number)."""
    raw = tx.raw
    return [raw[:-1] + bytes([raw[-1] ^ (1 << bit)]) for bit in range(count)]


def test_rev22v_forged_copies_of_a_committed_registration_cost_proof_checks_unpunished(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone copies a committed NODE_REGISTER off the chain and flips signature bits:
    before vstore22 each body failed `bad_signature` and its peer was punished (a few
    frames and it is banned); now each is refused `nonce_mismatch` unpunished, after its
    node key and VRF key proofs were checked (~1.6 ms a body here, 30x the tx signature
    the refusal saves), so a peer can keep a node's CPU busy for ever at no cost."""
    service = lagging_service(chain)
    registration = committed_registration(chain)
    bodies = forged_bodies(registration, 8)
    assert len({*bodies}) == 8 and registration.raw not in bodies
    host, punished = gossip_host(service)
    proofs = count_proof_checks(monkeypatch)

    relay = asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, pack(bodies)))  # type: ignore[arg-type]

    assert relay is False
    assert not service.mempool
    assert proofs == [] or punished, (
        f"{len(bodies)} forged bodies at a spent nonce cost {len(proofs)} proof checks"
        f" and their peer was not punished ({punished})"
    )
