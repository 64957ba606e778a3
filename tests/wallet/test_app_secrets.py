"""`flux-wallet app secrets`: the plaintext file stays local, and its errors never echo it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fluxchain.core import secrets
from fluxchain.core.sealing import new_key_salt
from fluxchain.core.tx import SecretKind, secrets_fee
from tests.light.test_lying_node import Net, build, run
from tests.support.chain import owner_key
from wallet.cli.app import read_secret_values
from wallet.client import NodeTransport
from wallet.errors import WalletError

SECRET = "hunter2-correct-horse"


def test_a_secrets_file_gives_env_values_and_registry_logins(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(
        f"web:\n  env:\n    DB_PASSWORD: {SECRET}\n"
        "  registry_auth:\n    registry.example.com: 'deploy:token'\n",
        encoding="utf-8",
    )
    assert read_secret_values(path) == {
        ("web", SecretKind.ENV, "DB_PASSWORD"): SECRET.encode(),
        ("web", SecretKind.REGISTRY_AUTH, "registry.example.com"): b"deploy:token",
    }


def test_a_broken_secrets_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(f"web:\n  env:\n    DB_PASSWORD: [{SECRET}\n", encoding="utf-8")
    with pytest.raises(WalletError) as info:
        read_secret_values(path)
    assert SECRET not in str(info.value) and "line" in str(info.value)


def test_a_lying_node_serves_rotated_away_secrets_for_the_owner_to_reseal(
    tmp_path: Path,
) -> None:
    """The owner of "web" sets DB_PASSWORD, it leaks, and the owner rotates it (a new
    APP_SECRETS: new salt, new data key; the hosts that knew the old key are why it was
    rotated). A node the owner's wallet reads from keeps the answer of
    `GET /apps/web/secrets` from before the rotation and serves it again.

    `flux-wallet app secrets web` (re-seal, no file) reads that view with no proof
    (`NodeClient.app_secrets` is the one unverified read of the command: the app and
    node reads beside it are proven), finds that it opens with the owner's key (it is the
    owner's own old set, so every check passes), and signs an APP_SECRETS carrying the
    old salt, key check and ciphertexts: the chain takes it from the owner and the leaked
    password and the old key are back on every host. Should: the verifying wallet
    refuses a secrets view the chain's committed state does not prove (or shows the
    current one), so the re-seal never carries a set the chain no longer holds."""

    async def body(net: Net) -> None:
        build(net)  # app "web" of owner_key(5), placed on the genesis nodes
        owner = owner_key(5)
        b = net.builder
        chain_id = net.chain.params.chain_id

        def set_secrets(password: bytes) -> None:
            payload = secrets.seal_secrets(
                owner,
                chain_id,
                "web",
                {("web", SecretKind.ENV, "DB_PASSWORD"): password},
                {},
                new_key_salt(),
            )
            stored = sum(len(s.ciphertext) for s in payload.secrets)
            fee = net.chain.params.min_fee + secrets_fee(stored, net.chain.params)
            b.commit([b.tx(owner, payload, fee=fee)])
            assert not b.rejected, b.rejected

        set_secrets(b"leaked-old-password")
        ask = NodeTransport(net.honest_url).ask
        stale = await asyncio.to_thread(ask, "GET", "/apps/web/secrets")
        set_secrets(b"rotated-new-password")
        b.commit()
        current = secrets.get_secret_set(net.chain.state, "web")
        assert current is not None and current.key_check.hex() != stale["key_check"]

        def replay(path: str, status: int, answer: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if path.startswith("/apps/web/secrets"):
                return 200, stale
            return status, answer

        net.lie = replay
        client = net.client(net.liar_url)
        try:
            view = await asyncio.to_thread(client.app_secrets, "web")
        except WalletError:
            return  # refused: the wallet re-seals nothing it cannot prove
        assert view["key_check"] == current.key_check.hex(), (
            "the verifying wallet took the rotated-away secrets from a lying node"
        )

    run(tmp_path, body)
