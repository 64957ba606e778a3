"""Key commands: create, import, add-account, list, address, export (no node needed but
for the address prefix)."""

from __future__ import annotations

import secrets
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.panel import Panel
from rich.table import Table

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import FluxError
from wallet.cli.common import PARAMS_PROBE_TIMEOUT_S, Env, account_entry, account_option, pass_env
from wallet.errors import WalletError, WalletReason
from wallet.hd import account_path, new_mnemonic
from wallet.keystore import (
    DEFAULT_SCRYPT_N,
    KeyEntry,
    Keystore,
    Secrets,
    hd_entry,
    normalise_mnemonic,
    seal,
)

MAX_ACCOUNTS_AT_ONCE = 100  # each is a BIP32 derivation at create/import time
CONFIRM_WORDS = 2  # words the user re-types after `create` shows the mnemonic


def _network_hrp(env: Env, hrp: str | None) -> str:
    """The address prefix for a new wallet: --hrp, else the node's, else mainnet's."""
    if hrp:
        return hrp
    try:
        return env.client(PARAMS_PROBE_TIMEOUT_S).unverified_params().address_hrp
    except WalletError:
        env.err.print(
            f"note: node {env.node_url} not reachable; addresses use the prefix 'flux' "
            "(pass --hrp to choose)",
            markup=False,
        )
        return "flux"


def _parse_indices(text: str) -> list[int]:
    """Account indices: "3" is the first three (0, 1, 2), as in `create --accounts 3`;
    "4-7" a range; "0,2,5" a list (a single index: "5,")."""
    out: list[int] = []
    try:
        if text.strip().isdigit():
            return list(range(_count(int(text), text)))
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                out.extend(range(low, high + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise WalletError(
            WalletReason.BAD_INPUT, f"--accounts {text!r}: use N, A-B or A,B,C"
        ) from None
    if not out or min(out) < 0 or max(out) >= 2**31:
        raise WalletError(WalletReason.BAD_INPUT, f"--accounts {text!r}: indices are ≥ 0")
    _count(len(set(out)), text)
    return sorted(set(out))


def _count(count: int, text: str) -> int:
    if not 1 <= count <= MAX_ACCOUNTS_AT_ONCE:
        raise WalletError(
            WalletReason.BAD_INPUT, f"--accounts {text!r}: 1..{MAX_ACCOUNTS_AT_ONCE} accounts"
        )
    return count


def _hd_accounts(secrets_: Secrets, indices: list[int]) -> tuple[KeyEntry, ...]:
    return tuple(hd_entry(secrets_, f"account{i}", account_path(i), i) for i in indices)


def _accounts_json(store: Keystore) -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "source": a.source,
            "path": a.path,
            "address": a.address(store.hrp),
            "public_key": a.public_key.hex(),
        }
        for a in store.accounts
    ]


def _node_keys_json(store: Keystore) -> list[dict[str, Any]]:
    return [
        {"name": k.name, "source": k.source, "path": k.path, "public_key": k.public_key.hex()}
        for k in store.node_keys
    ]


def _refuse_existing(env: Env) -> None:
    if env.has_wallet():
        raise WalletError(
            WalletReason.WALLET_EXISTS,
            f"{env.wallet_dir} already holds a wallet; use another --wallet-dir "
            "(a wallet is never overwritten)",
        )


def _confirm_positions(word_count: int) -> list[int]:
    """Which words to ask back: CONFIRM_WORDS distinct positions, unpredictable."""
    return sorted(secrets.SystemRandom().sample(range(word_count), CONFIRM_WORDS))


def _confirm_written_down(words: list[str]) -> None:
    """Ask for CONFIRM_WORDS random words back; abort (writing nothing) on a mismatch."""
    for position in _confirm_positions(len(words)):
        typed = click.prompt(f"Word #{position + 1} of your mnemonic", err=True)
        if typed.strip().lower() != words[position]:
            raise WalletError(
                WalletReason.ABORTED,
                f"word #{position + 1} does not match; no wallet was written — run "
                "`flux-wallet create` again and write the words down carefully",
            )


