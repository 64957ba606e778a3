"""`flux-wallet`: keys, money, staking and apps from the command line.

Global options come before the command: `flux-wallet --node URL --json send …`.
Every failure is one line `error [reason]: message` on stderr (with `--json`, a JSON
object `{"error": {"reason", "message"}}` on stdout) and a non-zero exit status
(wallet/errors.py, docs/wallet.md).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from fluxchain.core.appspec import AppSpec, format_cpu
from fluxchain.core.crypto import SigningKey, address_of, encode_address
from fluxchain.core.errors import FluxError
from fluxchain.core.params import Params
from fluxchain.core.tx import Hardware, Payload, Transfer
from wallet import builders
from wallet.amounts import format_flux, parse_amount
from wallet.client import DEFAULT_NODE, NodeClient
from wallet.errors import NodeApiError, WalletError, WalletReason
from wallet.hd import account_path, new_mnemonic, node_key_path
from wallet.keystore import (
    DEFAULT_SCRYPT_N,
    KeyEntry,
    Keystore,
    Secrets,
    check_new_password,
    hd_entry,
    normalise_mnemonic,
    seal,
    write_atomic,
)
from wallet.render import apps_table, describe_event, instances_table, nodes_table
from wallet.sender import Sender, SendPlan

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_WALLET_DIR = Path("~/.fluxchain/wallet")
DEFAULT_TIMEOUT_S = 60.0
PARAMS_PROBE_TIMEOUT_S = 3.0  # `create`/`import` ask the node for the address prefix
MAX_ACCOUNTS_AT_ONCE = 100  # each is a BIP32 derivation at create/import time
CONFIRM_WORDS = 2  # words the user re-types after `create` shows the mnemonic
WIDE = 240  # console width when stdout is not a terminal: ids and addresses never wrap


@dataclass
class Env:
    """What every command shares: where the node and the wallet are, and the output."""

    node_url: str
    wallet_dir: Path
    json_mode: bool
    out: Console
    err: Console
    _client: NodeClient | None = None
    _params: Params | None = None
    _keystore: Keystore | None = None

    def client(self, timeout_s: float | None = None) -> NodeClient:
        if timeout_s is not None:
            return NodeClient(self.node_url, timeout_s)
        if self._client is None:
            self._client = NodeClient(self.node_url)
        return self._client

    def params(self) -> Params:
        if self._params is None:
            self._params = self.client().params()
        return self._params

    def keystore(self) -> Keystore:
        if self._keystore is None:
            self._keystore = Keystore.load(self.wallet_dir)
        return self._keystore

    def saved(self, store: Keystore) -> None:
        """Write `store` and use it for the rest of this command."""
        store.save(self.wallet_dir)
        self._keystore = store

    def has_wallet(self) -> bool:
        try:
            self.keystore()
        except WalletError as exc:
            if exc.reason == WalletReason.NO_WALLET:
                return False
            raise
        return True

    def password(self, *, new: bool = False) -> str:
        """From FLUX_WALLET_PASSWORD, else a hidden prompt (twice for a new one)."""
        password = os.environ.get("FLUX_WALLET_PASSWORD")
        if password is None:
            password = click.prompt(
                "New wallet password" if new else "Wallet password",
                hide_input=True,
                confirmation_prompt=new,
                err=True,
            )
        if new:
            check_new_password(password)
        return password

    def unlock(self) -> tuple[Keystore, Secrets, str]:
        store = self.keystore()
        password = self.password()
        return store, store.unlock(password), password

    def say(self, text: str = "") -> None:
        """A plain line for people (suppressed with --json)."""
        if not self.json_mode:
            self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def show(self, renderable: Any) -> None:
        if not self.json_mode:
            self.out.print(renderable)

    def emit(self, data: Any) -> None:
        """The command's JSON result (only with --json)."""
        if self.json_mode:
            click.echo(json.dumps(data, indent=2, sort_keys=True))


def _consoles() -> tuple[Console, Console]:
    width = None if sys.stdout.isatty() else WIDE
    return Console(width=width, highlight=False), Console(stderr=True, highlight=False)


