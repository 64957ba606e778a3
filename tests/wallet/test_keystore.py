"""The keystore: round trip, wrong password, tampering of every part, 0600, atomic writes."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fluxchain.core.crypto import SigningKey
from wallet.errors import ExitCode, WalletError
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key, node_key_path
from wallet.keystore import (
    DEFAULT_SCRYPT_N,
    KEYSTORE_FILE,
    MIN_SCRYPT_N,
    KeyEntry,
    Keystore,
    Secrets,
    hd_entry,
    seal,
    write_atomic,
)

PASSWORD = "a long enough password"


def make_wallet(directory: Path, n: int = MIN_SCRYPT_N) -> tuple[Keystore, Secrets]:
    raw = SigningKey(bytes(31) + b"\x07")
    secrets_ = Secrets(INSECURE_TEST_MNEMONIC, "", {raw.public_key.hex(): raw.secret.hex()})
    accounts = (
        hd_entry(secrets_, "account0", account_path(0), 0),
        hd_entry(secrets_, "account4", account_path(4), 4),
        KeyEntry("cold", "raw", 0, "", raw.public_key),
    )
    node_keys = (hd_entry(secrets_, "node0", node_key_path(0), 0),)
    store = seal("tflux", accounts, node_keys, secrets_, PASSWORD, n)
    store.save(directory)
    return store, secrets_


def test_round_trip(tmp_path: Path) -> None:
    store, secrets_ = make_wallet(tmp_path)
    loaded = Keystore.load(tmp_path)
    assert loaded == store
    opened = loaded.unlock(PASSWORD)
    assert opened == secrets_
    assert opened.signing_key(loaded.find_account("account4")).secret == (
        derive_key(INSECURE_TEST_MNEMONIC, account_path(4)).secret
    )
    assert opened.signing_key(loaded.find_account("cold")).secret == bytes(31) + b"\x07"
    assert opened.signing_key(loaded.find_node_key("0")).public_key == store.node_keys[0].public_key
    # lookups by name, HD index and address
    entry = loaded.find_account("4")
    assert loaded.find_account(entry.address("tflux")) == entry
    with pytest.raises(WalletError) as info:
        loaded.find_account("nobody")
    assert info.value.reason == "unknown_account"
    # re-sealing draws a fresh salt and nonce
    again = loaded.sealed(opened, PASSWORD)
    assert again.kdf["salt"] != loaded.kdf["salt"]
    assert again.cipher["nonce"] != loaded.cipher["nonce"]
    assert again.unlock(PASSWORD) == secrets_


def test_default_cost_round_trip(tmp_path: Path) -> None:
    make_wallet(tmp_path, DEFAULT_SCRYPT_N)
    store = Keystore.load(tmp_path)
    assert store.kdf["n"] == 2**17 and store.kdf["r"] == 8
    assert store.unlock(PASSWORD).mnemonic == INSECURE_TEST_MNEMONIC


def test_file_fields_and_no_secret_in_clear(tmp_path: Path) -> None:
    make_wallet(tmp_path)
    text = (tmp_path / KEYSTORE_FILE).read_text()
    doc = json.loads(text)
    assert set(doc) == {
        "format",
        "version",
        "hrp",
        "kdf",
        "cipher",
        "password_check",
        "accounts",
        "node_keys",
        "ciphertext",
    }
    assert doc["kdf"]["name"] == "scrypt" and doc["cipher"]["name"] == "aes-256-gcm"
    assert "abandon" not in text and "0" * 62 + "07" not in text


def test_wrong_password_says_so_and_changes_nothing(tmp_path: Path) -> None:
    make_wallet(tmp_path)
    path = tmp_path / KEYSTORE_FILE
    before = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(WalletError) as info:
        Keystore.load(tmp_path).unlock("not the password")
    assert info.value.reason == "wrong_password"
    assert info.value.exit_code == ExitCode.KEYSTORE
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def _flip_hex(text: str, at: int = 0) -> str:
    digit = text[at]
    return text[:at] + ("1" if digit != "1" else "2") + text[at + 1 :]


def _ciphertext(doc: dict[str, Any]) -> None:
    doc["ciphertext"] = _flip_hex(doc["ciphertext"], 10)


def _tag(doc: dict[str, Any]) -> None:
    doc["ciphertext"] = _flip_hex(doc["ciphertext"], len(doc["ciphertext"]) - 1)


def _nonce(doc: dict[str, Any]) -> None:
    doc["cipher"]["nonce"] = _flip_hex(doc["cipher"]["nonce"])


def _salt(doc: dict[str, Any]) -> None:
    doc["kdf"]["salt"] = _flip_hex(doc["kdf"]["salt"])


def _kdf_n(doc: dict[str, Any]) -> None:
    doc["kdf"]["n"] *= 2


def _kdf_r(doc: dict[str, Any]) -> None:
    doc["kdf"]["r"] = 7


def _kdf_n_not_power(doc: dict[str, Any]) -> None:
    doc["kdf"]["n"] += 1


def _kdf_n_huge(doc: dict[str, Any]) -> None:
    doc["kdf"]["n"] = 2**30


def _account_swapped(doc: dict[str, Any]) -> None:
    # an attacker replaces the receive address shown by `address`
    other = SigningKey(bytes(31) + b"\x09").public_key.hex()
    doc["accounts"][0]["public_key"] = other


def _hrp(doc: dict[str, Any]) -> None:
    doc["hrp"] = "flux"


def _check(doc: dict[str, Any]) -> None:
    doc["password_check"] = _flip_hex(doc["password_check"])


TAMPERING: list[tuple[Callable[[dict[str, Any]], None], set[str]]] = [
    # the ciphertext, its tag, the nonce and every clear field are authenticated by GCM
    (_ciphertext, {"keystore_tampered"}),
    (_tag, {"keystore_tampered"}),
    (_nonce, {"keystore_tampered"}),
    (_account_swapped, {"keystore_tampered"}),
    (_hrp, {"keystore_tampered"}),
    # salt and cost feed the key itself: they show as a failed password check
    (_salt, {"wrong_password"}),
    (_kdf_n, {"wrong_password"}),
    (_kdf_r, {"wrong_password"}),
    (_check, {"wrong_password"}),
    # values no honest writer produces are refused before any work
    (_kdf_n_not_power, {"keystore_corrupt"}),
    (_kdf_n_huge, {"keystore_corrupt"}),
]


@pytest.mark.parametrize(("tamper", "reasons"), TAMPERING, ids=[t.__name__ for t, _ in TAMPERING])
def test_tampering_is_detected(
    tmp_path: Path, tamper: Callable[[dict[str, Any]], None], reasons: set[str]
) -> None:
    make_wallet(tmp_path)
    path = tmp_path / KEYSTORE_FILE
    doc = json.loads(path.read_text())
    tamper(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(WalletError) as info:
        Keystore.load(tmp_path).unlock(PASSWORD)
    assert info.value.reason in reasons, info.value
    assert info.value.exit_code == ExitCode.KEYSTORE


def test_garbage_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / KEYSTORE_FILE
    for content in (b"", b"{", b"[]", b'{"format": "other"}', b"\xff" * 10):
        path.write_bytes(content)
        with pytest.raises(WalletError) as info:
            Keystore.load(tmp_path)
        assert info.value.reason == "keystore_corrupt"
    path.unlink()
    with pytest.raises(WalletError) as info:
        Keystore.load(tmp_path)
    assert info.value.reason == "no_wallet"


def test_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "wallet"
    make_wallet(directory)
    assert stat.S_IMODE((directory / KEYSTORE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_atomic_write_leaves_no_temp_file(tmp_path: Path) -> None:
    make_wallet(tmp_path)
    make_wallet(tmp_path)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEYSTORE_FILE]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.json"
    write_atomic(target, b"old")

    def crash(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]
