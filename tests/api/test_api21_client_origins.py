"""Issue 24, api21 1: the API's clients are counted apart in the parked set, by the
address group of the socket each tx came in on (`origins.client_origin`), so one client's
flood pushes out its own held txs, not another client's; a peer's are still never pushed
out by clients as a whole holding fewer; a client-sent header names no origin."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.core.crypto import address_of
from fluxchain.core.errors import Reason, TxError, TxHeldError
from fluxchain.core.tx import Transfer
from fluxchain.node.admission import TxAdmission
from fluxchain.node.origins import API, client_origin, is_own
from tests.api.test_api import api, tx_status
from tests.support.chain import owner_key


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("81.2.69.142", "81.2.1.1"),  # IPv4: one /16
        ("81.2.69.142", "::ffff:81.2.69.142"),  # IPv4-mapped IPv6 is its IPv4
        ("81.2.69.142", "2002:5102:458e::1"),  # 6to4 embeds 81.2.69.142
        ("2a00:1450:4001::1", "2a00:1450:ffff:1::2"),  # IPv6: one /32
        ("2001:470:1::1", "2001:470:0fff::2"),  # Hurricane Electric's tunnels: one /36
        ("127.0.0.1", "::1"),  # this node's own host
        ("127.0.0.1", "127.8.9.10"),
        ("10.0.0.1", "192.168.1.7"),  # not routed on the internet: one group
        ("fe80::1", "fd00::5"),
    ],
)
def test_api21_addresses_an_attacker_gets_cheaply_share_a_group(one: str, other: str) -> None:
    assert client_origin(one) == client_origin(other)
    assert is_own(client_origin(one))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("81.2.69.142", "81.3.69.142"),
        ("2a00:1450::1", "2a00:1451::1"),
        ("2001:470:1::1", "2001:470:f000::1"),
        ("127.0.0.1", "10.0.0.1"),  # the node's host apart from its LAN
        ("81.2.69.142", "10.0.0.1"),
        ("81.2.69.142", None),  # no address (not a TCP socket): a group of its own
    ],
)
def test_api21_addresses_of_other_networks_are_apart(one: str, other: str | None) -> None:
    assert client_origin(one) != client_origin(other)


def test_api21_an_origin_is_a_clients_never_a_peers() -> None:
    """A peer's id is hex: no client origin can be one, and every client origin is own."""
    for host in ("81.2.69.142", "::1", "garbage", None, ""):
        origin = client_origin(host)
        assert origin.startswith(API) and is_own(origin)
        assert any(c not in "0123456789abcdef" for c in origin)


def test_api21_one_clients_flood_does_not_push_out_another_clients_held_tx(
    tmp_path: Path,
) -> None:
    """Attack (anyone reaching the API; unfunded keys sign for free): a client on this
    node's host posts as many unfunded txs as the parked set holds, each with a forged
    X-Forwarded-For of its own. Each is answered `held`; a remote client's held tx (an
    honest B->C waiting for A->B's funds, posted earlier) must stay held: the flood
    pushes out its own. Before api21 every client was one origin `api`, so the honest
    tx, the oldest, went first."""

    async def main() -> None:
        capacity = 8
        async with api(tmp_path) as (client, service, b):
            service.admission = TxAdmission(service.chain, parked_capacity=capacity)
            to = address_of(owner_key(6).public_key)
            honest = b.tx(owner_key(40), Transfer(to, 1))
            with pytest.raises(TxHeldError):
                service.submit(honest.raw, client=client_origin("81.2.69.142"))
            flood = [b.tx(owner_key(100 + i), Transfer(to, 1)) for i in range(capacity)]
            for i, tx in enumerate(flood):
                answer = await client.post(
                    "/txs",
                    json={"tx": tx.raw.hex()},
                    headers={"X-Forwarded-For": f"81.{i + 10}.0.1", "X-Real-IP": f"9.{i}.0.1"},
                )
                assert (await answer.json())["status"] == "held"
            status = await tx_status(client, honest.id)
            assert status["status"] == "held", (
                f"another client's flood pushed out an honest held tx: {status}"
            )
            # The flood pushed out its own oldest, one per tx past the bound.
            assert not service.admission.is_parked(flood[0].id)
            assert service.admission.is_parked(flood[-1].id)

    asyncio.run(main())


def test_api21_clients_in_many_groups_do_not_push_out_a_peers_parked_tx(
    tmp_path: Path,
) -> None:
    """Clients in many address groups (one held tx each) hold more parked txs together
    than a peer: past the bound a client's tx goes, never the peer's, as when every
    client was one origin (rev20a 3)."""

    async def main() -> None:
        capacity = 6
        async with api(tmp_path) as (_client, service, b):
            service.admission = TxAdmission(service.chain, parked_capacity=capacity)
            to = address_of(owner_key(6).public_key)
            peers = [b.tx(owner_key(40 + i), Transfer(to, 1)) for i in range(2)]
            for tx in peers:
                with pytest.raises(TxError) as refused:
                    service.submit(tx.raw, from_peer=True, peer="peer-1")
                assert refused.value.reason is Reason.INSUFFICIENT_FUNDS
            clients = [b.tx(owner_key(100 + i), Transfer(to, 1)) for i in range(capacity)]
            for i, tx in enumerate(clients):
                with pytest.raises(TxHeldError):
                    service.submit(tx.raw, client=client_origin(f"{20 + i}.1.2.3"))
            assert all(service.admission.is_parked(tx.id) for tx in peers)
            assert not service.admission.is_parked(clients[0].id)  # the oldest client's

    asyncio.run(main())
