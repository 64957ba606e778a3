"""Light-client attack detection (fluxchain/light/detector.py): two nodes serve different
headers at one height, both signed by the validators the client trusts. The client stops
trusting the chain, names both nodes and both headers with the stable reason code
`light_client_attack`, and the wallet refuses every read until the user anchors again.

The forks are forged with the test validators' keys: on hand-made chains (the light
client alone), and by a lying proxy in front of the real API (the wallet).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fluxchain.core.block import Header
from fluxchain.core.encoding import pack
from fluxchain.core.params import COIN
from fluxchain.core.records import Account, account_key
from fluxchain.core.statetree import StateTree
from fluxchain.core.validators import ValidatorSet
from fluxchain.core.votes import sign_commit
from fluxchain.light.client import LightClient
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.store import TrustStore
from fluxchain.light.verifier import LightBlock
from tests.light.test_lying_node import PERIOD_MS, RICH, RICH_TEXT, Net, build, run
from tests.light.test_verifier import (
    CHAIN,
    KEYS,
    HandChain,
    client,
    genesis_store,
    steady,
    validator_set,
)
from tests.support.chain import VALIDATORS, devnet_genesis, node_hot_key
from wallet.cli import main
from wallet.client import NodeClient
from wallet.errors import WalletError
from wallet.verify import Verifier


@dataclass
class Fork:
    """A witness serving `chain`, except a forged header at `height` signed by `signers`
    (of the set `keys`, which its header names)."""

    chain: HandChain
    height: int
    signers: list[Any]
    keys: list[Any]
    name: str = "witness"

    def __post_init__(self) -> None:
        real = self.chain.blocks[self.height].header
        validators = validator_set(self.keys)
        self.forged = replace(real, state_root=b"\x66" * 32, validators_hash=validators.hash())
        commit = sign_commit(self.signers, CHAIN, self.height, 0, self.forged.hash())
        self.block = LightBlock(self.forged, commit, validators)

    def light_block(self, height: int) -> LightBlock:
        return self.block if height == self.height else self.chain.light_block(height)

    def header(self, height: int) -> Header:
        return self.light_block(height).header

    def validators(self, height: int) -> ValidatorSet:
        return self.light_block(height).validators


def verify_at(light: LightClient, chain: HandChain, height: int) -> None:
    block = chain.blocks[height]
    light.verify_header(chain, block.header, block.commit)


def test_fork_signed_by_the_trusted_set_halts_the_client_naming_both_nodes(
    tmp_path: Path,
) -> None:
    chain = steady(10)
    store = genesis_store(path=tmp_path / "trusted_headers.json")
    fork = Fork(chain, 10, KEYS[:4], KEYS[:4])  # every trusted validator signs the fork
    light = LightClient(store, lambda: chain.time_of(10), witnesses=[chain, fork])
    with pytest.raises(LightError) as caught:
        verify_at(light, chain, 10)
    assert caught.value.reason is LightReason.LIGHT_CLIENT_ATTACK
    message = caught.value.message
    assert "height 10" in message and "hand-made" in message and "witness" in message
    assert chain.blocks[10].header.hash().hex() in message and fork.forged.hash().hex() in message
    # Kept on disk: a wallet started later refuses too, whatever it is asked.
    reloaded = TrustStore.load(tmp_path / "trusted_headers.json")
    assert reloaded is not None and reloaded.attack is not None
    assert reloaded.attack.conflicting.hash == fork.forged.hash()
    again = client(reloaded, chain.time_of(10))
    with pytest.raises(LightError) as refused:
        verify_at(again, chain, 3)
    assert refused.value.reason is LightReason.LIGHT_CLIENT_ATTACK
    # `flux-wallet trust` shows the halt and both headers.
    shown = CliRunner().invoke(main, ["--wallet-dir", str(tmp_path), "--json", "trust"])
    assert shown.exit_code == 0, shown.output
    attack = json.loads(shown.output)["attack"]
    assert attack["reason"] == "light_client_attack" and attack["height"] == 10
    assert attack["conflicting"] == {
        "node": "witness",
        "hash": fork.forged.hash().hex(),
        "time_ms": fork.forged.time_ms,
    }
    # Anchoring again (a new store) trusts the chain again.
    fresh = client(genesis_store(path=tmp_path / "trusted_headers.json"), chain.time_of(10))
    verify_at(fresh, chain, 10)
    assert fresh.store.latest().height == 10


def test_fork_signed_by_more_than_a_third_of_the_trusted_power_is_an_attack() -> None:
    """Two of the four trusted validators (1/2 of the power) sign a fork whose header
    names a set of their own, two new keys with them: it verifies by skipping from the
    anchor, as the real chain does; so it is reported, not ignored."""
    chain = steady(10)
    attackers = [KEYS[0], KEYS[1], KEYS[6], KEYS[7]]
    fork = Fork(chain, 10, attackers, attackers)
    light = LightClient(genesis_store(), lambda: chain.time_of(10), witnesses=[fork])
    with pytest.raises(LightError) as caught:
        verify_at(light, chain, 10)
    assert caught.value.reason is LightReason.LIGHT_CLIENT_ATTACK


def test_fork_signed_by_a_third_or_less_is_a_faulty_witness_not_an_attack() -> None:
    chain = steady(10)
    # One trusted validator of four, with three keys of its own: 1/4 of the trusted power.
    fork = Fork(chain, 10, [KEYS[0], *KEYS[5:8]], [KEYS[0], *KEYS[5:8]])
    light = LightClient(genesis_store(), lambda: chain.time_of(10), witnesses=[fork])
    verify_at(light, chain, 10)  # the primary's header is trusted; the witness ignored
    assert light.store.attack is None and light.store.latest().height == 10


def test_fully_signed_header_conflicting_with_a_trusted_one_is_an_attack() -> None:
    """A node serves, at a height the client already trusts, another header signed by the
    whole trusted set: the client halts (a minority-signed one is only refused)."""
    chain = steady(3)
    light = client(genesis_store(), chain.time_of(3))
    verify_at(light, chain, 3)
    forged = replace(chain.blocks[3].header, state_root=b"\x09" * 32)
    minority = sign_commit(KEYS[:1], CHAIN, 3, 0, forged.hash())
    with pytest.raises(LightError) as caught:
        light.verify_header(chain, forged, minority)
    assert caught.value.reason is LightReason.HEADER_UNVERIFIED
    assert light.store.attack is None
    signed = sign_commit(KEYS[:4], CHAIN, 3, 0, forged.hash())
    with pytest.raises(LightError) as caught:
        light.verify_header(chain, forged, signed)
    assert caught.value.reason is LightReason.LIGHT_CLIENT_ATTACK
    assert light.store.attack is not None and light.store.attack.height == 3


# -- the wallet, against the real API and a proxy serving a forged fork ------------------------


def forged_fork(net: Net) -> dict[str, Any]:
    """The head header with a state root of the liar's own (RICH owns a fortune), signed
    by every validator's key: what the liar serves for the head, with a proof of RICH's
    fortune against it."""
    chain = net.chain
    real = chain.get_block(chain.height).header
    fortune = pack(Account(10**9 * COIN, 0).to_fields())
    tree = StateTree.from_items([(account_key(RICH), fortune)])
    fake = replace(real, state_root=tree.root)
    keys = [node_hot_key(i) for i in range(VALIDATORS)]
    commit = sign_commit(keys, fake.chain_id, fake.height, 0, fake.hash())
    levels = tree.prove(account_key(RICH))
    return {
        "header": fake,
        "header_raw": pack(fake.to_fields()).hex(),
        "commit_raw": pack(commit.to_fields()).hex(),
        "entry": {
            "key": account_key(RICH).hex(),
            "value": fortune.hex(),
            "proof": [p.hex() for p in (levels.other_leaf, *levels.levels)],
        },
    }


def fork_lie(fork: dict[str, Any]) -> Any:
    """Serve the fork: the head header (by height) and RICH's fortune proven against it."""
    height = fork["header"].height

    def lie(path: str, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path.startswith(f"/headers/{height}"):
            body = {**body, "header_raw": fork["header_raw"], "commit_raw": fork["commit_raw"]}
        elif path.startswith("/accounts/"):
            proof = {
                **body["proof"],
                "header_raw": fork["header_raw"],
                "commit_raw": fork["commit_raw"],
                "entries": [fork["entry"]],
            }
            body = {**body, "balance": 10**9 * COIN, "nonce": 0, "proof": proof}
        return status, body

    return lie


def test_wallet_seeing_a_forged_fork_refuses_until_trusted_again(tmp_path: Path) -> None:
    """The liar serves a fork of the head signed by every validator key. A wallet that
    asks the honest node first verifies its answer, compares the head with the liar's and
    halts; one that asks the liar first verifies the fork, compares it with the honest
    node's head and halts. Either names both nodes, never shows the fortune, and refuses
    every read, from any node, until anchored again."""

    async def body(net: Net) -> None:
        build(net)
        net.lie = fork_lie(forged_fork(net))
        for order in ((net.honest_url, net.liar_url), (net.liar_url, net.honest_url)):
            wallet = net.client(*order)
            with pytest.raises(WalletError) as caught:
                await asyncio.to_thread(wallet.account, RICH_TEXT)
            assert caught.value.reason == "light_client_attack", caught.value
            message = caught.value.message
            assert net.honest_url in message and net.liar_url in message, message
            assert net.chain.head_hash.hex() in message, message
            honest_only = NodeClient(net.honest_url, 10, wallet.verifier)
            with pytest.raises(WalletError) as again:
                await asyncio.to_thread(honest_only.account, RICH_TEXT)
            assert again.value.reason == "light_client_attack"
        # Anchoring again (`flux-wallet trust --genesis`) replaces the store: trusted again.
        wallet_dir = net.tmp / f"wallet{net.wallets}"
        TrustStore.from_genesis(devnet_genesis(), wallet_dir / "trusted_headers.json").save()
        verifier = Verifier(wallet_dir, PERIOD_MS, clock=lambda: net.builder.time_ms + 500)
        account = await asyncio.to_thread(
            NodeClient(net.honest_url, 10, verifier).account, RICH_TEXT
        )
        assert account.balance < 10**9 * COIN

    run(tmp_path, body)
