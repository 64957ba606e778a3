"""The genesis pinned with the trust anchor (issue 23 review, fix23): the wallet signs
with its params, refuses to mix chains, and keeps its trust store private."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from fluxchain.genesis_builder import new_devnet_genesis
from fluxchain.light.errors import LightError, LightReason
from fluxchain.light.store import STORE_FILE, TrustStore
from fluxchain.light.verifier import TrustedBlock
from tests.light.test_lying_node import RICH_TEXT, Net, build, run
from tests.light.test_review23_lying_reads import params_liar
from tests.support.chain import VALIDATORS, devnet_genesis
from tests.wallet.conftest import FAST_SCRYPT, PASSWORD
from wallet.cli import main
from wallet.errors import WalletError
from wallet.hd import INSECURE_TEST_MNEMONIC
from wallet.verify import TRUST_GENESIS_ENV, Verifier, open_trust_store


def test_trust_genesis_of_another_chain_than_the_store_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLUX_TRUST_GENESIS names another chain than the existing trust store: the wallet
    used to ignore it silently and verify against the store's chain."""
    TrustStore.from_genesis(devnet_genesis(), tmp_path / STORE_FILE).save()
    other = tmp_path / "other-genesis.json"
    elsewhere = new_devnet_genesis(VALIDATORS, chain_id="other-chain", genesis_time_ms=1_000_000)
    other.write_text(json.dumps(elsewhere.to_json()))
    monkeypatch.setenv(TRUST_GENESIS_ENV, str(other))
    with pytest.raises(WalletError) as caught:
        open_trust_store(tmp_path)
    assert caught.value.reason == "wrong_network", caught.value
    assert "other-chain" in caught.value.message and "flux-devnet" in caught.value.message


def test_trust_store_directory_and_file_are_private(tmp_path: Path) -> None:
    """The wallet directory a first `trust` creates was 0755 (the keystore lives there)."""
    wallet_dir = tmp_path / "new-wallet"
    TrustStore.from_genesis(devnet_genesis(), wallet_dir / STORE_FILE).save()
    assert stat.S_IMODE(wallet_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((wallet_dir / STORE_FILE).stat().st_mode) == 0o600


def test_pinned_genesis_survives_a_reload(tmp_path: Path) -> None:
    genesis = devnet_genesis()
    TrustStore.from_genesis(genesis, tmp_path / STORE_FILE).save()
    loaded = TrustStore.load(tmp_path / STORE_FILE)
    assert loaded is not None
    assert (loaded.genesis_hash, loaded.params) == (genesis.hash(), genesis.params)


def test_store_without_a_pinned_genesis_asks_to_anchor_again(tmp_path: Path) -> None:
    """A store written before the genesis was pinned has no params to sign with: the
    wallet must not fall back to a node's /params."""
    genesis = devnet_genesis()
    first = genesis.validator_set()
    anchor = TrustedBlock(0, genesis.hash(), genesis.genesis_time_ms, first, b"", first)
    TrustStore.from_block(genesis.chain_id, 60_000, anchor, tmp_path / STORE_FILE).save()
    with pytest.raises(WalletError) as caught:
        Verifier(tmp_path).params()
    assert caught.value.reason == "no_trust_anchor", caught.value
    assert "anchor again" in caught.value.message


def test_header_anchor_with_the_genesis_of_another_chain_is_refused() -> None:
    genesis = devnet_genesis()
    first = genesis.validator_set()
    anchor = TrustedBlock(1, b"\x01" * 32, genesis.genesis_time_ms, first, genesis.hash())
    with pytest.raises(LightError) as caught:
        TrustStore.from_block("other-chain", 60_000, anchor, genesis=genesis)
    assert caught.value.reason is LightReason.NO_TRUST_ANCHOR


def test_unverified_wallet_does_not_sign_for_another_chain_than_its_store(
    tmp_path: Path,
) -> None:
    """With --no-verify the params are a node's word; a wallet that has a trust store
    still refuses to sign for a chain id other than the one it trusts."""

    async def body(net: Net) -> None:
        build(net)

        def elsewhere(params: dict[str, object]) -> None:
            params["chain_id"] = "other-chain"

        async with params_liar(net, elsewhere) as (liar_url, posted):
            wallet_dir = net.tmp / "no-verify-wallet"
            TrustStore.from_genesis(devnet_genesis(), wallet_dir / STORE_FILE).save()
            env = {"FLUX_WALLET_PASSWORD": PASSWORD, "FLUX_TRUST_GENESIS": ""}
            head = ["--node", liar_url, "--wallet-dir", str(wallet_dir), "--json", "--no-verify"]
            keys = ["--mnemonic", INSECURE_TEST_MNEMONIC, "--accounts", "4"]
            runner = CliRunner()
            imported = await asyncio.to_thread(
                runner.invoke, main, [*head, "import", *keys, "--scrypt-n", FAST_SCRYPT], env=env
            )
            assert imported.exit_code == 0, imported.output
            sent = await asyncio.to_thread(
                runner.invoke, main, [*head, "send", RICH_TEXT, "1", "--no-wait"], env=env
            )
        assert sent.exit_code != 0, sent.output
        assert "wrong_network" in sent.output and "other-chain" in sent.output, sent.output
        assert posted == []

    run(tmp_path, body)