class WalletGroup(click.Group):
    """The top-level group: turns WalletError (and core FluxError) into one line + exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except builders.InvalidSpecError as exc:
            _fail(ctx, exc, [f"{p.path}: {p.message} [{p.code}]" for p in exc.problems])
        except WalletError as exc:
            _fail(ctx, exc)
        except FluxError as exc:
            _fail(ctx, WalletError(str(exc.reason), exc.message))
        except click.Abort:
            _fail(ctx, WalletError(WalletReason.ABORTED, "aborted; nothing was changed"))


def _fail(ctx: click.Context, exc: WalletError, details: list[str] | None = None) -> NoReturn:
    env = ctx.find_object(Env)
    if env is not None and env.json_mode:
        error: dict[str, Any] = {"reason": exc.reason, "message": exc.message}
        if details is not None:
            error["problems"] = details
        click.echo(json.dumps({"error": error}, indent=2, sort_keys=True))
    else:
        for line in details or []:
            click.echo(f"error [{exc.reason}]: {line}", err=True)
        click.echo(f"error [{exc.reason}]: {exc.message}", err=True)
    ctx.exit(int(exc.exit_code))


def pass_env(f: F) -> F:
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(click.get_current_context().ensure_object(Env), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# -- shared options ---------------------------------------------------------------------------


def account_option(f: F) -> F:
    return click.option(
        "--account",
        "-a",
        "account_ref",
        envvar="FLUX_WALLET_ACCOUNT",
        default=None,
        help="Account to use: its name, HD index, or address (env FLUX_WALLET_ACCOUNT; "
        "default: the wallet's first account).",
    )(f)


def send_options(f: F) -> F:
    f = click.option(
        "--timeout",
        type=click.FloatRange(0.1, 3600),
        default=DEFAULT_TIMEOUT_S,
        show_default=True,
        help="Seconds to wait for the confirmation.",
    )(f)
    f = click.option("--no-wait", is_flag=True, help="Return as soon as the node accepted the tx.")(
        f
    )
    f = click.option(
        "--nonce",
        type=click.IntRange(0),
        default=None,
        help="Use this nonce instead of the next free one (to replace a stuck tx).",
    )(f)
    f = click.option("--fee", default=None, help="Fee in FLUX (default: the chain's minimum fee).")(
        f
    )
    return account_option(f)


@dataclass(frozen=True, slots=True)
class SendOptions:
    account_ref: str | None
    fee: str | None
    nonce: int | None
    no_wait: bool
    timeout: float


def _send_opts(kwargs: dict[str, Any]) -> SendOptions:
    return SendOptions(
        kwargs.pop("account_ref"),
        kwargs.pop("fee"),
        kwargs.pop("nonce"),
        kwargs.pop("no_wait"),
        kwargs.pop("timeout"),
    )


# -- the group --------------------------------------------------------------------------------


@click.group(cls=WalletGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--node",
    envvar="FLUX_NODE",
    default=DEFAULT_NODE,
    show_default=True,
    help="The node's API URL (env FLUX_NODE).",
)
@click.option(
    "--wallet-dir",
    envvar="FLUX_WALLET_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_WALLET_DIR,
    show_default=True,
    help="Directory holding wallet.json (env FLUX_WALLET_DIR).",
)
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable JSON on stdout.")
@click.version_option(package_name="fluxchain")
@click.pass_context
def main(ctx: click.Context, node: str, wallet_dir: Path, json_mode: bool) -> None:
    """flux-wallet: keys, FLUX, node collateral and apps on a fluxchain network.

    \b
    Examples:
      flux-wallet create
      flux-wallet --node http://127.0.0.1:26700 balance
      flux-wallet send tflux1… 12.5
      flux-wallet app register app.yaml
      FLUX_WALLET_PASSWORD=… flux-wallet --json send tflux1… 1 --no-wait

    The password comes from a prompt, or from FLUX_WALLET_PASSWORD in scripts.
    """
    out, err = _consoles()
    ctx.obj = Env(node, wallet_dir.expanduser(), json_mode, out, err)


# -- keys -------------------------------------------------------------------------------------


def _network_hrp(env: Env, hrp: str | None) -> str:
    """The address prefix for a new wallet: --hrp, else the node's, else mainnet's."""
    if hrp:
        return hrp
    try:
        return env.client(PARAMS_PROBE_TIMEOUT_S).params().address_hrp
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


@main.command()
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


@main.command("import")
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


@main.command("add-account")
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


@main.command("list")
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


def _account(env: Env, ref: str | None) -> KeyEntry:
    store = env.keystore()
    if ref is None:
        if not store.accounts:
            raise WalletError(WalletReason.UNKNOWN_ACCOUNT, "the wallet has no accounts")
        return store.accounts[0]
    return store.find_account(ref)


@main.command()
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
    entry = _account(env, account or account_ref)
    addr = entry.address(env.keystore().hrp)
    env.emit({"name": entry.name, "address": addr, "public_key": entry.public_key.hex()})
    env.say(addr)


@main.command()
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
    entry = _account(env, account)
    key = secrets_.signing_key(entry)
    env.emit({"name": entry.name, "address": entry.address(store.hrp), "secret": key.secret.hex()})
    env.say(key.secret.hex())


# -- money ------------------------------------------------------------------------------------


def _check_network(env: Env) -> Params:
    params = env.params()
    store = env.keystore()
    if params.address_hrp != store.hrp:
        raise WalletError(
            WalletReason.WRONG_NETWORK,
            f"this wallet's addresses are for '{store.hrp}', the node at {env.node_url} "
            f"serves '{params.address_hrp}' ({params.chain_id})",
        )
    return params


@main.command()
@click.argument("who", required=False)
@click.option("--all", "all_accounts", is_flag=True, help="Every account of the wallet.")
@account_option
@pass_env
def balance(env: Env, who: str | None, all_accounts: bool, account_ref: str | None) -> None:
    """Show the balance and nonce of an account or of any address.

    \b
    Examples:
      flux-wallet balance
      flux-wallet balance --account 4
      flux-wallet balance --all
      flux-wallet balance tflux1…
    """
    who = who or account_ref
    client = env.client()
    if all_accounts:
        store = env.keystore()
        targets = [(a.name, a.address(store.hrp)) for a in store.accounts]
    elif who is not None and not env.has_wallet():
        targets = [("", who)]
    else:
        try:
            entry = _account(env, who)
            targets = [(entry.name, entry.address(env.keystore().hrp))]
        except WalletError as exc:
            if who is None or exc.reason != WalletReason.UNKNOWN_ACCOUNT:
                raise
            targets = [("", who)]
    rows: list[dict[str, Any]] = []
    for name, addr in targets:
        try:
            account = client.account(addr)
        except NodeApiError as exc:
            raise WalletError(WalletReason.BAD_ADDRESS, exc.message) from None
        rows.append(
            {"name": name, "address": addr, "balance": account.balance, "nonce": account.nonce}
        )
    env.emit(rows if all_accounts else rows[0])
    for row in rows:
        label = f"{row['name']}  " if row["name"] else ""
        env.say(f"{label}{row['address']}  {format_flux(row['balance'])}  (nonce {row['nonce']})")


def _fee(params: Params, text: str | None) -> int:
    if text is None:
        return params.min_fee
    fee = parse_amount(text, allow_zero=True)
    if fee < params.min_fee:
        raise WalletError(
            WalletReason.BAD_AMOUNT,
            f"--fee {text} is below the chain's minimum {format_flux(params.min_fee)}",
        )
    return fee


def _send(
    env: Env,
    opts: SendOptions,
    build: Callable[[Params, KeyEntry], Payload],
    *,
    app_view: dict[str, Any] | None = None,
    what: str,
    prove: Callable[[Params, Payload, bytes, int, Secrets], Payload] | None = None,
) -> dict[str, Any]:
    """Build, check funds, sign, submit, and (unless --no-wait) wait for the confirmation.

    `prove`, for a payload that names a node key: adds the key's proof of possession,
    which binds the nonce, so it runs once the nonce is chosen.

    Returns the API's status body of the confirmed tx, or {"id", "status": "pending"}.
    """
    params = _check_network(env)
    entry = _account(env, opts.account_ref)
    store = env.keystore()
    sender_address = entry.address(store.hrp)
    payload = build(params, entry)
    fee = _fee(params, opts.fee)
    cost = builders.estimate_cost(
        payload, params, app_view, new_account=_creates_account(env, params, payload)
    )
    sender = Sender(env.client(), env.wallet_dir)
    with sender.locked():  # checked before asking for the password, and again after
        _check_funds(sender.plan(sender_address), cost, fee, what)
    secrets_ = store.unlock(env.password())
    key = secrets_.signing_key(entry)
    with sender.locked():
        plan = sender.plan(sender_address)
        _check_funds(plan, cost, fee, what)
        nonce = plan.nonce if opts.nonce is None else opts.nonce
        if prove is not None:
            payload = prove(params, payload, key.public_key, nonce, secrets_)
        tx = builders.sign(key, params, nonce, fee, payload)
        tx_id = sender.submit(sender_address, tx, cost)
    if opts.no_wait:
        env.say(f"sent tx {tx_id} (nonce {nonce}); not waiting for the confirmation")
        return {"id": tx_id, "status": "pending", "nonce": nonce}
    try:
        if env.json_mode:
            result = sender.wait(tx_id, opts.timeout)
        else:
            with env.err.status(f"waiting for tx {tx_id[:16]}… to be confirmed") as spinner:

                def on_poll(status: dict[str, Any], remaining: float) -> None:
                    spinner.update(
                        f"waiting for tx {tx_id[:16]}… ({status.get('status')}, "
                        f"{remaining:.0f} s left)"
                    )

                result = sender.wait(tx_id, opts.timeout, on_poll)
    except WalletError as exc:
        if exc.reason != WalletReason.TIMEOUT:
            sender.forget(sender_address, tx_id)
        raise
    sender.forget(sender_address, tx_id)
    env.say(f"confirmed at height {result.get('height')}  tx {tx_id}")
    for event in result.get("events", []):
        env.say(f"  {describe_event(event, store.hrp)}")
    return result


def _creates_account(env: Env, params: Params, payload: Payload) -> bool:
    """Whether `payload` is a transfer to an account the chain does not hold yet (no
    balance, no nonce): it burns `account_deposit` more, and must move at least that."""
    if not isinstance(payload, Transfer):
        return False
    account = env.client().account(encode_address(payload.to, params.address_hrp))
    if account.balance or account.nonce:
        return False
    if payload.amount < params.account_deposit:
        raise WalletError(
            WalletReason.BAD_AMOUNT,
            f"{account.address} is a new account: a transfer creating it moves at least "
            f"{format_flux(params.account_deposit)}",
        )
    return True


def _check_funds(plan: SendPlan, cost: int, fee: int, what: str) -> None:
    need = cost + fee
    if plan.balance < need:
        pending = plan.committed_balance - plan.balance
        detail = f" ({format_flux(pending)} held by unconfirmed sends)" if pending else ""
        raise WalletError(
            WalletReason.INSUFFICIENT_FUNDS,
            f"{what} needs {format_flux(need)} ({format_flux(cost)} + fee {format_flux(fee)}), "
            f"the account has {format_flux(plan.balance)}{detail}",
        )


@main.command()
@click.argument("to")
@click.argument("amount")
@send_options
@pass_env
def send(env: Env, to: str, amount: str, **kwargs: Any) -> None:
    """Send AMOUNT FLUX (up to 8 decimals) to the address TO.

    The fee defaults to the chain's minimum; the nonce is chosen for you. Waits for the
    confirmation unless --no-wait.

    \b
    Examples:
      flux-wallet send tflux1qq… 12.5
      flux-wallet send tflux1qq… 0.00000001 --fee 0.0001 --account account1
      flux-wallet --json send tflux1qq… 1 --no-wait
    """
    opts = _send_opts(kwargs)
    units = parse_amount(amount)

    def build(params: Params, entry: KeyEntry) -> Payload:
        target = to
        if env.has_wallet():
            try:  # a name of one of this wallet's accounts is accepted as the destination
                target = env.keystore().find_account(to).address(params.address_hrp)
            except WalletError:
                target = to
        return builders.transfer(target, units, params.address_hrp)

    result = _send(env, opts, build, what=f"sending {format_flux(units)}")
    env.emit(result)


# -- nodes ------------------------------------------------------------------------------------


@main.group()
def node() -> None:
    """Run a FluxNode: hot keys, registration (collateral), updates, status."""


# Where a node key's secret comes from when it signs its proof of possession: the wallet
# (given the unlocked secrets) or a node_key.json.
NodeKeySigner = Callable[[Secrets], SigningKey]


def _wallet_node_key(env: Env, ref: str) -> tuple[bytes, NodeKeySigner]:
    """A node key the wallet holds, by name, index or public key (hex)."""
    cleaned = ref.strip().removeprefix("0x")
    if len(cleaned) == 66:
        pubkey = builders.parse_pubkey(cleaned)
        held = [k for k in env.keystore().node_keys if k.public_key == pubkey]
        if not held:
            raise WalletError(
                WalletReason.BAD_INPUT,
                "this wallet does not hold that node key, and a node key must sign its "
                "proof of possession: pass --node-key-file with its node_key.json, or make "
                "the key with `flux-wallet node keygen`",
            )
        entry = held[0]
    else:
        entry = env.keystore().find_node_key(ref)
    return entry.public_key, lambda secrets_: secrets_.signing_key(entry)


def _key_file(path: Path) -> SigningKey:
    """The key of a node_key.json ({"secret", "public_key"}), checked against its public key."""
    try:
        body = json.loads(path.read_text())
        key = SigningKey(bytes.fromhex(body["secret"]))
    except (OSError, ValueError, KeyError, TypeError, FluxError):
        raise WalletError(
            WalletReason.BAD_INPUT, f"{path} is not a node_key.json (secret, public_key)"
        ) from None
    if body.get("public_key", key.public_key.hex()) != key.public_key.hex():
        raise WalletError(WalletReason.BAD_INPUT, f"{path}: public_key does not match the secret")
    return key


def _key_prover(
    signer: NodeKeySigner,
) -> Callable[[Params, Payload, bytes, int, Secrets], Payload]:
    """What `_send` calls once the nonce is known: the node key signs its proof."""

    def prove(
        params: Params, payload: Payload, owner: bytes, nonce: int, secrets_: Secrets
    ) -> Payload:
        return builders.with_key_proof(payload, signer(secrets_), params, owner, nonce)

    return prove


def _owned_node(env: Env, node_id: str, entry: KeyEntry) -> dict[str, Any]:
    view = env.client().node(node_id)
    owner = entry.address(env.keystore().hrp)
    if view.get("owner") != owner:
        raise WalletError(
            WalletReason.NOT_OWNER,
            f"node {node_id} belongs to {view.get('owner')}, not to {entry.name} ({owner}); "
            "choose the owner with --account",
        )
    return view


@node.command("keygen")
@click.option(
    "--index",
    type=click.IntRange(0, 2**31 - 1),
    default=None,
    help="HD index (m/44'/19167'/1'/0/INDEX); default: the next one not used on chain.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the secret as a node_key.json for the node's home (mode 0600).",
)
@pass_env
def node_keygen(env: Env, index: int | None, out: Path | None) -> None:
    """Make a node hot key: it signs confirmations, attestations and votes.

    The key derives from the wallet's mnemonic at m/44'/19167'/1'/0/INDEX, so the
    mnemonic restores it; wallets of imported keys get a random key, kept encrypted.
    With a reachable node, indices whose key a node already uses are skipped.

    \b
    Examples:
      flux-wallet node keygen
      flux-wallet node keygen --out ~/.fluxchain/node/node_key.json
    """
    if out is not None and out.exists():
        raise WalletError(WalletReason.BAD_INPUT, f"{out} exists; a node key is never overwritten")
    store, secrets_, password = env.unlock()
    if secrets_.mnemonic is None:
        if index is not None:
            raise WalletError(
                WalletReason.BAD_INPUT, "--index needs a wallet with a mnemonic (HD keys)"
            )
        key = SigningKey.generate()
        entry = KeyEntry(
            f"node{len(store.node_keys)}", "raw", len(store.node_keys), "", key.public_key
        )
        secrets_ = Secrets(None, "", {**secrets_.raw_keys, key.public_key.hex(): key.secret.hex()})
    else:
        used = {k.index for k in store.node_keys if k.source == "hd"}
        if index is None:
            index = max(used) + 1 if used else 0
            while _key_on_chain(env, hd_entry(secrets_, "", node_key_path(index), index)):
                index += 1
        entry = next(
            (k for k in store.node_keys if k.source == "hd" and k.index == index),
            hd_entry(secrets_, f"node{index}", node_key_path(index), index),
        )
        key = secrets_.signing_key(entry)
    if entry not in store.node_keys:
        store = replace(store, node_keys=(*store.node_keys, entry)).sealed(secrets_, password)
        env.saved(store)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        body = {"secret": key.secret.hex(), "public_key": key.public_key.hex()}
        write_atomic(out, json.dumps(body).encode())
    env.emit(
        {
            "name": entry.name,
            "path": entry.path,
            "public_key": entry.public_key.hex(),
            "out": None if out is None else str(out),
        }
    )
    env.say(f"{entry.name}  {entry.path or '(generated)'}  {entry.public_key.hex()}")
    if out is not None:
        env.say(f"secret written to {out} (mode 0600)")


def _key_on_chain(env: Env, entry: KeyEntry) -> bool:
    """True if a registered node already uses this key (False when the node is unreachable)."""
    try:
        env.client(PARAMS_PROBE_TIMEOUT_S).node(entry.public_key.hex())
    except NodeApiError as exc:
        if exc.status == 404:
            return False
        raise
    except WalletError:
        return False
    return True


@node.command("register")
@click.option(
    "--tier",
    type=click.Choice(["cumulus", "nimbus", "stratus"], case_sensitive=False),
    required=True,
    help="Tier: its collateral is locked.",
)
@click.option(
    "--node-pubkey",
    default=None,
    help="The node's hot key, held by this wallet: its name, index or 66 hex characters.",
)
@click.option(
    "--node-key-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Or: the node_key.json that `node keygen --out` wrote (it signs the key's proof).",
)
@click.option("--endpoint", required=True, help="host:port where the node's API is reachable.")
@click.option("--country", required=True, help="ISO 3166-1 alpha-2 code, e.g. DE.")
@click.option("--continent", default=None, help="AF AN AS EU NA OC SA (default: from country).")
@click.option("--cores", type=click.IntRange(1, 4096), default=None, help="Declared CPU cores.")
@click.option("--ram-mb", type=click.IntRange(1), default=None, help="Declared RAM in MB.")
@click.option("--disk-gb", type=click.IntRange(1), default=None, help="Declared SSD in GB.")
@send_options
@pass_env
def node_register(
    env: Env,
    tier: str,
    node_pubkey: str | None,
    node_key_file: Path | None,
    endpoint: str,
    country: str,
    continent: str | None,
    cores: int | None,
    ram_mb: int | None,
    disk_gb: int | None,
    **kwargs: Any,
) -> None:
    """Register a node: lock the tier's collateral from the account.

    The balance must cover the collateral plus the fee (checked before sending).
    Hardware defaults to the tier's minimum; declare what the server really has.

    \b
    Examples:
      flux-wallet node keygen
      flux-wallet node register --tier cumulus --node-pubkey node0 \\
          --endpoint 203.0.113.7:26700 --country DE
      flux-wallet node keygen --out node_key.json
      flux-wallet node register --tier stratus --node-key-file node_key.json \\
          --endpoint 203.0.113.8:26700 --country US --cores 16 --ram-mb 65536 --disk-gb 900
    """
    opts = _send_opts(kwargs)
    tier_value = builders.parse_tier(tier)
    signer: NodeKeySigner
    if node_pubkey is not None and node_key_file is None:
        node_key, signer = _wallet_node_key(env, node_pubkey)
    elif node_key_file is not None and node_pubkey is None:
        file_key = _key_file(node_key_file)
        node_key, signer = file_key.public_key, lambda _secrets: file_key
    else:
        raise WalletError(
            WalletReason.BAD_INPUT, "give the node's hot key: --node-pubkey or --node-key-file"
        )
    place = builders.location(country, continent)

    def build(params: Params, entry: KeyEntry) -> Payload:
        minimum = builders.tier_hardware(params, tier_value)
        hardware = Hardware(
            cores or minimum.cores, ram_mb or minimum.ram_mb, disk_gb or minimum.disk_gb
        )
        return builders.node_register(
            tier_value,
            node_key,
            endpoint,
            place[0],
            place[1],
            hardware,
            entry.public_key,
        )

    result = _send(
        env,
        opts,
        build,
        what=f"registering a {tier_value.name.lower()} node",
        prove=_key_prover(signer),
    )
    if result.get("status") == "confirmed":
        node_id = str(result.get("id", ""))[:40]
        result["node_id"] = node_id
        env.say(f"node id {node_id} (status: registered until its first confirmation)")
    env.emit(result)


@node.command("update")
@click.argument("node_id")
@click.option("--endpoint", default=None, help="New host:port.")
@click.option("--country", default=None, help="New country code.")
@click.option("--continent", default=None, help="New continent code (default: from country).")
@click.option(
    "--new-node-pubkey", default=None, help="Rotate the hot key: a wallet node key (name or hex)."
)
@click.option(
    "--new-node-key-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Or rotate to the key of this node_key.json.",
)
@click.option(
    "--top-up",
    default=None,
    help="FLUX to add to the collateral (a slashed node, back to its tier's collateral).",
)
@send_options
@pass_env
def node_update(
    env: Env,
    node_id: str,
    endpoint: str | None,
    country: str | None,
    continent: str | None,
    new_node_pubkey: str | None,
    new_node_key_file: Path | None,
    top_up: str | None,
    **kwargs: Any,
) -> None:
    """Change a node's endpoint or location, rotate its hot key, or top its collateral up.

    Fields not given keep their current values.

    \b
    Examples:
      flux-wallet node update 9f3a… --endpoint 203.0.113.8:26700
      flux-wallet node update 9f3a… --new-node-pubkey node1
      flux-wallet node update 9f3a… --top-up 2000

    A new key signs a proof of possession, so the wallet (or the key file) must hold it.
    """
    opts = _send_opts(kwargs)
    raw_id = builders.parse_node_id(node_id)
    if new_node_pubkey is not None and new_node_key_file is not None:
        raise WalletError(
            WalletReason.BAD_INPUT, "give --new-node-pubkey or --new-node-key-file, not both"
        )
    top_up_units = 0 if top_up is None else parse_amount(top_up)
    new_key, signer = b"", None
    if new_node_pubkey is not None:
        new_key, signer = _wallet_node_key(env, new_node_pubkey)
    elif new_node_key_file is not None:
        file_key = _key_file(new_node_key_file)
        new_key, signer = file_key.public_key, lambda _secrets: file_key

    def build(params: Params, entry: KeyEntry) -> Payload:
        view = _owned_node(env, node_id, entry)
        new_country = country or str(view["country"])
        new_continent = continent or (None if country else str(view["continent"]))
        place = builders.location(new_country, new_continent)
        return builders.node_update(
            raw_id, endpoint or str(view["endpoint"]), place[0], place[1], new_key, top_up_units
        )

    prove = None if signer is None else _key_prover(signer)
    env.emit(_send(env, opts, build, what="updating the node", prove=prove))


@node.command("unregister")
@click.argument("node_id")
@send_options
@pass_env
def node_unregister(env: Env, node_id: str, **kwargs: Any) -> None:
    """Start unbonding a node; its collateral returns after the unbonding period.

    \b
    Example:
      flux-wallet node unregister 9f3a…
    """
    opts = _send_opts(kwargs)
    raw_id = builders.parse_node_id(node_id)

    def build(params: Params, entry: KeyEntry) -> Payload:
        _owned_node(env, node_id, entry)
        return builders.node_unregister(raw_id)

    env.emit(_send(env, opts, build, what="unregistering the node"))


@node.command("status")
@click.argument("ref")
@pass_env
def node_status(env: Env, ref: str) -> None:
    """Show a node (by node id or hot key) and the app instances it runs.

    \b
    Examples:
      flux-wallet node status 9f3a…
      flux-wallet node status 02ab…   # by hot key
    """
    view = env.client().node(ref)
    env.emit(view)
    env.show(nodes_table([view], title=f"node {view.get('node_id')}"))
    env.say(
        f"collateral {format_flux(int(view.get('collateral', 0)))}  registered at "
        f"{view.get('registered_height')}  last confirmed at {view.get('last_confirm_height')}  "
        f"paid {format_flux(int(view.get('paid_total', 0)))}"
    )
    assignments = view.get("assignments") or []
    if assignments:
        for a in assignments:
            env.say(f"  runs instance {a.get('instance')} of app {a.get('app')}")
    else:
        env.say("  runs no app instances")


@main.group()
def nodes() -> None:
    """The network's nodes."""


