"""adm23 (issue 24): what a peer's junk tx costs a node before it is refused.

1. A NODE_REGISTER (or key-rotating NODE_UPDATE) whose sender's committed balance cannot
   cover what it moves out (collateral and fee), or an update of a node its sender does
   not own, is refused before its key proofs (an Ed25519 verify and a BLS pairing, ~1.6
   ms): free unfunded keys pushed frames of them, each checked in full before the pool
   refused it `insufficient_funds`. Since fix23adm its signature (~50 us) is checked
   first (a forged body is `bad_signature`, punished), and one short of funds is parked
   unproven: never taken as verified, its proofs checked when its funds commit.
2. A frame stops at its first tx refused for a reason that proves garbage: the peer is
   charged and the rest is dropped unadmitted (and not remembered as received), so a
   frame of junk costs one check; refusals on state let the frame's other txs through.
3. Evidence whose votes prove nothing (`bad_evidence_votes`: bytes only) punishes;
   evidence of a height not reached keeps `bad_evidence`, which does not.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from fluxchain.core.crypto import SigningKey, address_of, sha256
from fluxchain.core.encoding import pack
from fluxchain.core.errors import Reason, TxError, TxHeldError
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.params import COIN
from fluxchain.core.tx import Evidence, Tx
from fluxchain.core.votes import Vote, VoteType, evidence_pair
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from p2p.messages import Kind
from tests.node.test_rev22v_spent_nonce_cost import count_proof_checks
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key, owner_key
from tests.support.gossip_host import gossip_host

FRAME = 16
# Dev accounts go up to a few dozen past the validators: these hold nothing.
UNFUNDED = 1_000


def unfunded_registrations(chain: Chain, count: int) -> list[Tx]:
    """Validly signed NODE_REGISTERs, one per fresh unfunded owner, all naming one node
    key (its proof made for each owner) and reusing one VRF key and proof."""
    builder = Builder(chain)
    hot = node_hot_key(VALIDATORS + 1)
    return [builder.node_register(owner_key(UNFUNDED + i), hot) for i in range(count)]


def flipped(raw: bytes) -> bytes:
    """`raw` with its signature's last bit flipped: a forged body, another id."""
    return raw[:-1] + bytes([raw[-1] ^ 1])


def test_unfunded_registrations_cost_their_signature_check_only(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = NodeService(chain)
    registrations = unfunded_registrations(chain, FRAME)
    host, punished = gossip_host(service)
    checks = count_proof_checks(monkeypatch)

    asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, pack([t.raw for t in registrations])))  # type: ignore[arg-type]

    assert checks == ["ed25519 verify"] * FRAME, f"{checks} for unfunded registrations"
    assert punished == [], "an unfunded registration is refused for state: no punishment"
    admission = service.admission
    for tx in registrations:
        status = service.tx_status(tx.id)
        assert (status.state, status.reason) == ("held", "insufficient_funds")
        assert admission.is_unproven(tx.id), "parked as proven"
        assert tx.id not in admission.verified, "taken as verified without a proof check"
        assert tx.id not in admission.checked, "served to peers unproven"
    assert len(service.mempool) == 0


