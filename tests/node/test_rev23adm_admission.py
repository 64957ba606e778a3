"""rev23adm: fresh-eyes attacks on adm23 (refusals before a tx's key proofs)."""

from __future__ import annotations

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key, owner_key

# Dev accounts go up to a few dozen past the validators: these hold nothing.
UNFUNDED = 2_000


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