@nodes.command("list")
@click.option("--tier", type=click.Choice(["cumulus", "nimbus", "stratus"], case_sensitive=False))
@click.option(
    "--status",
    type=click.Choice(
        ["registered", "confirmed", "down", "expired", "jailed", "unbonding"], case_sensitive=False
    ),
)
@click.option("--country", default=None, help="ISO country code.")
@click.option("--mine", is_flag=True, help="Only nodes owned by this wallet's accounts.")
@pass_env
def nodes_list(
    env: Env, tier: str | None, status: str | None, country: str | None, mine: bool
) -> None:
    """List nodes, with filters.

    \b
    Examples:
      flux-wallet nodes list
      flux-wallet nodes list --tier stratus --status confirmed --country DE
      flux-wallet nodes list --mine
    """
    found = env.client().nodes(tier, status, country)
    if mine:
        store = env.keystore()
        owners = {a.address(store.hrp) for a in store.accounts}
        found = [n for n in found if n.get("owner") in owners]
    env.emit({"nodes": found})
    env.show(nodes_table(found, title=f"nodes ({len(found)})"))


# -- apps -------------------------------------------------------------------------------------


@main.group()
def app() -> None:
    """Deploy and manage apps from YAML/JSON specs."""


def _offline_params(env: Env, genesis: Path | None) -> Params:
    """--genesis FILE (a genesis or a /params document) without any network; else the node."""
    if genesis is None:
        try:
            return env.params()
        except WalletError as exc:
            if exc.reason != WalletReason.NODE_UNREACHABLE:
                raise
            raise WalletError(
                WalletReason.NODE_UNREACHABLE,
                f"{exc.message}; to validate offline pass --genesis FILE",
            ) from None
    try:
        raw = json.loads(genesis.read_text())
        return Params.from_json(raw.get("params", raw) if isinstance(raw, dict) else raw)
    except OSError as exc:
        raise WalletError(
            WalletReason.NO_PARAMS, f"cannot read {genesis}: {exc.strerror}"
        ) from None
    except (ValueError, FluxError) as exc:
        raise WalletError(
            WalletReason.NO_PARAMS, f"{genesis} is not a genesis or params file: {exc}"
        ) from None


