"""`flux-wallet app secrets`: the plaintext file stays local, and its errors never echo it."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.tx import SecretKind
from wallet.cli.app import read_secret_values
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
