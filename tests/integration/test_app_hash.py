"""App-hash consistency on a live network (issue 18), as CometBFT's e2e runs check it.

Four validators and a full node, as real processes on 127.0.0.1, under app and node churn
(registrations, confirms, relocations, app register / update / extend / cancel, nodes that
expire and come back), while each validator in turn is SIGKILLed and started again, twice:
at the end every node holds the same block, so the same header and state root, at every
height, and all of them keep committing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from hashlib import sha256
from pathlib import Path

import pytest

from fluxchain.core.crypto import SigningKey, address_of, encode_address
from fluxchain.core.params import Tier
from fluxchain.core.tx import Payload, Tx
from fluxchain.genesis_builder import devnet_params
from tests.integration.harness import Devnet
from tests.support.chain import (
    FEE,
    app_cancel,
    app_extend,
    app_register,
    app_spec,
    app_update,
    default_fee,
    funded_key,
    geo_rules,
    node_register,
    node_update,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
VALIDATORS = [0, 1, 2, 3]
FULL_NODE = 4
CHURNED = 5  # a node the churn registers, relocates, kills and brings back
EVERYONE = [*VALIDATORS, FULL_NODE]


@dataclass
class ApiSigner:
    """The tx helpers' Signer over a live node's API: nonces come from the node."""

    net: Devnet
    via: int = FULL_NODE
    nonces: dict[bytes, int] = field(default_factory=dict)

    @property
    def chain_id(self) -> str:
        return self.net.genesis.chain_id

    def next_nonce(self, key: SigningKey) -> int:
        if key.public_key not in self.nonces:
            address = encode_address(address_of(key.public_key), "tflux")
            self.nonces[key.public_key] = self.net.get(self.via, f"/accounts/{address}")["nonce"]
        return self.nonces[key.public_key]

    def tx(self, key: SigningKey, payload: Payload, fee: int | None = None) -> Tx:
        nonce = self.next_nonce(key)
        self.nonces[key.public_key] = nonce + 1
        return Tx.create(key, self.chain_id, nonce, default_fee(payload, fee), payload)

    def learn_node_key(self, key: SigningKey) -> None:
        del key  # the nodes sign their own votes

    def settle(self, txs: list[Tx]) -> None:
        """Send `txs` to the full node and wait until each is confirmed."""
        for tx in txs:
            code, body = self.net.post(self.via, "/txs", {"tx": tx.raw.hex()})
            assert code == 202, body

        def status(tx: Tx) -> str:
            return str((self.net.try_get(self.via, f"/txs/{tx.id.hex()}") or {}).get("status"))

        wait_until(
            lambda: all(status(tx) in ("confirmed", "rejected") for tx in txs),
            60,
            "the churn txs settled",
            nodes=self.net,
        )
        refused = {tx.id.hex()[:16]: self.net.get(self.via, f"/txs/{tx.id.hex()}") for tx in txs}
        refused = {k: v for k, v in refused.items() if v.get("status") != "confirmed"}
        assert not refused, refused
        self.nonces.clear()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Devnet]:
    devnet = Devnet(tmp_path, params=replace(devnet_params(), confirm_window=20))
    devnet.add_node()  # the full node
    # A node the churn registers (a tx names its API endpoint, hence `announced`): a real
    # process, so that it votes if an epoch gives it a validator seat (a chain record with
    # no process behind it would take a seat and its power would never vote).
    devnet.add_node(announced=True)
    devnet.start_all()
    try:
        devnet.wait_height([*EVERYONE, CHURNED], 2, timeout=60)
        yield devnet
    finally:
        devnet.close()


def whole_set_through_an_epoch_start(net: Devnet, keys: set[str]) -> None:
    """Wait until `keys` are all in the validator set, and still are after the next
    epoch start."""
    epoch = net.genesis.params.epoch_length

    def whole() -> bool:
        validators = net.get(FULL_NODE, "/validators")["validators"]
        return keys <= {v["pubkey"] for v in validators}

    while True:
        wait_until(whole, 120, "every genesis validator in the set", nodes=net)
        boundary = (net.height(FULL_NODE) // epoch + 1) * epoch
        net.wait_height([FULL_NODE], boundary + 1, timeout=60)
        if whole():
            return


def _record_only_key(i: int) -> SigningKey:
    return SigningKey(sha256(b"app-hash-node" + bytes([i])).digest())


def test_every_node_holds_the_same_headers_through_churn_and_kills(net: Devnet) -> None:
    signer = ApiSigner(net)
    owners = [funded_key(4), funded_key(5), funded_key(6)]
    app_owner = funded_key(7)
    secret = json.loads((net.homes[CHURNED] / "node_key.json").read_text())["secret"]
    churned_key = SigningKey(bytes.fromhex(secret))
    node_ids: list[bytes] = []

    def register_nodes() -> None:
        """The churned node (it confirms itself, as every node does), and two that only
        exist as records and are never confirmed."""
        txs = [
            node_register(
                signer,
                owners[0],
                churned_key,
                Tier.CUMULUS,
                "DE",
                "EU",
                endpoint=f"127.0.0.1:{net.api_ports[CHURNED]}",
            ),
            *(
                node_register(signer, owners[i], _record_only_key(i), Tier.NIMBUS, "FR", "EU")
                for i in (1, 2)
            ),
        ]
        signer.settle(txs)
        node_ids.extend(tx.id[:20] for tx in txs)

    def register_apps() -> None:
        signer.settle(
            [
                app_register(
                    signer,
                    app_owner,
                    app_spec(app_owner, "alpha", geolocation=geo_rules("EU"), expire=300),
                ),
                app_register(
                    signer, app_owner, app_spec(app_owner, "beta", ports=(31001,), expire=300)
                ),
            ]
        )

    # A relocation pays for every instance it moves (docs/economics.md): enough for all.
    relocation_fee = FEE + 10 * net.genesis.params.relocation_price
    moved_at: list[int] = []  # a node may relocate once per confirm window

    def relocate_and_update() -> None:
        signer.settle(
            [
                node_update(signer, owners[0], node_ids[0], "US", "NA", fee=relocation_fee),
                node_update(signer, owners[1], node_ids[1], "JP", "AS", fee=relocation_fee),
                app_update(
                    signer,
                    app_owner,
                    app_spec(app_owner, "beta", ports=(31001,), instances=4, expire=300),
                ),
            ]
        )
        moved_at.append(net.height(FULL_NODE))

    def extend_and_tier() -> None:
        signer.settle(
            [
                app_extend(signer, app_owner, "alpha", 50),
                app_register(
                    signer,
                    app_owner,
                    app_spec(app_owner, "gamma", ports=(31002,), min_tier=Tier.STRATUS, expire=300),
                ),
            ]
        )

    def churned_node_down() -> None:
        """Its host dies: its checkers report it down, its instances move."""
        net.kill(CHURNED)

    def relocate_back_and_cancel() -> None:
        window = net.genesis.params.confirm_window
        net.wait_height([FULL_NODE], moved_at[0] + window + 1, timeout=90)
        signer.settle(
            [
                node_update(signer, owners[0], node_ids[0], "FR", "EU", fee=relocation_fee),
                app_cancel(signer, app_owner, "beta"),
            ]
        )

    def churned_node_back() -> None:
        """It starts again and confirms itself: back in CONFIRMED, offered to apps."""
        net.start(CHURNED)

    def scale_alpha() -> None:
        signer.settle(
            [
                app_update(
                    signer,
                    app_owner,
                    app_spec(
                        app_owner, "alpha", geolocation=geo_rules("EU"), instances=5, expire=300
                    ),
                )
            ]
        )

    churn: list[Callable[[], None]] = [
        register_nodes,
        register_apps,
        relocate_and_update,
        extend_and_tier,
        churned_node_down,
        relocate_back_and_cancel,
        churned_node_back,
        scale_alpha,
    ]
    genesis_keys = {v.pubkey.hex() for v in net.genesis.validator_set().validators}
    kills = [v for _ in range(2) for v in VALIDATORS]  # each validator twice
    for victim, wave in zip(kills, churn, strict=True):
        net.kill(victim)
        alive = [i for i in EVERYONE if i != victim]
        wave()  # the network goes on under churn while one validator is dead
        net.wait_height(alive, max(net.height(i) for i in alive) + 3, timeout=90)
        net.start(victim)
        wait_until(
            lambda v=victim: net.height(v) >= net.height(FULL_NODE) - 1,  # type: ignore[misc]
            90,
            f"node{victim} caught up after its restart",
            nodes=net,
        )
        # Four equal validators survive one failure at a time. The victim's checkers
        # marked it DOWN while it was dead, so it left the set at the next epoch start; it
        # confirms itself again and is back from the epoch after. The next kill waits
        # until the whole set has stood through an epoch start (no stale report left).
        whole_set_through_an_epoch_start(net, genesis_keys)
    top = max(net.height(i) for i in EVERYONE)
    everyone = [*EVERYONE, CHURNED]
    net.wait_height(everyone, top + 3, timeout=90)  # all keep committing
    net.assert_agree(everyone, top + 3)
    kinds = {
        event["kind"]
        for h in range(1, top + 1)
        for event in net.get(FULL_NODE, f"/blocks/{h}")["events"]
    }
    assert {"assigned", "unassigned", "node_updated", "app_cancelled", "node_down"} <= kinds, kinds