def _spec_owner(env: Env, account_ref: str | None, hrp: str) -> str | None:
    """The default owner written into a spec that names none: the signing account."""
    if not env.has_wallet():
        return None
    entry = _account(env, account_ref)
    return encode_address(address_of(entry.public_key), hrp)


def _load_spec(env: Env, path: Path, params: Params, account_ref: str | None) -> AppSpec:
    obj = builders.read_spec_file(path)
    obj = builders.with_owner(obj, _spec_owner(env, account_ref, params.address_hrp))
    return builders.parse_spec(obj, params, str(path))


def _quote_lines(env: Env, spec: AppSpec, params: Params, blocks: int) -> dict[str, Any]:
    q = builders.quote(spec, params, blocks)
    env.say(
        f"{spec.name}: {spec.instances} instance(s) of {format_cpu(spec.cpu)} cpu, "
        f"{spec.ram_mb} MB RAM, {spec.disk_gb} GB disk, {len(spec.host_ports)} port(s)"
    )
    env.say(
        f"  {format_flux(q.per_instance_period)} per instance per {params.app_price_period} blocks"
    )
    env.say(f"  total for {blocks} blocks: {format_flux(q.total)}")
    env.say(f"  plus a non-refundable app charge per register or update: {format_flux(q.charge)}")
    return {
        "name": spec.name,
        "instances": spec.instances,
        "blocks": blocks,
        "per_instance_period": q.per_instance_period,
        "price_period": params.app_price_period,
        "price": q.total,
        "app_charge": q.charge,
    }


