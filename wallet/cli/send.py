"""Money commands: balance and send."""

from __future__ import annotations

from typing import Any

import click

from fluxchain.core.params import Params
from fluxchain.core.tx import Payload
from wallet import builders
from wallet.amounts import format_flux, parse_amount
from wallet.cli.common import (
    Env,
    account_entry,
    account_option,
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
    opts = send_opts(kwargs)
    units = parse_amount(amount)

    def build(params: Params, entry: KeyEntry) -> Payload:
        target = to
        if env.has_wallet():
            try:  # a name of one of this wallet's accounts is accepted as the destination
                target = env.keystore().find_account(to).address(params.address_hrp)
            except WalletError:
                target = to
        return builders.transfer(target, units, params.address_hrp)

    result = send_tx(env, opts, build, what=f"sending {format_flux(units)}")
    env.emit(result)
