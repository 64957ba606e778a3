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

    Verifying (the default), "confirmed" is proven: the tx is in a block the light client
    verified. Pending, rejected and unknown cannot be proven (nothing is on chain to prove
    them): they are shown as what the node claims, labelled unverified, with its name.

    \b
    Example:
      flux-wallet tx status 5be1…
    """
    answer = env.client().tx_status(tx_id)
    status = answer.body
    state = status.get("status")
    shown = status | {"verified": answer.verified, "served_by": answer.node}
    if state == "confirmed":
        # Each event shown is proven to be the block's and to concern the tx; that none
        # was left out is not (the block page proves all of the block's events).
        shown["events_complete_verified"] = False
    env.emit(shown)
    if answer.verified:
        trust = (
            "verified: included in a block this wallet's light client verified; each event"
            " shown is proven, not that none is missing"
        )
    elif state == "confirmed":
        trust = f"unverified (--no-verify): as {answer.node} says"
    else:
        trust = f"unverified: what {answer.node} claims; nothing on chain proves {state!r}"
    if state == "confirmed":
        kind = (status.get("tx") or {}).get("kind", "")
        env.say(f"confirmed at height {status.get('height')} (index {status.get('index')}) {kind}")
        hrp = env.keystore().hrp if env.has_wallet() else env.params().address_hrp
        for event in status.get("events", []):
            env.say(f"  {describe_event(event, hrp)}")
    elif state == "rejected":
        env.say(f"rejected [{status.get('reason')}]: {status.get('message')}")
    elif state == "held":
        env.say(
            f"held [{status.get('reason')}]: {status.get('message')} (refused for now; the "
            "node offers it again after later blocks and it may still commit)"
        )
    elif state == "evicted":
        env.say(
            f"evicted [{status.get('reason')}]: {status.get('message')} (it left this "
            "node's pool after the node relayed it; it may still commit from a peer's, "
            "until another tx spends its nonce)"
        )
    else:
        env.say(str(state))
    env.say(f"({trust})")