spec_argument = click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
genesis_option = click.option(
    "--genesis",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Take the chain's params from this genesis (or /params JSON) file: no network.",
)


@app.command("validate")
@spec_argument
@genesis_option
@account_option
@pass_env
def app_validate(env: Env, spec: Path, genesis: Path | None, account_ref: str | None) -> None:
    """Check a spec with the chain's own rules; every problem on one line with its path.

    Offline with --genesis; otherwise the params come from the node. A spec without an
    owner gets the signing account's address.

    \b
    Examples:
      flux-wallet app validate app.yaml
      flux-wallet app validate app.yaml --genesis genesis/devnet.json
    """
    params = _offline_params(env, genesis)
    parsed = _load_spec(env, spec, params, account_ref)
    q = builders.quote(parsed, params)
    env.emit({"valid": True, "name": parsed.name, "price": q.total, "blocks": q.blocks})
    env.say(
        f"{spec}: valid — app {parsed.name}, {parsed.instances} instances, "
        f"{format_flux(q.total)} for {q.blocks} blocks"
    )


@app.command("price")
@spec_argument
@click.option("--blocks", type=click.IntRange(1), default=None, help="Default: the spec's expire.")
@genesis_option
@account_option
@pass_env
def app_price(
    env: Env, spec: Path, blocks: int | None, genesis: Path | None, account_ref: str | None
) -> None:
    """What a spec costs for its `expire` blocks (or --blocks).

    \b
    Examples:
      flux-wallet app price app.yaml
      flux-wallet app price app.yaml --blocks 22000
    """
    params = _offline_params(env, genesis)
    parsed = _load_spec(env, spec, params, account_ref)
    env.emit(_quote_lines(env, parsed, params, blocks or parsed.expire))


