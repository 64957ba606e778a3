"""Money commands: balance and send."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from fluxchain.core.params import MEMO_BYTES_PER_MIN_FEE, Params
from fluxchain.core.tx import MAX_MEMO, Payload, memo_fee
from wallet import builders
from wallet.amounts import format_amount, format_flux, parse_amount
from wallet.cli.common import (
    Env,
    SendOptions,
    account_entry,
    account_option,
    check_network,
    pass_env,
    send_options,
    send_opts,
    send_tx,
)
from wallet.errors import NodeApiError, WalletError, WalletReason
from wallet.keystore import KeyEntry


@click.command()
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
            entry = account_entry(env, who)
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


@click.command()
@click.argument("to")
@click.argument("amount")
@click.option(
    "--memo",
    default=None,
    metavar="TEXT",
    help=f"A note for the payee (an invoice, a deposit tag), up to {MAX_MEMO} bytes of UTF-8; "
    f"it costs one more minimum fee per started {MEMO_BYTES_PER_MIN_FEE} bytes.",
)
@send_options
@pass_env
def send(env: Env, to: str, amount: str, memo: str | None, **kwargs: Any) -> None:
    """Send AMOUNT FLUX (up to 8 decimals) to the address TO.

    The fee defaults to the chain's minimum (plus the memo's share, with --memo); the
    nonce is chosen for you. Waits for the confirmation unless --no-wait.

    \b
    Examples:
      flux-wallet send tflux1qq… 12.5
      flux-wallet send tflux1qq… 12.5 --memo "invoice 2026-117"
      flux-wallet send tflux1qq… 0.00000001 --fee 0.0001 --account account1
      flux-wallet --json send tflux1qq… 1 --no-wait
    """
    opts = send_opts(kwargs)
    units = parse_amount(amount)
    memo_bytes = memo_of(memo)
    if memo_bytes:
        opts = _with_memo_fee(env, opts, memo_bytes)

    def build(params: Params, entry: KeyEntry) -> Payload:
        target = to
        if env.has_wallet():
            try:  # a name of one of this wallet's accounts is accepted as the destination
                target = env.keystore().find_account(to).address(params.address_hrp)
            except WalletError:
                target = to
        transfer = builders.transfer(target, units, params.address_hrp)
        return dataclasses.replace(transfer, memo=memo_bytes) if memo_bytes else transfer

    result = send_tx(env, opts, build, what=f"sending {format_flux(units)}")
    env.emit(result)


def memo_of(text: str | None) -> bytes:
    """A --memo's bytes (UTF-8), checked against the chain's bound before anything is
    signed: the node would refuse a longer one as malformed."""
    if text is None:
        return b""
    data = text.encode("utf-8")
    if len(data) > MAX_MEMO:
        raise WalletError(
            WalletReason.BAD_INPUT,
            f"--memo is {len(data)} bytes of UTF-8; a memo holds at most {MAX_MEMO}",
        )
    return data


def _with_memo_fee(env: Env, opts: SendOptions, memo: bytes) -> SendOptions:
    """The options with the fee a transfer carrying `memo` needs (core/tx.py memo_fee):
    the default fee becomes the minimum plus the memo's share; an explicit --fee below
    that is refused here, with the figure, rather than by the node. The fee is shown."""
    params: Params = check_network(env)
    extra = memo_fee(memo, params)
    needed = params.min_fee + extra
    if opts.fee is not None and parse_amount(opts.fee, allow_zero=True) < needed:
        raise WalletError(
            WalletReason.BAD_AMOUNT,
            f"--fee {opts.fee} is below the {format_flux(needed)} a transfer with a "
            f"{len(memo)}-byte memo costs: the minimum {format_flux(params.min_fee)} plus "
            f"{format_flux(extra)} for the memo",
        )
    fee = needed if opts.fee is None else parse_amount(opts.fee, allow_zero=True)
    env.say(
        f"memo of {len(memo)} bytes: fee {format_flux(fee)} (the minimum "
        f"{format_flux(params.min_fee)} plus {format_flux(extra)} for the memo)"
    )
    return dataclasses.replace(opts, fee=format_amount(fee))
