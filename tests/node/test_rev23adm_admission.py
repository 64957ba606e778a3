"""rev23adm: fresh-eyes attacks on adm23 (refusals before a tx's key proofs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.encoding import pack
from fluxchain.core.errors import Reason, TxError, TxStateError
from fluxchain.core.nodes import get_node_by_key
from fluxchain.core.params import COIN
from fluxchain.node.node import Node
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from p2p.messages import Kind
from tests.node.test_rev22v_spent_nonce_cost import count_proof_checks
from tests.support.chain import (
    VALIDATORS,
    Builder,
    funded_key,
    node_hot_key,
    open_chain,
    owner_key,
)
from tests.support.gossip_host import gossip_host

# Dev accounts go up to a few dozen past the validators: these hold nothing.
UNFUNDED = 2_000
FRAME = 16


def test_a_peers_registration_funded_by_the_next_block_is_pooled_once_it_commits(
    chain: Chain,
) -> None:
    """A node one block behind its peer (or whose peer pooled the funding transfer first)
    gets a validly signed, funded-there registration before the funding commits here. Before
    adm23 the pool refused it `insufficient_funds` and parked it: the funding block's commit
    offered it again and it was pooled (and relayed). Now admission refuses it before its
    proofs and keeps nothing; the tx relay fetches it again only when some peer announces it
    again, never from the peer that delivered it (`TxFetcher.forget_received`), and the
    peer that relayed it announces a tx once. So the registration never reaches this pool."""
    builder = Builder(chain)
    owner = owner_key(UNFUNDED)
    registration = builder.node_register(owner, node_hot_key(VALIDATORS + 1))
    collateral = chain.params.tier(registration.payload.tier).collateral
    funding = builder.transfer(funded_key(), address_of(owner.public_key), collateral + COIN)
    service = NodeService(chain)

    try:
        service.submit(registration.raw, from_peer=True, peer="ahead")
    except TxError as refused:
        print(f"refused for now: {refused.reason}")
    block = builder.commit([funding])
    service.on_committed(block, tuple(chain.events(block.height)))

    assert registration.id in service.mempool, (
        "a peer's registration refused for funds the next block brought is lost at this node"
        f" (status {service.tx_status(registration.id)})"
    )


def test_an_honest_peer_never_pools_a_registration_a_handler_refuses_on_its_bytes(
    chain: Chain, tmp_path: Path
) -> None:
    """A paid tx beyond its sender's next nonce is pooled without a handler dry-run
    (`NodeService._pool`), so an honest node pooled and relayed a registration whose node
    key is its collateral key (the handler's `bad_field`, a payload-only rule no stateless
    check ran). A node a block ahead, where that nonce is the next one, dry-ran it and was
    refused `bad_field`, which `_MALICIOUS` takes for garbage: the honest peer was charged
    25 points and the rest of its frame (an honest transfer) dropped unadmitted.

    fix23adm: that rule is a stateless one now (`tx.check_stateless_rules`), so the honest
    node never pools (nor relays) such a tx, whatever its nonce; and a handler's dry-run
    refusal is never taken for garbage (`TxStateError`; the next test)."""
    ahead, behind = chain, open_chain(tmp_path / "behind")
    try:
        builder = Builder(ahead)
        owner = funded_key()
        first = builder.transfer(owner, address_of(owner_key(UNFUNDED).public_key))
        same_key = builder.node_register(owner, owner)  # node key == collateral key
        honest = builder.transfer(funded_key(VALIDATORS + 1), address_of(owner.public_key))
        builder.commit([first])

        relay = NodeService(behind)  # the honest peer, still a block behind
        relay.submit(first.raw)
        with pytest.raises(TxError) as refused:
            relay.submit(same_key.raw)
        assert refused.value.reason is Reason.BAD_FIELD
        relay.submit(honest.raw)
        assert same_key.id not in relay.mempool, "the honest peer pools it undry-run"

        # A peer that sends it is not honest: charged, and its frame stops there.
        service = NodeService(ahead)
        host, punished = gossip_host(service)
        frame = pack([same_key.raw, honest.raw])
        asyncio.run(Node.on_gossip(host, "junk-peer", Kind.TXS, frame))  # type: ignore[arg-type]
        assert punished, "a peer sending a tx no honest node pools goes unpunished"
    finally:
        behind.close()


def test_a_handlers_dry_run_refusal_is_never_garbage(chain: Chain) -> None:
    """Whatever its reason, a refusal by a handler's dry run on state (`check_paid`,
    `check_duty`) is a `TxStateError`, which `Node._on_txs` neither charges nor lets stop a
    frame: an honest node pools a paid tx beyond its sender's next nonce without it."""
    builder = Builder(chain)
    owner = funded_key()
    node = get_node_by_key(chain.state, chain.validators().validators[0].pubkey)
    assert node is not None
    # A rotation of a node its sender does not own: the handler's refusal, on state.
    rotation = builder.node_update(owner, node.node_id, node_hot_key(VALIDATORS + 30))
    honest = builder.transfer(funded_key(VALIDATORS + 1), address_of(owner.public_key))
    service = NodeService(chain)
    with pytest.raises(TxStateError):
        service.admission.check_paid(rotation)
    host, punished = gossip_host(service)
    frame = pack([rotation.raw, honest.raw])
    asyncio.run(Node.on_gossip(host, "honest-peer", Kind.TXS, frame))  # type: ignore[arg-type]
    assert honest.id in service.mempool, "an honest tx behind it dropped unadmitted"
    assert punished == [], f"an honest relay punished: {punished}"


