"""The encrypted keystore: one file, `wallet.json`, per wallet directory.

The secrets (the BIP39 mnemonic, its passphrase, imported raw keys) are encrypted with
AES-256-GCM under a key derived from the password by scrypt; everything else (address
prefix, account list, public keys) is stored in clear so `list`, `address` and `balance`
need no password, and is bound to the ciphertext as GCM associated data, so any edit of
it is detected at the next unlock. docs/wallet.md describes every field.

    {
      "format": "fluxchain-wallet", "version": 1, "hrp": "tflux",
      "kdf": {"name": "scrypt", "salt": hex16, "n": 131072, "r": 8, "p": 1},
      "cipher": {"name": "aes-256-gcm", "nonce": hex12},
      "password_check": hex16,
      "accounts": [{"name", "source": "hd"|"raw", "index", "path", "public_key"}],
      "node_keys": [same shape],
      "ciphertext": hex (ciphertext || 16-byte tag)
    }

scrypt derives 64 bytes: the first 32 are the AES key, the last 32 are hashed into
`password_check`. A wrong password fails that check (reason `wrong_password`) before
any decryption; a right password whose ciphertext or clear fields were modified fails
the GCM tag (`keystore_tampered`). Every save draws a fresh salt and nonce, so a
(key, nonce) pair is never reused. Files are written atomically (temp file in the same
directory, fsync, rename, fsync of the directory) with mode 0600: a crash leaves the
old file or the new one, never a mix, and a failed unlock writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fluxchain.core.crypto import SigningKey, address_of, encode_address
from fluxchain.core.errors import FluxError
from wallet.errors import WalletError, WalletReason
from wallet.hd import check_mnemonic, derive_key

FORMAT: Final = "fluxchain-wallet"
VERSION: Final = 1
KEYSTORE_FILE: Final = "wallet.json"
# scrypt cost: N = 2^17, r = 8 takes 128 MiB and about half a second — the cost OWASP
# recommends for interactive logins. Tests and small devices may lower N to 2^14.
DEFAULT_SCRYPT_N: Final = 2**17
MIN_SCRYPT_N: Final = 2**14
MAX_SCRYPT_N: Final = 2**20  # a file asking for more is refused (it could exhaust memory)
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_SIZE: Final = 16
NONCE_SIZE: Final = 12  # the GCM standard nonce
KEY_SIZE: Final = 32
CHECK_SIZE: Final = 16
MIN_PASSWORD: Final = 8
MAX_FILE: Final = 1 << 20  # a keystore is a few KB; refuse to parse anything huge
_CHECK_TAG: Final = b"fluxchain-wallet/password-check/1"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key of the wallet (an account or a node hot key), public parts only."""

    name: str
    source: str  # "hd": derived from the mnemonic at `path`; "raw": imported / generated
    index: int  # hd: the last path index; raw: position among the raw keys
    path: str  # hd derivation path, "" for raw keys
    public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "index": self.index,
            "path": self.path,
            "public_key": self.public_key.hex(),
        }

    @classmethod
    def from_json(cls, raw: Any, where: str) -> KeyEntry:
        if not isinstance(raw, dict):
            raise _corrupt(f"{where} is not an object")
        try:
            entry = cls(
                name=str(raw["name"]),
                source=str(raw["source"]),
                index=int(raw["index"]),
                path=str(raw["path"]),
                public_key=bytes.fromhex(raw["public_key"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise _corrupt(f"{where}: {exc}") from None
        if entry.source not in ("hd", "raw") or len(entry.public_key) != 33:
            raise _corrupt(f"{where}: bad source or public key")
        return entry

    def address(self, hrp: str) -> str:
        return encode_address(address_of(self.public_key), hrp)


@dataclass(frozen=True, slots=True)
class Secrets:
    """The decrypted part: what signs."""

    mnemonic: str | None
    passphrase: str = ""
    raw_keys: dict[str, str] = field(default_factory=dict)  # public key hex -> secret hex

    def to_bytes(self) -> bytes:
        body = {"mnemonic": self.mnemonic, "passphrase": self.passphrase, "raw_keys": self.raw_keys}
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Secrets:
        try:
            body = json.loads(data)
            return cls(body["mnemonic"], body["passphrase"], dict(body["raw_keys"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise _corrupt(f"decrypted contents are not readable: {exc}") from None

    def signing_key(self, entry: KeyEntry) -> SigningKey:
        """The private key of `entry`."""
        if entry.source == "hd":
            if self.mnemonic is None:
                raise _corrupt(f"{entry.name} is an HD key but the wallet has no mnemonic")
            key = derive_key(self.mnemonic, entry.path, self.passphrase)
        else:
            secret = self.raw_keys.get(entry.public_key.hex())
            if secret is None:
                raise _corrupt(f"no secret stored for {entry.name}")
            key = SigningKey(bytes.fromhex(secret))
        if key.public_key != entry.public_key:
            raise _corrupt(f"the secret of {entry.name} does not match its public key")
        return key


@dataclass(frozen=True, slots=True)
class Keystore:
    """A wallet file's clear fields; `unlock` decrypts its secrets."""

    hrp: str
    accounts: tuple[KeyEntry, ...]
    node_keys: tuple[KeyEntry, ...]
    kdf: dict[str, Any]
    cipher: dict[str, Any]
    password_check: bytes
    ciphertext: bytes

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> Keystore:
        path = directory / KEYSTORE_FILE
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_FILE + 1)
        except FileNotFoundError:
            raise WalletError(
                WalletReason.NO_WALLET,
                f"no wallet in {directory}; create one with `flux-wallet create` "
                "or `flux-wallet import`",
            ) from None
        except OSError as exc:
            raise WalletError(WalletReason.KEYSTORE_CORRUPT, f"cannot read {path}: {exc}") from None
        if len(data) > MAX_FILE:
            raise _corrupt(f"{path} is larger than a keystore can be")
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise _corrupt(f"{path} is not JSON: {exc}") from None
        return cls.from_json(raw)

    @classmethod
    def from_json(cls, raw: Any) -> Keystore:
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise _corrupt(f"not a {FORMAT} file")
        if raw.get("version") != VERSION:
            raise _corrupt(f"keystore version {raw.get('version')!r} is not supported")
        try:
            store = cls(
                hrp=str(raw["hrp"]),
                accounts=tuple(
                    KeyEntry.from_json(a, f"accounts[{i}]") for i, a in enumerate(raw["accounts"])
                ),
                node_keys=tuple(
                    KeyEntry.from_json(a, f"node_keys[{i}]") for i, a in enumerate(raw["node_keys"])
                ),
                kdf=dict(raw["kdf"]),
                cipher=dict(raw["cipher"]),
                password_check=bytes.fromhex(raw["password_check"]),
                ciphertext=bytes.fromhex(raw["ciphertext"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise _corrupt(f"missing or malformed field: {exc}") from None
        _check_kdf(store.kdf)
        if store.cipher.get("name") != "aes-256-gcm":
            raise _corrupt(f"cipher {store.cipher.get('name')!r} is not supported")
        return store

    def to_json(self) -> dict[str, Any]:
        return {**self._header(), "ciphertext": self.ciphertext.hex()}

    def _header(self) -> dict[str, Any]:
        """Every field but the ciphertext: authenticated as GCM associated data."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "hrp": self.hrp,
            "kdf": self.kdf,
            "cipher": self.cipher,
            "password_check": self.password_check.hex(),
            "accounts": [a.to_json() for a in self.accounts],
            "node_keys": [k.to_json() for k in self.node_keys],
        }

    # -- secrets ---------------------------------------------------------------------------

    def unlock(self, password: str) -> Secrets:
        """Decrypt the secrets; WalletError(wrong_password | keystore_tampered) otherwise."""
        derived = _derive(password, self.kdf)
        if not hmac.compare_digest(_check_value(derived), self.password_check):
            raise WalletError(
                WalletReason.WRONG_PASSWORD,
                "wrong password for this wallet (nothing was changed)",
            )
        nonce = _hex_field(self.cipher, "nonce", NONCE_SIZE)
        try:
            plain = AESGCM(derived[:KEY_SIZE]).decrypt(nonce, self.ciphertext, _aad(self._header()))
        except InvalidTag:
            raise WalletError(
                WalletReason.KEYSTORE_TAMPERED,
                "the keystore fails authentication: its contents were modified after it was "
                "written (restore it from a backup or re-import the mnemonic)",
            ) from None
        return Secrets.from_bytes(plain)

    def sealed(self, secrets_: Secrets, password: str, scrypt_n: int | None = None) -> Keystore:
        """This keystore re-encrypted: fresh salt and nonce, the current clear fields."""
        n = scrypt_n or int(self.kdf.get("n", DEFAULT_SCRYPT_N))
        return seal(self.hrp, self.accounts, self.node_keys, secrets_, password, n)

    # -- lookups ---------------------------------------------------------------------------

    def find_account(self, ref: str) -> KeyEntry:
        """An account by name, HD index, or address."""
        return _find(self.accounts, ref, self.hrp, "account")

    def find_node_key(self, ref: str) -> KeyEntry:
        return _find(self.node_keys, ref, self.hrp, "node key")

    def save(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), indent=2) + "\n"
        write_atomic(directory / KEYSTORE_FILE, text.encode())


def seal(
    hrp: str,
    accounts: tuple[KeyEntry, ...],
    node_keys: tuple[KeyEntry, ...],
    secrets_: Secrets,
    password: str,
    scrypt_n: int = DEFAULT_SCRYPT_N,
) -> Keystore:
    """Encrypt `secrets_` under `password` into a new Keystore (not yet saved)."""
    kdf = {
        "name": "scrypt",
        "salt": secrets.token_bytes(SALT_SIZE).hex(),
        "n": scrypt_n,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
    }
    _check_kdf(kdf)
    derived = _derive(password, kdf)
    nonce = secrets.token_bytes(NONCE_SIZE)
    unsealed = Keystore(
        hrp=hrp,
        accounts=accounts,
        node_keys=node_keys,
        kdf=kdf,
        cipher={"name": "aes-256-gcm", "nonce": nonce.hex()},
        password_check=_check_value(derived),
        ciphertext=b"",
    )
    ciphertext = AESGCM(derived[:KEY_SIZE]).encrypt(
        nonce, secrets_.to_bytes(), _aad(unsealed._header())
    )
    return replace(unsealed, ciphertext=ciphertext)


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise WalletError(
            WalletReason.WEAK_PASSWORD, f"the password must have at least {MIN_PASSWORD} characters"
        )


def hd_entry(secrets_: Secrets, name: str, path: str, index: int) -> KeyEntry:
    """The entry of the HD key at `path` (derived now, so its public key is recorded)."""
    if secrets_.mnemonic is None:
        raise WalletError(
            WalletReason.BAD_INPUT,
            "this wallet holds imported keys only (no mnemonic), so it cannot derive keys",
        )
    key = derive_key(secrets_.mnemonic, path, secrets_.passphrase)
    return KeyEntry(name, "hd", index, path, key.public_key)


def normalise_mnemonic(words: str) -> str:
    try:
        return check_mnemonic(words)
    except FluxError as exc:
        raise WalletError(WalletReason.BAD_INPUT, exc.message) from None


# -- files ------------------------------------------------------------------------------------


def write_atomic(target: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `target` so that a crash leaves the old file or the new one.

    A temp file next to the target (same filesystem, so the rename is atomic) is created
    with `mode` from the start — the secret never sits in a world-readable file — written,
    fsynced, renamed over the target, and the directory entry fsynced. On any failure the
    temp file is removed and the target is untouched.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- internals --------------------------------------------------------------------------------


def _corrupt(message: str) -> WalletError:
    return WalletError(WalletReason.KEYSTORE_CORRUPT, f"keystore unreadable: {message}")


def _hex_field(obj: dict[str, Any], name: str, size: int) -> bytes:
    try:
        value = bytes.fromhex(obj[name])
    except (KeyError, ValueError, TypeError):
        raise _corrupt(f"{name} is missing or not hex") from None
    if len(value) != size:
        raise _corrupt(f"{name} must be {size} bytes")
    return value


def _check_kdf(kdf: dict[str, Any]) -> None:
    if kdf.get("name") != "scrypt":
        raise _corrupt(f"kdf {kdf.get('name')!r} is not supported")
    n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
    if type(n) is not int or not MIN_SCRYPT_N <= n <= MAX_SCRYPT_N or n & (n - 1):
        raise _corrupt(f"kdf.n must be a power of two in [2^14, 2^20], not {n!r}")
    if type(r) is not int or not 1 <= r <= 16 or type(p) is not int or not 1 <= p <= 4:
        raise _corrupt("kdf.r must be within 1..16 and kdf.p within 1..4")
    _hex_field(kdf, "salt", SALT_SIZE)


def _derive(password: str, kdf: dict[str, Any]) -> bytes:
    salt = _hex_field(kdf, "salt", SALT_SIZE)
    scrypt = Scrypt(salt=salt, length=2 * KEY_SIZE, n=kdf["n"], r=kdf["r"], p=kdf["p"])
    return scrypt.derive(password.encode())


def _check_value(derived: bytes) -> bytes:
    return hashlib.sha256(_CHECK_TAG + derived[KEY_SIZE:]).digest()[:CHECK_SIZE]


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _find(entries: tuple[KeyEntry, ...], ref: str, hrp: str, what: str) -> KeyEntry:
    ref = ref.strip()
    for entry in entries:
        if ref in (entry.name, entry.address(hrp), entry.public_key.hex()):
            return entry
    if ref.isdigit():
        for entry in entries:
            if entry.source == "hd" and entry.index == int(ref):
                return entry
    known = ", ".join(e.name for e in entries) or "none"
    raise WalletError(WalletReason.UNKNOWN_ACCOUNT, f"no {what} {ref!r} in this wallet ({known})")