def test_unfunded_registration_refused_for_funds_before_its_signature_too(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API client's copy is held for funds, a forged one refused for its signature:
    one signature check each, no proof."""
    service = NodeService(chain)
    (registration,) = unfunded_registrations(chain, 1)
    checks = count_proof_checks(monkeypatch)
    with pytest.raises(TxHeldError) as held:
        service.submit(registration.raw)
    assert held.value.reason is Reason.INSUFFICIENT_FUNDS
    with pytest.raises(TxError) as refused:
        service.submit(flipped(registration.raw))
    assert refused.value.reason is Reason.BAD_SIGNATURE
    assert checks == ["ed25519 verify"] * 2


def test_registration_short_of_its_collateral_is_refused_before_its_proofs(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Funds for the fee are not enough: the collateral counts."""
    builder = Builder(chain)
    owner = owner_key(UNFUNDED)
    builder.commit([builder.transfer(funded_key(), address_of(owner.public_key), COIN)])
    service = NodeService(chain)
    registration = builder.node_register(owner, node_hot_key(VALIDATORS + 1))
    checks = count_proof_checks(monkeypatch)
    with pytest.raises(TxError) as refused:
        service.submit(registration.raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.INSUFFICIENT_FUNDS
    assert checks == ["ed25519 verify"], "more than its signature checked"


def test_a_refused_unproven_registration_is_admitted_once_funded(chain: Chain) -> None:
    """The real registration, parked unproven, is pooled (its proofs checked) once the
    block with its sender's funds commits; a forged copy is refused for its signature
    before, as an underpriced rival after, and keeps nothing out."""
    service = NodeService(chain)
    (registration,) = unfunded_registrations(chain, 1)
    forged = flipped(registration.raw)
    with pytest.raises(TxError) as refused:
        service.submit(registration.raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.INSUFFICIENT_FUNDS
    with pytest.raises(TxError) as refused:
        service.submit(forged, from_peer=True, peer="p")
    assert refused.value.reason is Reason.BAD_SIGNATURE
    builder = Builder(chain)
    collateral = chain.params.tier(registration.payload.tier).collateral
    owner = address_of(registration.sender)
    block = builder.commit([builder.transfer(funded_key(), owner, collateral + COIN)])
    service.on_committed(block, tuple(chain.events(block.height)))

    assert registration.id in service.mempool
    with pytest.raises(TxError) as refused:  # now a rival of the pooled tx: no check run
        service.submit(forged, from_peer=True, peer="p")
    assert refused.value.reason is Reason.REPLACEMENT_UNDERPRICED
    assert registration.id in service.admission.verified, "pooled, proven"
    assert service.tx_status(registration.id).state == "pending"


def test_key_rotation_of_a_node_not_owned_is_refused_before_its_proofs(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = NodeService(chain)
    builder = Builder(chain)
    node_id = _node_ids(chain)[0][0]
    stranger = funded_key()
    rotations = {
        Reason.NOT_OWNER: builder.node_update(stranger, node_id, node_hot_key(VALIDATORS + 3)),
        Reason.UNKNOWN_NODE: builder.node_update(
            stranger, b"\x07" * len(node_id), node_hot_key(VALIDATORS + 4)
        ),
    }
    checks = count_proof_checks(monkeypatch)
    for reason, tx in rotations.items():
        with pytest.raises(TxError) as refused:
            service.submit(tx.raw, from_peer=True, peer="p")
        assert refused.value.reason is reason
    assert checks == ["ed25519 verify"] * 2, "more than their signatures checked"


def _node_ids(chain: Chain) -> list[tuple[bytes, bytes]]:
    """(node id, node key) of the genesis nodes."""
    out = []
    for validator in chain.validators().validators:
        node = get_node_by_key(chain.state, validator.pubkey)
        assert node is not None
        out.append((node.node_id, node.node_key))
    return out


def test_a_frame_stops_at_its_first_garbage_tx(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bad signature, then honest txs: one check, one charge, nothing admitted, and
    the dropped txs not remembered as received (an honest announcer's copy is fetched)."""
    builder = Builder(chain)
    sender = funded_key()
    good = [builder.transfer(sender, address_of(owner_key(UNFUNDED).public_key)) for _ in range(4)]
    service = NodeService(chain)
    host, punished = gossip_host(service)
    frame = [flipped(good[0].raw), *(t.raw for t in good[1:])]
    checks = count_proof_checks(monkeypatch)

    asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, pack(frame)))  # type: ignore[arg-type]

    assert len(checks) == 1, f"{len(checks)} signature checks for one frame of junk"
    assert punished == [("peer-a", "tx: bad_signature")]
    assert len(service.mempool) == 0
    assert host.network.unreceived == [t.id for t in good[1:]]


def test_an_honest_frame_with_state_refusals_admits_its_other_txs(chain: Chain) -> None:
    """Refusals on state (a copy, a nonce too far, an unfunded sender, evidence of a height
    not reached) neither stop the frame nor punish its peer."""
    builder = Builder(chain)
    sender, to = funded_key(), address_of(owner_key(UNFUNDED).public_key)
    first, second = builder.transfer(sender, to), builder.transfer(sender, to)
    service = NodeService(chain)
    service.submit(first.raw, from_peer=True, peer="p")
    too_far = replace(builder, nonces={sender.public_key: builder.next_nonce(sender) + 1_000})
    (unfunded,) = unfunded_registrations(chain, 1)
    ahead = _evidence(builder, funded_key(VALIDATORS + 1), node_hot_key(1), chain.height + 2)
    refused_for_state = [first.raw, too_far.transfer(sender, to).raw, unfunded.raw, ahead.raw]
    host, punished = gossip_host(service)

    asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, pack([*refused_for_state, second.raw])))  # type: ignore[arg-type]

    assert punished == []
    assert second.id in service.mempool


def _evidence(b: Builder, reporter: SigningKey, offender: SigningKey, height: int) -> Tx:
    chain_id = b.chain.params.chain_id
    a = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x01" * 32)
    c = Vote.create(offender, chain_id, VoteType.PREVOTE, height, 0, b"\x02" * 32)
    return b.tx(reporter, Evidence(*evidence_pair(a, c)), fee=0)


def test_evidence_with_forged_votes_punishes_its_peer(chain: Chain) -> None:
    builder = Builder(chain)
    builder.commit()
    genuine = _evidence(builder, funded_key(), node_hot_key(1), chain.height)
    vote_a = genuine.payload.vote_a
    forged_vote = replace(vote_a, signature=bytes(len(vote_a.signature)))
    evidence = Evidence(*evidence_pair(forged_vote, genuine.payload.vote_b))
    forged = Builder(chain).tx(funded_key(), evidence, fee=0)
    service = NodeService(chain)
    with pytest.raises(TxError) as refused:
        service.submit(forged.raw, from_peer=True, peer="p")
    assert refused.value.reason is Reason.BAD_EVIDENCE_VOTES
    assert refused.value.reason.value == "bad_evidence_votes"
    host, punished = gossip_host(service)

    asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, pack([forged.raw])))  # type: ignore[arg-type]

    assert punished == [("peer-a", "tx: bad_evidence_votes")]
    assert sha256(forged.raw) == forged.id