def _show_placement(env: Env, name: str) -> dict[str, Any] | None:
    try:
        view = env.client().app(name)
    except NodeApiError:
        return None
    placed, wanted = view.get("placed", 0), view.get("wanted", 0)
    env.say(
        f"{name}: {placed} of {wanted} instances placed, paid until height "
        f"{view.get('expire_height')}"
    )
    for instance in view.get("instances", []):
        env.say(
            f"  instance {instance.get('index')} runs on node {instance.get('node_id')} "
            f"at {instance.get('endpoint')} ({instance.get('country')})"
        )
    if view.get("underplaced_reason"):
        env.say(f"  under-placed: {view.get('underplaced_reason')}")
    return view


@app.command("register")
@spec_argument
@send_options
@pass_env
def app_register(env: Env, spec: Path, **kwargs: Any) -> None:
    """Register an app: pay its price into escrow; the chain places its instances.

    Prints where each instance landed once the tx is confirmed.

    \b
    Examples:
      flux-wallet app validate app.yaml && flux-wallet app register app.yaml
      flux-wallet app register app.yaml --account account1 --timeout 120
    """
    opts = _send_opts(kwargs)
    names: list[str] = []

    def build(params: Params, entry: KeyEntry) -> Payload:
        parsed = _load_spec(env, spec, params, opts.account_ref or entry.name)
        builders.check_owner(parsed, entry.public_key, params.address_hrp)
        names.append(parsed.name)
        return builders.app_register(parsed)

    result = _send(env, opts, build, what="registering the app")
    if result.get("status") == "confirmed":
        view = _show_placement(env, names[0])
        result["app"] = view
    env.emit(result)


