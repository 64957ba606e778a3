"""rev21a, against api21 2: the `evicted` records (`EVICTED_KEPT`) are said to be filled
"only by txs that were pooled, their fee covered", so that unlike the refusals' record
no one fills them for free. But a replaced tx makes a record too, and a tx pooled behind
a nonce gap never commits, so its sender never pays its fee.

Attack (anyone with one funded key; the balance is never spent): pool 64 txs behind a
gap (nonces 1..64, nonce 0 never sent: they can never go into a block), then replace
each again and again with the 10% fee bump. Every replacement records the replaced tx
as `evicted`; about 160 rounds push every honest record out of the bound. An honest
user's tx that a proposer dropped after gossiping it is then `unknown` instead of
`evicted`, and the wallet frees its nonce: a re-send races the copy the peers may still
commit (the very race api21 2 closed). Nothing was committed, no fee was paid.

What should happen: the honest user's tx stays `evicted` (for example: a replaced tx,
whose nonce its replacement holds, makes no record of its own, or records are bounded per
sender so that a sender's churn pushes out its own)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node import service as service_module
from fluxchain.node.mempool import REPLACE_BUMP_PERCENT
from tests.api.test_api import api, tx_status
from tests.support.chain import FEE, VALIDATORS, funded_key, owner_key

TO = address_of(owner_key(6).public_key)
GAPPED = 64  # the pool's default `max_gapped_per_sender`


def test_rev21a_a_funded_key_replacing_its_gapped_txs_flushes_an_honest_evicted_record(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with api(tmp_path) as (client, service, _b):
            chain_id = service.chain.params.chain_id
            honest = funded_key(VALIDATORS)
            mine = Tx.create(honest, chain_id, 0, FEE, Transfer(TO, 1))
            answer = await client.post("/txs", json={"tx": mine.raw.hex()})
            assert (await answer.json())["status"] == "pending"
            # A proposer's drop (reason local to that proposal): gossiped, so `evicted`.
            service.note_dropped(mine, TxError(Reason.UNKNOWN_APP, "no such app"))
            assert (await tx_status(client, mine.id))["status"] == "evicted"

            attacker = funded_key(VALIDATORS + 1)
            sender = address_of(attacker.public_key)
            balance = service.account_of(sender).balance
            fees = dict.fromkeys(range(1, GAPPED + 1), FEE)
            for nonce, fee in fees.items():  # behind the gap at nonce 0
                service.submit(Tx.create(attacker, chain_id, nonce, fee, Transfer(TO, 1)).raw)
            replacements = 0
            while replacements <= service_module.EVICTED_KEPT:
                for nonce, old in fees.items():
                    fees[nonce] = fee = old * (100 + REPLACE_BUMP_PERCENT) // 100 + 1
                    tx = Tx.create(attacker, chain_id, nonce, fee, Transfer(TO, 1))
                    service.submit(tx.raw)
                    assert tx.id in service.mempool
                    replacements += 1
            # Nothing committed: the attacker paid nothing and holds every nonce still.
            assert service.chain.height == 0
            assert service.account_of(sender).balance == balance
            status = await tx_status(client, mine.id)
            assert status["status"] == "evicted", (
                f"after {replacements} free replacements of a gapped sender's txs the "
                f"honest user's evicted tx reads {status}"
            )

    asyncio.run(main())