def test_a_node_owners_rival_key_rotations_at_one_nonce_cost_one_proof_check(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_refuse_unprovable` lets through any rotation of a node its sender owns whose
    committed balance covers the fee (top-up 0): nothing more is asked. So a node's owner
    (collateral locked, never spent) signs rotations to fresh keys, all at its next nonce
    and fee: the pool keeps one and refuses every rival `replacement_underpriced`, a
    refusal on state that neither punishes nor stops the frame, after each has cost its
    node key's proof, its VRF key's pairing check and its signature (~1.6 ms). Frame
    after frame, unpunished, for one fee never paid."""
    owner = owner_key(0)  # a genesis node's collateral owner
    node = get_node_by_key(chain.state, chain.validators().validators[0].pubkey)
    assert node is not None and node.owner == address_of(owner.public_key)
    rivals = [
        Builder(chain).node_update(owner, node.node_id, node_hot_key(VALIDATORS + 10 + i))
        for i in range(FRAME)
    ]
    assert len({tx.nonce for tx in rivals}) == 1
    service = NodeService(chain)
    host, punished = gossip_host(service)
    checks = count_proof_checks(monkeypatch)

    asyncio.run(Node.on_gossip(host, "peer-a", Kind.TXS, pack([t.raw for t in rivals])))  # type: ignore[arg-type]

    assert sum(tx.id in service.mempool for tx in rivals) == 1
    assert len(checks) <= 3, (
        f"{len(checks)} proof and signature checks for {FRAME} rivals at one pooled nonce,"
        f" peer charged {punished}"
    )


def test_forged_registrations_naming_a_funded_sender_cost_no_pairing_check(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_refuse_unprovable` reads the balance of the sender a body names, which anyone
    writes: a forged registration naming any funded address (a genesis account, an
    exchange's) passes it, and its proofs, which the forger makes with its own node and
    VRF keys for that sender, pass too (an Ed25519 verify and a BLS pairing, ~1.6 ms)
    before its signature fails. From an API client that is unpunished, 1,000 a batch
    (~1.6 s of the loop, the gate turning only every 50 txs, ~80 ms); from a peer, once
    a frame. The tx signature (~50 us) checked before the proofs would refuse the forgery
    for the price of a transfer's check."""
    builder = Builder(chain)
    rich = funded_key()
    forged = [
        flipped(builder.node_register(rich, node_hot_key(VALIDATORS + 20 + i)).raw)
        for i in range(FRAME)
    ]
    service = NodeService(chain)
    checks = count_proof_checks(monkeypatch)
    for raw in forged:
        with pytest.raises(TxError) as refused:
            service.submit(raw, client="api-client")
        assert refused.value.reason is Reason.BAD_SIGNATURE

    pairings = checks.count("vrf key proof")
    assert pairings == 0, f"{pairings} pairing checks for {FRAME} forged registrations"


def flipped(raw: bytes) -> bytes:
    """`raw` with its signature's last bit flipped: a forged body, another id."""
    return raw[:-1] + bytes([raw[-1] ^ 1])
