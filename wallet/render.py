"""How the CLI shows chain objects to people: event sentences and rich tables.

Scripts use `--json` and never see these; the wording may change, the JSON may not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from fluxchain.core.crypto import encode_address
from fluxchain.core.events import PayReason
from fluxchain.core.params import Tier
from wallet.amounts import format_flux


def _address(value: Any, hrp: str) -> str:
    """Events carry raw 20-byte addresses as hex; show them as bech32."""
    if isinstance(value, str) and len(value) == 40:
        try:
            return encode_address(bytes.fromhex(value), hrp)
        except ValueError:
            return value
    return str(value)


def _tier(value: Any) -> str:
    try:
        return Tier(int(value)).name.lower()
    except (ValueError, TypeError):
        return str(value)


def _pay_reason(value: Any) -> str:
    try:
        return PayReason(int(value)).name.lower()
    except (ValueError, TypeError):
        return str(value)


def _flux(value: Any) -> str:
    return format_flux(int(value)) if isinstance(value, int) else str(value)


# One sentence per event kind, from the event's getter and the address prefix.
_Get = Callable[[str], Any]
_SENTENCES: dict[str, Callable[[_Get, str], str]] = {
    "node_registered": lambda e, hrp: (
        f"node {e('node_id')} registered as {_tier(e('tier'))} by {_address(e('owner'), hrp)}"
    ),
    "node_confirmed": lambda e, hrp: f"node {e('node_id')} confirmed",
    "node_updated": lambda e, hrp: f"node {e('node_id')} updated",
    "node_unbonding": lambda e, hrp: (
        f"node {e('node_id')} unbonding: its collateral returns at height {e('unbond_height')}"
    ),
    "node_released": lambda e, hrp: (
        f"node {e('node_id')} released; collateral {_flux(e('collateral'))} returned"
    ),
    "node_down": lambda e, hrp: (
        f"node {e('node_id')} DOWN ({e('down_reports')}/{e('checkers')} checkers)"
    ),
    "node_expired": lambda e, hrp: (
        f"node {e('node_id')} EXPIRED (last confirmed at {e('last_confirm_height')})"
    ),
    "app_registered": lambda e, hrp: f"app {e('name')} registered; escrow {_flux(e('escrow'))}",
    "app_updated": lambda e, hrp: f"app {e('name')} updated; escrow now {_flux(e('escrow'))}",
    "app_extended": lambda e, hrp: (
        f"app {e('name')} extended; paid until height {e('expire_height')}"
    ),
    "app_cancelled": lambda e, hrp: f"app {e('name')} cancelled; refund {_flux(e('refund'))}",
    "app_expired": lambda e, hrp: f"app {e('name')} expired",
    "assigned": lambda e, hrp: (
        f"instance {e('instance')} of {e('name')} assigned to node {e('node_id')}"
    ),
    "unassigned": lambda e, hrp: (
        f"instance {e('instance')} of {e('name')} left node {e('node_id')} ({e('reason')})"
    ),
    "app_placed": lambda e, hrp: f"app {e('name')} placed: {e('placed')} instance(s) running",
    "app_underplaced": lambda e, hrp: (
        f"app {e('name')} UNDER-PLACED: {e('placed')} of {e('wanted')} instances ({e('reason')})"
    ),
    "paid": lambda e, hrp: (
        f"paid {_flux(e('amount'))} to {_address(e('address'), hrp)} ({_pay_reason(e('reason'))})"
    ),
}


def describe_event(event: dict[str, Any], hrp: str) -> str:
    """One sentence for one event of the API's JSON (`{"kind": …, fields…}`)."""
    kind = str(event.get("kind", "?"))
    sentence = _SENTENCES.get(kind)
    if sentence is not None:
        return sentence(event.get, hrp)
    fields = " ".join(f"{k}={v}" for k, v in event.items() if k != "kind")
    return f"{kind} {fields}".strip()


def nodes_table(nodes: list[dict[str, Any]], title: str = "nodes") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("node id", "tier", "status", "country", "endpoint", "cores/RAM/disk", "owner"):
        table.add_column(column, no_wrap=True)
    for node in nodes:
        hw = node.get("hardware") or {}
        table.add_row(
            str(node.get("node_id", "")),
            str(node.get("tier", "")),
            str(node.get("status", "")),
            f"{node.get('country', '')}/{node.get('continent', '')}",
            str(node.get("endpoint", "")),
            f"{hw.get('cores', '?')}/{hw.get('ram_mb', '?')} MB/{hw.get('disk_gb', '?')} GB",
            str(node.get("owner", "")),
        )
    return table


def instances_table(app: dict[str, Any]) -> Table:
    table = Table(title=f"instances of {app.get('name')}", title_justify="left")
    for column in ("#", "node id", "endpoint", "country"):
        table.add_column(column, no_wrap=True)
    for instance in app.get("instances", []):
        table.add_row(
            str(instance.get("index", "")),
            str(instance.get("node_id", "")),
            str(instance.get("endpoint", "")),
            str(instance.get("country", "")),
        )
    return table


def apps_table(apps: list[dict[str, Any]]) -> Table:
    table = Table(title="apps", title_justify="left")
    for column in ("name", "status", "placed", "expires at", "escrow", "owner"):
        table.add_column(column, no_wrap=True)
    for app in apps:
        table.add_row(
            str(app.get("name", "")),
            str(app.get("status", "")),
            f"{app.get('placed', 0)}/{app.get('wanted', 0)}",
            str(app.get("expire_height", "")),
            _flux(app.get("escrow", 0)),
            str(app.get("owner", "")),
        )
    return table
