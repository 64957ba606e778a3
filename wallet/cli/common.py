"""What every flux-wallet command shares: the environment (node, wallet, output), the
error handling of the top-level group, the shared options, and the send pipeline (build,
check funds, sign, submit, wait).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from fluxchain.core.crypto import encode_address
from fluxchain.core.errors import FluxError
from fluxchain.core.params import Params
from fluxchain.core.tx import Payload, Transfer
from fluxchain.light.errors import LightError
from fluxchain.light.store import TrustStore
from wallet import builders
from wallet.amounts import format_flux, parse_amount
from wallet.client import NodeClient
from wallet.errors import WalletError, WalletReason
from wallet.keystore import KeyEntry, Keystore, Secrets, check_new_password
from wallet.render import describe_event
from wallet.sender import Sender, SendPlan
from wallet.verify import Verifier, trust_store_path

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_WALLET_DIR = Path("~/.fluxchain/wallet")
DEFAULT_TIMEOUT_S = 60.0
PARAMS_PROBE_TIMEOUT_S = 3.0  # `create`/`import` ask the node for the address prefix
WIDE = 240  # console width when stdout is not a terminal: ids and addresses never wrap


@dataclass
class Env:
    """What every command shares: where the node and the wallet are, and the output."""

    node_url: str
    wallet_dir: Path
    json_mode: bool
    out: Console
    err: Console
    verify: bool = True  # reads with a proof are checked by the light client
    trust_period_s: int | None = None  # None: the trust store's (from the pinned genesis)
    _client: NodeClient | None = None
    _params: Params | None = None
    _keystore: Keystore | None = None

    def client(self, timeout_s: float | None = None) -> NodeClient:
        if timeout_s is not None:
            return NodeClient(self.node_url, timeout_s, self._verifier())
        if self._client is None:
            self._client = NodeClient(self.node_url, verifier=self._verifier())
        return self._client

    def _verifier(self) -> Verifier | None:
        if not self.verify:
            return None
        period_ms = None if self.trust_period_s is None else self.trust_period_s * 1000
        return Verifier(self.wallet_dir, period_ms)

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


def consoles() -> tuple[Console, Console]:
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


def send_opts(kwargs: dict[str, Any]) -> SendOptions:
    return SendOptions(
        kwargs.pop("account_ref"),
        kwargs.pop("fee"),
        kwargs.pop("nonce"),
        kwargs.pop("no_wait"),
        kwargs.pop("timeout"),
    )


# -- accounts and sending ----------------------------------------------------------------


def account_entry(env: Env, ref: str | None) -> KeyEntry:
    store = env.keystore()
    if ref is None:
        if not store.accounts:
            raise WalletError(WalletReason.UNKNOWN_ACCOUNT, "the wallet has no accounts")
        return store.accounts[0]
    return store.find_account(ref)


def check_network(env: Env) -> Params:
    """The params to sign with, once they are known to be the wallet's chain: the address
    prefix of its keys and, when it has a trust store, the chain id that store trusts
    (verifying, the params are the store's pinned genesis's; with --no-verify they are a
    node's word, and a node naming another chain would get a tx it can replay there)."""
    params = env.params()
    store = env.keystore()
    if params.address_hrp != store.hrp:
        raise WalletError(
            WalletReason.WRONG_NETWORK,
            f"this wallet's addresses are for '{store.hrp}', the node at {env.node_url} "
            f"serves '{params.address_hrp}' ({params.chain_id})",
        )
    try:
        trusted = TrustStore.load(trust_store_path(env.wallet_dir))
    except LightError as exc:
        raise WalletError(str(exc.reason), exc.message) from None
    if trusted is not None and params.chain_id != trusted.chain_id:
        raise WalletError(
            WalletReason.WRONG_NETWORK,
            f"this wallet trusts chain {trusted.chain_id!r}; it does not sign for chain"
            f" {params.chain_id!r} (the node at {env.node_url} names it)",
        )
    return params


def _fee(params: Params, text: str | None, charge: int = 0) -> int:
    """The fee to pay: --fee, or the chain's minimum plus the re-placement `charge` the
    chain burns out of it (builders.replacement_charge)."""
    needed = params.min_fee + charge
    if text is None:
        return needed
    fee = parse_amount(text, allow_zero=True)
    if fee < params.min_fee:
        raise WalletError(
            WalletReason.BAD_AMOUNT,
            f"--fee {text} is below the chain's minimum {format_flux(params.min_fee)}",
        )
    if fee < needed:
        raise WalletError(
            WalletReason.BAD_AMOUNT,
            f"--fee {text} is below the {format_flux(needed)} this tx costs: the minimum "
            f"plus {format_flux(charge)} burnt for the app instances it moves",
        )
    return fee


def send_tx(
    env: Env,
    opts: SendOptions,
    build: Callable[[Params, KeyEntry], Payload],
    *,
    app_view: dict[str, Any] | None = None,
    what: str,
    prove: Callable[[Params, Payload, bytes, int, Secrets], Payload] | None = None,
    charge: Callable[[Params, Payload], int] | None = None,
    pending_set: bool = False,
) -> dict[str, Any]:
    """Build, check funds, sign, submit, and (unless --no-wait) wait for the confirmation.

    `prove`, for a payload that names a node key: adds the key's proof of possession,
    which binds the nonce, so it runs once the nonce is chosen. `charge`: what the chain
    burns out of the fee for the instances the tx moves (the default fee covers it).
    `pending_set`: secrets sent before their register (`builders.estimate_cost`).

    Returns the API's status body of the confirmed tx, or with --no-wait the node's answer
    ({"id", "status": "pending" or "held"[, "reason", "message"]}) and the nonce.
    """
    params = check_network(env)
    entry = account_entry(env, opts.account_ref)
    store = env.keystore()
    sender_address = entry.address(store.hrp)
    payload = build(params, entry)
    if charge is not None:
        burnt = charge(params, payload)
    else:  # an app update's moves are bounded by its view; other kinds move nothing
        burnt = builders.replacement_charge(payload, params, app=app_view)
    fee = _fee(params, opts.fee, burnt)
    cost = builders.estimate_cost(
        payload,
        params,
        app_view,
        new_account=_creates_account(env, params, payload),
        pending_set=pending_set,
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
        answer = sender.submit(sender_address, tx, cost)
    tx_id = answer["id"]
    if answer["status"] == "held":
        env.say(
            f"the node holds tx {tx_id} (nonce {nonce}) for now [{answer.get('reason')}]: "
            f"{answer.get('message')}; it offers it again after later blocks and it may "
            "still commit, so its nonce stays taken"
        )
    if opts.no_wait:
        env.say(f"sent tx {tx_id} (nonce {nonce}); not waiting for the confirmation")
        return {**answer, "nonce": nonce}
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
