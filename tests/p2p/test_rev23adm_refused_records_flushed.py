"""rev23adm: since adm23 a peer's NODE_REGISTER its sender's committed funds cannot carry
is refused before its proofs and signature and handed to the tx relay as refused for now
(`NodeService.submit` -> `refetch` -> `TxFetcher.forget_received`), so that it is fetched
again, after a cool-down, from the peers that announce it meanwhile. A forged body naming
any unfunded sender (a signature bit flipped: no key, no crypto) is refused the same way,
unpunished, and takes one of the relay's refused-for-now records, whose bound
(`seen_cache_size`) drops the oldest: a peer's push of such junk pushes out an honest
registration's record, and with it the holders noted for its refetch."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of, sha256
from fluxchain.core.encoding import pack, unpack
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.tx import Tx
from fluxchain.node.service import NodeService
from p2p.messages import Gossip, Kind
from tests.p2p.harness import run
from tests.p2p.test_tx_relay_by_id import PoolHost, _network_on
from tests.p2p.test_tx_relay_by_id_refused_refetch import COOLDOWN, COOLED, _deliver, _Holder
from tests.p2p.test_tx_relay_by_id_scores_and_refusals import _peer_from
from tests.support.chain import VALIDATORS, Builder, funded_key, node_hot_key, open_chain, owner_key
from tests.support.clock import clock_loop
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.filterwarnings("error")

RECORDS = 8  # seen_cache_size: the bound on refused-for-now records
UNFUNDED = 3_000


def flipped(tx: Tx) -> bytes:
    """`tx`'s bytes with its signature's last bit flipped: a forged body, another id."""
    return tx.raw[:-1] + bytes([tx.raw[-1] ^ 1])


class _ServiceHost(PoolHost):
    """A host that admits TXS frames through a real NodeService, as `Node._on_txs` does
    (its refusals for now handed back to the relay by the service's `refetch`)."""

    def __init__(self, service: NodeService) -> None:
        super().__init__()
        self.service = service

    async def on_gossip(self, peer_id: str, kind: Kind, payload: bytes) -> bool:
        if kind is not Kind.TXS:
            return await super().on_gossip(peer_id, kind, payload)
        for raw in unpack(payload):
            try:
                tx = self.service.submit(raw, from_peer=True, peer=peer_id)
            except TxError:
                continue
            self.pool[tx.id] = raw
        return False


def test_forged_unfunded_registrations_push_out_an_honest_ones_refetch(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "node")
    builder = Builder(chain)
    owner = owner_key(UNFUNDED)
    honest = builder.node_register(owner, node_hot_key(VALIDATORS + 1))
    collateral = chain.params.tier(honest.payload.tier).collateral
    funding = builder.transfer(funded_key(), address_of(owner.public_key), collateral + COIN)
    forged = [
        flipped(builder.node_register(owner_key(UNFUNDED + 1 + i), node_hot_key(VALIDATORS + 1)))
        for i in range(2 * RECORDS)
    ]

    async def scenario() -> None:
        loop = clock_loop()
        host: _ServiceHost | None = None

        def refetch(tx_ids: list[bytes]) -> None:
            assert host is not None and host.network is not None
            host.network.forget_txs(tx_ids)

        service = NodeService(chain, refetch=refetch)
        host = _ServiceHost(service)
        network = await _network_on(host, **COOLED, seen_cache_size=RECORDS)
        try:
            async with contextlib.AsyncExitStack() as stack:
                peers = [
                    await stack.enter_async_context(
                        _peer_from(network, "127.0.0.1", SigningKey.generate())
                    )
                    for _ in range(3)
                ]
                deliverer, holder_peer, attacker = peers
                # A peer a block ahead relays the registration: refused for funds, for now.
                await _deliver(deliverer, network, honest.raw, b"delivered")
                assert service.tx_status(honest.id).reason == "insufficient_funds"
                # Another holder announces it during the cool-down: noted for the refetch.
                holder = await stack.enter_async_context(
                    _Holder(holder_peer, {honest.id: honest.raw})
                )
                await holder.announce(honest.id, b"holder")
                # The attacker pushes junk that costs nothing to make.
                await attacker.send(Gossip(Kind.TXS, pack(forged)))
                await wait_until_async(
                    lambda: all(service.tx_status(sha256(r)).state == "rejected" for r in forged),
                    what="the junk refused",
                )
                block = builder.commit([funding])
                service.on_committed(block, tuple(chain.events(block.height)))
                # The scene is set inside the cool-down, however slow the machine: end it
                # (a fetch still open when the clock skips would time out: none is).
                fetcher = network._tx_fetch
                await wait_until_async(lambda: fetcher.fetching() == 0, what="the fetches over")
                record = fetcher._refused.get(honest.id)
                if record is None:  # pushed out: no refetch is due, whatever the clock
                    loop.skip(COOLDOWN)
                else:
                    assert loop.time() < record.until, "the scene set after the cool-down"
                    loop.skip_to(record.until)
                await wait_until_async(
                    lambda: honest.id in service.mempool,
                    timeout=5.0,
                    what="the honest registration fetched again from its other holder",
                )
        finally:
            await network.stop()

    try:
        run(scenario, COOLDOWN + 20.0, clock=True)
    finally:
        chain.close()