def test_blocks_refuse_both_for_their_own_reasons(chain: Chain) -> None:
    """The block path keeps its checks (`check_stateless`, the signature, execution): an
    unfunded registration is dropped for its funds, forged evidence for its votes."""
    builder = Builder(chain)
    builder.commit()
    (unfunded,) = unfunded_registrations(chain, 1)
    genuine = _evidence(builder, funded_key(), node_hot_key(1), chain.height)
    same = Evidence(genuine.payload.vote_a, genuine.payload.vote_a)
    forged = builder.tx(funded_key(), same, fee=0)
    for tx, reason in ((unfunded, Reason.INSUFFICIENT_FUNDS), (forged, Reason.BAD_EVIDENCE_VOTES)):
        block, _ = builder.block([tx])
        assert not block.txs
        ((_, err),) = builder.rejected
        assert isinstance(err, TxError) and err.reason is reason


def test_evidence_its_duty_refuses_costs_no_vote_check(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any key signs two conflicting votes: evidence of a signer that was no validator, or
    of a height not reached, is refused on committed state before its two vote signatures
    (its tx signature first, as for every tx: fix23adm)."""
    builder = Builder(chain)
    builder.commit()
    reporter = funded_key()
    stranger = _evidence(builder, reporter, owner_key(UNFUNDED), chain.height)
    ahead = _evidence(builder, reporter, node_hot_key(1), chain.height + 2)
    service = NodeService(chain)
    checks = count_proof_checks(monkeypatch)
    for tx, reason in ((stranger, Reason.UNKNOWN_VALIDATOR), (ahead, Reason.BAD_EVIDENCE)):
        with pytest.raises(TxError) as refused:
            service.submit(tx.raw, from_peer=True, peer="p")
        assert refused.value.reason is reason
    assert checks == ["ed25519 verify"] * 2, "more than the txs' own signatures checked"
