"""Review rev22v (outside vstore22's change, found while attacking it): stateless checks
that cost far more than a tx signature run before it, and their refusals do not punish.

`decode_unverified` runs `check_stateless` before the tx signature: a NODE_REGISTER's VRF
key proof of possession is a BLS pairing check (~1.6 ms here with its node key's proof,
against ~57 µs for a tx signature). `bad_vrf_key` is not among the refusals a peer is
punished for (node.py `_MALICIOUS`), although no honest peer relays one (the check is
stateless: an honest node refuses it before relaying). So a peer pushes NODE_REGISTER
bodies that nobody signed, each with a valid proof by a node key of its own and another
key's VRF proof, and every one costs a pairing check, for ever, unpunished. This is what
vstore22's forged copies at a spent nonce (test_rev22v_spent_nonce_cost.py) cost too.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from fluxchain.core import vrf
from fluxchain.core.encoding import pack
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Tx
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from p2p.messages import Kind
from tests.node.test_rev22v_spent_nonce_cost import count_proof_checks
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key
from tests.support.gossip_host import gossip_host

BODIES = 8


def junk_registrations(chain: Chain) -> list[bytes]:
    """NODE_REGISTER bodies at the sender's next nonce, nobody's signature on them, a
    valid node key proof each and the VRF proof of another node key."""
    builder = Builder(chain)
    owner, other = funded_key(), node_hot_key(VALIDATORS + 2)
    genuine = builder.node_register(owner, node_hot_key(VALIDATORS + 1))
    _, wrong_proof = vrf.claim(other, chain.params.chain_id)
    payload = replace(genuine.payload, vrf_proof=wrong_proof)
    signed = Tx.create(owner, chain.params.chain_id, genuine.nonce, genuine.fee, payload)
    raw = signed.raw
    return [raw[:-1] + bytes([raw[-1] ^ (1 << bit)]) for bit in range(BODIES)]


def test_rev22v_unsigned_registrations_with_a_bad_vrf_proof_cost_pairings_unpunished(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = NodeService(chain)
    bodies = junk_registrations(chain)
    with pytest.raises(TxError) as refused:
        service.submit(bodies[0], from_peer=True, peer="p")
    # fix23adm: its signature (~50 us) is checked before its proofs, so a body nobody
    # signed costs no pairing at all
    assert refused.value.reason is Reason.BAD_SIGNATURE, "its proofs checked before its signature"
    host, punished = gossip_host(service)
    proofs = count_proof_checks(monkeypatch)

    relay = asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, pack(bodies[1:])))  # type: ignore[arg-type]

    assert relay is False
    # adm23: the frame stops at its first refusal that proves garbage
    assert proofs.count("vrf key proof") == 0, "a pairing checked for an unsigned body"
    assert proofs == ["ed25519 verify"], "the frame ran on past its first junk body"
    assert punished, (
        f"{BODIES - 1} unsigned bodies, refused bad_signature,"
        " cost their peer nothing: no honest peer relays one"
    )