@app.command("update")
@spec_argument
@send_options
@pass_env
def app_update(env: Env, spec: Path, **kwargs: Any) -> None:
    """Replace a running app's spec (same name); the price is settled against the escrow.

    \b
    Example:
      flux-wallet app update app.yaml
    """
    opts = _send_opts(kwargs)
    params = _check_network(env)
    entry = _account(env, opts.account_ref)
    parsed = _load_spec(env, spec, params, opts.account_ref or entry.name)
    builders.check_owner(parsed, entry.public_key, params.address_hrp)
    view = env.client().app(parsed.name)
    result = _send(
        env, opts, lambda p, e: builders.app_update(parsed), app_view=view, what="updating the app"
    )
    if result.get("status") == "confirmed":
        result["app"] = _show_placement(env, parsed.name)
    env.emit(result)


@app.command("extend")
@click.argument("name")
@click.option("--blocks", type=click.IntRange(1), required=True, help="Blocks to add.")
@send_options
@pass_env
def app_extend(env: Env, name: str, blocks: int, **kwargs: Any) -> None:
    """Pay for more blocks of a running app.

    \b
    Example:
      flux-wallet app extend wordpress --blocks 22000
    """
    opts = _send_opts(kwargs)
    view = env.client().app(name)
    result = _send(
        env,
        opts,
        lambda p, e: builders.app_extend(name, blocks),
        app_view=view,
        what=f"extending {name} by {blocks} blocks",
    )
    env.emit(result)


