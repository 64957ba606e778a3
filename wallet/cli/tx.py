"""Transaction commands: `tx status`."""

from __future__ import annotations

import click

from wallet.cli.common import Env, pass_env
from wallet.render import describe_event


@click.group()
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
