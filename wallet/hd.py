"""Hierarchical deterministic keys: BIP39 mnemonics and BIP32 derivation.

Paths follow BIP44 with Flux's SLIP-44 coin type 19167:

    m/44'/19167'/0'/0/i    account i: owns funds and node collateral
    m/44'/19167'/1'/0/i    node hot key i (signs confirmations, attestations and votes)

so one mnemonic restores both the money and the node keys an operator made with it.
"""

from __future__ import annotations

from typing import Final

from bip32 import BIP32
from mnemonic import Mnemonic

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import FluxError, Reason

COIN_TYPE: Final = 19167
# The BIP39 test vector's all-zero entropy mnemonic. Published, hence insecure: devnets only.
INSECURE_TEST_MNEMONIC: Final = " ".join(["abandon"] * 11 + ["about"])

_WORDS = Mnemonic("english")


def new_mnemonic(strength_bits: int = 256) -> str:
    """A fresh 24-word (default) English mnemonic from the OS's CSPRNG."""
    return _WORDS.generate(strength=strength_bits)


def check_mnemonic(words: str) -> str:
    """Normalise spacing and verify the checksum; raise FluxError(bad_field) if wrong."""
    normalised = " ".join(words.split())
    if not _WORDS.check(normalised):
        raise FluxError(Reason.BAD_FIELD, "not a valid BIP39 English mnemonic (checksum fails)")
    return normalised


def account_path(index: int) -> str:
    return f"m/44'/{COIN_TYPE}'/0'/0/{index}"


def node_key_path(index: int) -> str:
    return f"m/44'/{COIN_TYPE}'/1'/0/{index}"


def derive_key(words: str, path: str, passphrase: str = "") -> SigningKey:
    """The key at `path` under the mnemonic's BIP39 seed."""
    return derive_key_from_seed(mnemonic_seed(words, passphrase), path)


def mnemonic_seed(words: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP39 seed of a (checked) mnemonic and optional passphrase."""
    return Mnemonic.to_seed(check_mnemonic(words), passphrase)


def derive_key_from_seed(seed: bytes, path: str) -> SigningKey:
    """The BIP32 key at `path` (e.g. "m/0'/1") under a master seed."""
    return SigningKey(BIP32.from_seed(seed).get_privkey_from_path(path))