@app.command("cancel")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@send_options
@pass_env
def app_cancel(env: Env, name: str, yes: bool, **kwargs: Any) -> None:
    """Stop an app: its instances are removed and the unspent escrow is refunded.

    \b
    Example:
      flux-wallet app cancel wordpress --yes
    """
    opts = _send_opts(kwargs)
    if not yes and not click.confirm(f"Cancel app {name!r} and stop every instance?", err=True):
        raise click.Abort
    result = _send(env, opts, lambda p, e: builders.app_cancel(name), what=f"cancelling {name}")
    refunds = [
        e.get("refund") for e in result.get("events", []) if e.get("kind") == "app_cancelled"
    ]
    if refunds:
        result["refund"] = refunds[0]
        env.say(f"refunded {format_flux(int(refunds[0]))}")
    env.emit(result)


@app.command("status")
@click.argument("name")
@pass_env
def app_status(env: Env, name: str) -> None:
    """An app's escrow, expiry, and where each instance runs (or why it does not).

    \b
    Example:
      flux-wallet app status wordpress
    """
    view = env.client().app(name)
    env.emit(view)
    env.say(
        f"{view.get('name')}: {view.get('status')} — {view.get('placed')}/{view.get('wanted')} "
        f"instances; escrow {format_flux(int(view.get('escrow', 0)))}; paid until height "
        f"{view.get('expire_height')}; owner {view.get('owner')}"
    )
    if view.get("underplaced_reason"):
        env.say(f"under-placed: {view.get('underplaced_reason')}")
    env.show(instances_table(view))


@main.group()
def apps() -> None:
    """The network's apps."""


@apps.command("list")
@click.option("--mine", is_flag=True, help="Only apps owned by this wallet's accounts.")
@pass_env
def apps_list(env: Env, mine: bool) -> None:
    """List registered apps.

    \b
    Examples:
      flux-wallet apps list
      flux-wallet --json apps list --mine
    """
    found = env.client().apps()
    if mine:
        store = env.keystore()
        owners = {a.address(store.hrp) for a in store.accounts}
        found = [a for a in found if a.get("owner") in owners]
    env.emit({"apps": found})
    env.show(apps_table(found))


# -- txs --------------------------------------------------------------------------------------


@main.group()
def tx() -> None:
    """Transactions."""


@tx.command("status")
@click.argument("tx_id")
@pass_env
def tx_status(env: Env, tx_id: str) -> None:
    """A tx's status: pending, confirmed (height, events), rejected (reason), unknown.

    \b
    Example:
      flux-wallet tx status 5be1…
    """
    status = env.client().tx(tx_id)
    env.emit(status)
    state = status.get("status")
    if state == "confirmed":
        kind = (status.get("tx") or {}).get("kind", "")
        env.say(f"confirmed at height {status.get('height')} (index {status.get('index')}) {kind}")
        hrp = env.keystore().hrp if env.has_wallet() else env.params().address_hrp
        for event in status.get("events", []):
            env.say(f"  {describe_event(event, hrp)}")
    elif state == "rejected":
        env.say(f"rejected [{status.get('reason')}]: {status.get('message')}")
    else:
        env.say(str(state))


def run() -> None:
    """Entry point with the exit status of the last failure."""
    main(prog_name="flux-wallet")


if __name__ == "__main__":
    run()