def _save_new_wallet(env: Env, store: Keystore) -> None:
    _refuse_existing(env)
    env.saved(store)


@click.command()
@click.option(
    "--accounts",
    "count",
    type=click.IntRange(1, MAX_ACCOUNTS_AT_ONCE),
    default=1,
    show_default=True,
    help="How many accounts (m/44'/19167'/0'/0/0 …) to derive now.",
)
@click.option(
    "--words",
    type=click.Choice(["12", "24"]),
    default="24",
    show_default=True,
    help="Mnemonic length.",
)
@click.option("--hrp", default=None, help="Address prefix (default: the node's, else 'flux').")
@click.option(
    "--scrypt-n",
    type=click.IntRange(2**14, 2**20),
    default=DEFAULT_SCRYPT_N,
    show_default=True,
    help="scrypt cost (a power of two); lower only for tests or small devices.",
)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask for words back (scripts); you must still store the mnemonic.",
)
@pass_env
def create(env: Env, count: int, words: str, hrp: str | None, scrypt_n: int, yes: bool) -> None:
    """Create a wallet with a new BIP39 mnemonic, shown once.

    The mnemonic restores every account and node key of this wallet; it is printed once
    and never stored in clear. Unless --yes, you are asked to type two of its words back
    before the wallet is written.

    \b
    Examples:
      flux-wallet create
      flux-wallet create --accounts 3 --words 12
      FLUX_WALLET_PASSWORD=… flux-wallet --json create --yes
    """
    _refuse_existing(env)
    password = env.password(new=True)
    prefix = _network_hrp(env, hrp)
    mnemonic = new_mnemonic(128 if words == "12" else 256)
    secrets_ = Secrets(mnemonic)
    accounts = _hd_accounts(secrets_, list(range(count)))
    store = seal(prefix, accounts, (), secrets_, password, scrypt_n)
    word_list = mnemonic.split()
    if env.json_mode:
        env.emit(
            {
                "mnemonic": mnemonic,
                "wallet": str(env.wallet_dir),
                "accounts": _accounts_json(store),
            }
        )
    else:
        grid = "\n".join(
            "  ".join(f"{i + 1:>2}. {w:<9}" for i, w in enumerate(word_list) if i // 6 == row)
            for row in range((len(word_list) + 5) // 6)
        )
        env.out.print(
            Panel(
                grid,
                title="your recovery mnemonic — write it down, it is shown only once",
                subtitle="anyone with these words can spend your FLUX",
            ),
            markup=False,
        )
    if not yes:
        _confirm_written_down(word_list)
    _save_new_wallet(env, store)
    env.say(f"wallet written to {env.wallet_dir / 'wallet.json'}")
    for account in store.accounts:
        env.say(f"{account.name}  {account.path}  {account.address(prefix)}")


def _read_secret_file(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise WalletError(WalletReason.BAD_INPUT, f"cannot read {path}: {exc.strerror}") from None


def _raw_key(text: str) -> SigningKey:
    try:
        secret = bytes.fromhex(text.strip().removeprefix("0x"))
        return SigningKey(secret)
    except (ValueError, FluxError):
        raise WalletError(
            WalletReason.BAD_INPUT, "a private key is 64 hex characters (32 bytes)"
        ) from None


def _looks_like_key(text: str) -> bool:
    cleaned = text.strip().removeprefix("0x")
    return len(cleaned) == 64 and all(c in "0123456789abcdefABCDEF" for c in cleaned)


@click.command("import")
@click.option(
    "--mnemonic",
    envvar="FLUX_WALLET_MNEMONIC",
    default=None,
    help="The mnemonic (env FLUX_WALLET_MNEMONIC; beware shell history).",
)
@click.option("--mnemonic-file", default=None, help="Read the mnemonic from a file ('-': stdin).")
@click.option("--key", "key_hex", default=None, help="A raw private key, 64 hex characters.")
@click.option("--key-file", default=None, help="Read a raw private key from a file ('-': stdin).")
@click.option(
    "--accounts",
    "indices",
    default="1",
    show_default=True,
    help="Accounts to derive: N (the first N), A-B (a range) or A,B,C (a list).",
)
@click.option(
    "--bip39-passphrase",
    envvar="FLUX_BIP39_PASSPHRASE",
    default="",
    help="Optional BIP39 passphrase ('25th word').",
)
@click.option("--hrp", default=None, help="Address prefix (default: the node's, else 'flux').")
@click.option(
    "--scrypt-n",
    type=click.IntRange(2**14, 2**20),
    default=DEFAULT_SCRYPT_N,
    show_default=True,
    help="scrypt cost (a power of two).",
)
@click.option("--name", default=None, help="Name of an imported raw-key account.")
@pass_env
def import_(
    env: Env,
    mnemonic: str | None,
    mnemonic_file: str | None,
    key_hex: str | None,
    key_file: str | None,
    indices: str,
    bip39_passphrase: str,
    hrp: str | None,
    scrypt_n: int,
    name: str | None,
) -> None:
    """Restore a wallet from a mnemonic, or import a raw private key.

    A mnemonic makes a new wallet (the directory must be empty). A raw key makes a new
    wallet, or — when a wallet exists — is added to it as one more account. Without any
    option you are prompted (input hidden).

    \b
    Examples:
      flux-wallet import                                  # prompts
      flux-wallet import --mnemonic-file words.txt --accounts 4   # accounts 0..3
      flux-wallet import --mnemonic-file words.txt --accounts 4-7
      flux-wallet import --key-file key.hex --name cold
    """
    if mnemonic_file is not None:
        mnemonic = _read_secret_file(mnemonic_file)
    if key_file is not None:
        key_hex = _read_secret_file(key_file)
    if mnemonic is None and key_hex is None:
        text = click.prompt("Mnemonic or private key (hex)", hide_input=True, err=True)
        if _looks_like_key(text):
            key_hex = text
        else:
            mnemonic = text
    if mnemonic is not None and key_hex is not None:
        raise WalletError(WalletReason.BAD_INPUT, "give a mnemonic or a raw key, not both")
    if key_hex is not None:
        _import_raw_key(env, _raw_key(key_hex), name, hrp, scrypt_n)
        return
    assert mnemonic is not None
    _refuse_existing(env)
    words = normalise_mnemonic(mnemonic)
    account_indices = _parse_indices(indices)  # input errors before the password prompt
    password = env.password(new=True)
    prefix = _network_hrp(env, hrp)
    secrets_ = Secrets(words, bip39_passphrase)
    store = seal(prefix, _hd_accounts(secrets_, account_indices), (), secrets_, password, scrypt_n)
    _save_new_wallet(env, store)
    env.emit({"wallet": str(env.wallet_dir), "accounts": _accounts_json(store)})
    env.say(f"wallet restored to {env.wallet_dir / 'wallet.json'}")
    for account in store.accounts:
        env.say(f"{account.name}  {account.path}  {account.address(prefix)}")


def _import_raw_key(
    env: Env, key: SigningKey, name: str | None, hrp: str | None, scrypt_n: int
) -> None:
    if env.has_wallet():
        store, secrets_, password = env.unlock()
        if any(a.public_key == key.public_key for a in store.accounts):
            raise WalletError(WalletReason.BAD_INPUT, "this key is already in the wallet")
        n_raw = sum(1 for a in store.accounts if a.source == "raw")
    else:
        password = env.password(new=True)
        secrets_ = Secrets(None)
        store = seal(_network_hrp(env, hrp), (), (), secrets_, password, scrypt_n)
        n_raw = 0
    label = name or f"imported{n_raw}"
    if any(a.name == label for a in store.accounts):
        raise WalletError(WalletReason.BAD_INPUT, f"an account named {label!r} exists")
    entry = KeyEntry(label, "raw", n_raw, "", key.public_key)
    raw_keys = {**secrets_.raw_keys, key.public_key.hex(): key.secret.hex()}
    updated = Secrets(secrets_.mnemonic, secrets_.passphrase, raw_keys)
    store = replace(store, accounts=(*store.accounts, entry)).sealed(updated, password)
    env.saved(store)
    env.emit({"wallet": str(env.wallet_dir), "accounts": _accounts_json(store)})
    env.say(f"imported {label}  {entry.address(store.hrp)}")


@click.command("add-account")
@click.option("--index", type=click.IntRange(0, 2**31 - 1), default=None, help="HD index.")
@click.option("--name", default=None, help="A name for the account (default accountN).")
@pass_env
def add_account(env: Env, index: int | None, name: str | None) -> None:
    """Derive one more account from the wallet's mnemonic (needs the password).

    Accounts live at m/44'/19167'/0'/0/INDEX; by default the next unused index.

    \b
    Examples:
      flux-wallet add-account
      flux-wallet add-account --index 7 --name savings
    """
    store, secrets_, password = env.unlock()
    used = [a.index for a in store.accounts if a.source == "hd"]
    index = index if index is not None else (max(used) + 1 if used else 0)
    if index in used:
        raise WalletError(WalletReason.BAD_INPUT, f"account index {index} is already in the wallet")
    entry = hd_entry(secrets_, name or f"account{index}", account_path(index), index)
    if any(a.name == entry.name for a in store.accounts):
        raise WalletError(WalletReason.BAD_INPUT, f"an account named {entry.name!r} exists")
    store = replace(store, accounts=(*store.accounts, entry)).sealed(secrets_, password)
    env.saved(store)
    env.emit({"name": entry.name, "path": entry.path, "address": entry.address(store.hrp)})
    env.say(f"{entry.name}  {entry.path}  {entry.address(store.hrp)}")


@click.command("list")
@pass_env
def list_(env: Env) -> None:
    """List the wallet's accounts and node keys (no password needed).

    \b
    Example:
      flux-wallet list
    """
    store = env.keystore()
    env.emit(
        {"hrp": store.hrp, "accounts": _accounts_json(store), "node_keys": _node_keys_json(store)}
    )
    table = Table(title=f"accounts ({env.wallet_dir})", title_justify="left")
    for column in ("name", "path", "address"):
        table.add_column(column, no_wrap=True)
    for a in store.accounts:
        table.add_row(a.name, a.path or "(imported key)", a.address(store.hrp))
    env.show(table)
    if store.node_keys:
        keys = Table(title="node keys", title_justify="left")
        for column in ("name", "path", "public key"):
            keys.add_column(column, no_wrap=True)
        for k in store.node_keys:
            keys.add_row(k.name, k.path or "(generated)", k.public_key.hex())
        env.show(keys)


@click.command()
@click.argument("account", required=False)
@account_option
@pass_env
def address(env: Env, account: str | None, account_ref: str | None) -> None:
    """Print an account's address (to receive FLUX).

    \b
    Examples:
      flux-wallet address
      flux-wallet address account2
      flux-wallet address --account 5
    """
    entry = account_entry(env, account or account_ref)
    addr = entry.address(env.keystore().hrp)
    env.emit({"name": entry.name, "address": addr, "public_key": entry.public_key.hex()})
    env.say(addr)


@click.command()
@click.argument("account", required=False)
@click.option("--mnemonic", "show_mnemonic", is_flag=True, help="Export the mnemonic instead.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before printing a secret.")
@pass_env
def export(env: Env, account: str | None, show_mnemonic: bool, yes: bool) -> None:
    """Print an account's private key (hex) or the wallet's mnemonic; needs the password.

    Anyone who sees the output can spend the account's FLUX.

    \b
    Examples:
      flux-wallet export account0
      flux-wallet export --mnemonic
    """
    store, secrets_, _ = env.unlock()
    if not yes and not click.confirm(
        "This prints a secret that controls your funds. Continue?", err=True
    ):
        raise click.Abort
    if show_mnemonic:
        if secrets_.mnemonic is None:
            raise WalletError(WalletReason.BAD_INPUT, "this wallet has no mnemonic (raw keys only)")
        env.emit({"mnemonic": secrets_.mnemonic, "bip39_passphrase": secrets_.passphrase})
        env.say(secrets_.mnemonic)
        return
    entry = account_entry(env, account)
    key = secrets_.signing_key(entry)
    env.emit({"name": entry.name, "address": entry.address(store.hrp), "secret": key.secret.hex()})
    env.say(key.secret.hex())
