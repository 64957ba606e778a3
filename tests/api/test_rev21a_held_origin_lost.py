"""rev21a, against api21 1 ("a client's flood pushes out its own held txs, never another
client's or a peer's"): a client's held tx that the node pools on an offer and later
parks again (its sender's balance no longer covers it) is parked as an *unnamed peer's*
(origin ""), not its client's: the offer pools it with origin "" and `_origin_of` finds
only txs in `_local`, which a held tx never entered. Every peer's pooled tx that a later
drop parks counts under that same "" origin.

Attack (a peer with one funded key, nothing paid): push a run of txs (pooled), then a
dearer replacement of the first that spends the whole balance: the tail left unpaid is
parked under "". Once the parked set is full, "" holds the most and its oldest goes: the
honest client's held tx, not the attacker's. The node forgets it and never offers it
again when the honest sender is paid back.

What should happen: the client's tx keeps its client's origin through the offer (the
parked entry's origin carried into the pool's record of where it came from), so the
peer's flood pushes out its own parked txs; the honest one stays `held`.
(Fails on main too: main parked it under "" the same way.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from fluxchain.api.server import create_app
from fluxchain.core.crypto import address_of
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.mempool import Mempool, MempoolLimits
from fluxchain.node.service import NodeService
from tests.support.chain import FEE, VALIDATORS, Builder, funded_key, open_chain, owner_key

TO = address_of(owner_key(6).public_key)
PARKED = 8  # the parked set's bound, small so that a short flood fills it
RUN = 12  # the attacker's pooled run; its tail past nonce 0 is left unpaid


def test_rev21a_a_peers_flood_pushes_out_a_clients_held_tx_that_was_pooled_once(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        chain = open_chain(tmp_path / "home")
        service = NodeService(
            chain,
            Mempool(MempoolLimits(max_gapped_per_sender=0)),
            admission=TxAdmission(chain, parked_capacity=PARKED),
        )
        client = TestClient(TestServer(create_app(service)))
        await client.start_server()
        try:
            b = Builder(chain)
            chain_id = chain.params.chain_id
            honest = funded_key(VALIDATORS)
            balance = service.account_of(address_of(honest.public_key)).balance
            tx0 = Tx.create(honest, chain_id, 0, FEE, Transfer(TO, 1))
            tx1 = Tx.create(honest, chain_id, 1, FEE, Transfer(TO, 1))
            # Nonce 1 first: no room behind a gap, so held (its client's origin).
            answer = await client.post("/txs", json={"tx": tx1.raw.hex()})
            assert (await answer.json())["status"] == "held"
            # Nonce 0: pooled, and the held nonce 1 is offered and pooled at once.
            answer = await client.post("/txs", json={"tx": tx0.raw.hex()})
            assert (await answer.json())["status"] == "pending"
            assert tx1.id in service.mempool
            # The user's other wallet spent nearly everything at nonce 0 on another node:
            # nonce 1 is left unpaid, parked (held) until the sender is paid again.
            spend = Tx.create(honest, chain_id, 0, FEE, Transfer(TO, balance - FEE - FEE // 2))
            block = b.commit([spend])
            service.on_committed(block, tuple(chain.events(block.height)))
            status = await (await client.get(f"/txs/{tx1.id.hex()}")).json()
            assert status["status"] == "held", status

            attacker = funded_key(VALIDATORS + 1)
            left = service.account_of(address_of(attacker.public_key)).balance
            run = [Tx.create(attacker, chain_id, n, FEE, Transfer(TO, 1)) for n in range(RUN)]
            for tx in run:
                service.submit(tx.raw, from_peer=True, peer="ab" * 32)
            everything = Tx.create(attacker, chain_id, 0, 2 * FEE, Transfer(TO, left - 2 * FEE))
            service.submit(everything.raw, from_peer=True, peer="ab" * 32)
            status = await (await client.get(f"/txs/{tx1.id.hex()}")).json()
            assert status["status"] == "held", (
                f"a peer's unpaid tail of {RUN - 1} txs pushed the honest client's held tx "
                f"out of the parked set: it reads {status}"
            )
        finally:
            await client.close()
            chain.close()

    asyncio.run(main())
