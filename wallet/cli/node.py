"""Node commands: `node keygen|register|update|unregister|status` and `nodes list`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from fluxchain.core.crypto import SigningKey
from fluxchain.core.errors import FluxError
from fluxchain.core.params import Params
from fluxchain.core.tx import Hardware, Payload
from wallet import builders
from wallet.amounts import format_flux, parse_amount
from wallet.cli.common import (
    PARAMS_PROBE_TIMEOUT_S,
    Env,
    pass_env,
    send_options,
    send_opts,
    send_tx,
)
from wallet.errors import NodeApiError, WalletError, WalletReason
from wallet.hd import node_key_path
from wallet.keystore import KeyEntry, Secrets, hd_entry, write_atomic
from wallet.render import nodes_table


@click.group()
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
    """What `send_tx` calls once the nonce is known: the node key signs its proof."""

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
    Hardware defaults to the tier's caps (`max_cores`, `max_ram_mb`, `max_disk_gb`;
    refused above them). What the node offers apps is its benchmark, capped by what is
    declared here, for the node's life (no update changes it): declare less only to keep
    apps off part of the server.

    \b
    Examples:
      flux-wallet node keygen
      flux-wallet node register --tier cumulus --node-pubkey node0 \\
          --endpoint 203.0.113.7:26700 --country DE
      flux-wallet node keygen --out node_key.json
      flux-wallet node register --tier stratus --node-key-file node_key.json \\
          --endpoint 203.0.113.8:26700 --country US --cores 16 --ram-mb 65536 --disk-gb 900
    """
    opts = send_opts(kwargs)
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
        caps = builders.tier_hardware(params, tier_value)
        hardware = Hardware(cores or caps.cores, ram_mb or caps.ram_mb, disk_gb or caps.disk_gb)
        return builders.node_register(
            tier_value,
            node_key,
            endpoint,
            place[0],
            place[1],
            hardware,
            entry.public_key,
        )

    result = send_tx(
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
    opts = send_opts(kwargs)
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

    def charge(params: Params, payload: Payload) -> int:
        view = env.client().node(node_id)
        hosted = len(env.client().node_assignments(node_id))
        return builders.replacement_charge(payload, params, node=view, hosted=hosted)

    prove = None if signer is None else _key_prover(signer)
    env.emit(send_tx(env, opts, build, what="updating the node", prove=prove, charge=charge))


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
    opts = send_opts(kwargs)
    raw_id = builders.parse_node_id(node_id)

    def build(params: Params, entry: KeyEntry) -> Payload:
        _owned_node(env, node_id, entry)
        return builders.node_unregister(raw_id)

    env.emit(send_tx(env, opts, build, what="unregistering the node"))


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


@click.group()
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
