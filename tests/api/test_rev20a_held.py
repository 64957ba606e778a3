"""Review rev20a of api20 (held txs): attacks on the API's `held` answer that a user or an
operator sees go wrong on b916dc5 (docs/wallet.md §3, docs/security.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.mempool import Mempool, MempoolLimits
from tests.api.test_api import api, commit, tx_status
from tests.support.chain import FEE, Builder, funded_key, owner_key


def _same_nonce(b: Builder, amount: int) -> Tx:
    """A transfer of `amount` at funded_key's next chain nonce, without taking it."""
    key = funded_key()
    return Tx.create(
        key,
        b.chain.params.chain_id,
        b.chain_nonce(key),
        FEE,
        Transfer(address_of(owner_key(6).public_key), amount),
    )


def test_rev20a_a_second_tx_at_a_pooled_nonce_is_not_answered_held(tmp_path: Path) -> None:
    """Attack (a twin wallet on the same key, or a user's `--nonce N` re-send at the fee of
    the stuck tx): tx A holds nonce 0 in the pool; tx B, a different tx at nonce 0 that
    does not outbid A, is refused `replacement_underpriced`, a SENDER_CLEARS reason, so it
    is parked and answered 202 `held` ("it may still commit"). That is the very race
    api20 says `held` prevents: two txs at one nonce, either may commit (B once A is
    evicted), and the user is not told which; the wallet (which maps
    replacement_underpriced to `nonce_conflict`, docs/wallet.md §3) now records B instead
    of reporting the conflict, dropping its own record of A at that nonce.
    Fix direction: a client's tx refused because another tx holds its nonce is answered
    refused (400 replacement_underpriced), not held (or not parked for a client)."""

    async def main() -> None:
        async with api(tmp_path) as (client, service, b):
            first, second = _same_nonce(b, 1), _same_nonce(b, 2)
            assert first.fee == second.fee and first.id != second.id
            assert (await client.post("/txs", json={"tx": first.raw.hex()})).status == 202
            answer = await client.post("/txs", json={"tx": second.raw.hex()})
            body = await answer.json()
            assert answer.status == 400, body
            assert body["error"]["reason"] == "replacement_underpriced", body
            assert (await tx_status(client, second.id))["status"] != "held"
            commit(service, b)
            assert (await tx_status(client, first.id))["status"] == "confirmed"

    asyncio.run(main())


def test_rev20a_api_flood_of_unfunded_txs_does_not_push_out_peers_parked_txs(
    tmp_path: Path,
) -> None:
    """Attack (anyone who can reach the API; unfunded keys sign for free): post as many
    unfunded txs from fresh keys as the parked set holds. Each is refused
    `insufficient_funds` (SENDER_CLEARS), parked under this node's own origin (None) and
    answered 202 `held`; this node's own are pushed out only when they are all that is
    parked, so every peer's parked tx (an honest B->C waiting for A->B's funds) is pushed
    out, and each later one is pushed out at once: the rev18b 2 defence ("a flood pushes
    out its own") does not hold for an API flood. What an operator sees: a peer's honest
    tx is no longer held (GET /txs/{id} not `held`). Fix direction: count API txs by a
    per-client (or per-sender) origin, or do not park a client's tx whose sender cannot
    pay the fee at all; an API flood must push out its own."""

    async def main() -> None:
        capacity = 8
        async with api(tmp_path) as (client, service, b):
            service.admission = TxAdmission(service.chain, parked_capacity=capacity)
            to = address_of(owner_key(6).public_key)
            # A peer's honest tx of an unfunded sender, waiting for funds (parked).
            waiting_key = owner_key(40)
            honest = b.tx(waiting_key, Transfer(to, 1))
            try:
                service.submit(honest.raw, from_peer=True, peer="peer-1")
            except TxError as exc:  # refused for now: parked
                assert getattr(exc, "reason", None) is Reason.INSUFFICIENT_FUNDS, exc
            assert service.admission.is_parked(honest.id)
            flood = [b.tx(owner_key(100 + i), Transfer(to, 1)) for i in range(capacity)]
            answers = await client.post("/txs/batch", json={"txs": [t.raw.hex() for t in flood]})
            statuses = [r.get("status") for r in (await answers.json())["results"]]
            assert statuses == ["held"] * capacity, statuses
            status = await tx_status(client, honest.id)
            assert status["status"] == "held", (
                f"the peer's honest parked tx was pushed out by an API flood: {status}"
            )

    asyncio.run(main())


def test_rev20a_a_repost_refused_for_good_is_not_answered_held(tmp_path: Path) -> None:
    """Attack (a user re-posting, or a wallet re-trying, a held tx after its nonce was
    spent by another tx): a block commits a different tx at the held tx's nonce; when more
    senders are due than a block's offers (PARKED_OFFERS under load; 1 here) the held tx
    is not offered yet, so it is still parked. A client's re-post is then refused for good
    (`nonce_mismatch`: its nonce is below the account's), which `_refused` neither parks
    nor forgets for a client, and `submit` sees it parked: 202 `held [nonce_mismatch]`
    ("it may still commit") for a tx that never can. Fix direction: a client's refusal
    for good forgets the parked tx (as an offer's does), and only a SENDER_CLEARS refusal
    that parks it is answered held."""

    async def main() -> None:
        async with api(tmp_path, Mempool(MempoolLimits(max_gapped_per_sender=0))) as (
            client,
            service,
            b,
        ):
            service.admission = TxAdmission(service.chain, offers_per_block=1)
            to = address_of(owner_key(0).public_key)  # exists: no deposit
            held: list[Tx] = []
            spenders: list[Tx] = []
            for index in (5, 6):  # two funded senders, each a tx held behind its nonce gap
                key = owner_key(index)
                spender = b.tx(key, Transfer(to, 1))  # nonce 0, not sent yet
                late = b.tx(key, Transfer(to, 2))  # nonce 1: held behind the gap
                answer = await (await client.post("/txs", json={"tx": late.raw.hex()})).json()
                assert answer["status"] == "held", answer
                rival = Tx.create(key, b.chain.params.chain_id, 1, FEE, Transfer(to, 3))
                spenders += [spender, rival]
                held.append(late)
            # A block (another node's proposal) spends both senders' nonces 0 and 1 with
            # other txs: one sender's held tx is offered (and let go), the other's waits.
            block = b.commit(spenders)
            service.on_committed(block, tuple(service.chain.events(block.height)))
            for tx in held:
                answer = await client.post("/txs", json={"tx": tx.raw.hex()})
                body = await answer.json()
                assert body.get("status") != "held", (
                    f"a tx whose nonce is spent is answered held: {body}"
                )
                assert (await tx_status(client, tx.id))["status"] != "held"

    asyncio.run(main())
