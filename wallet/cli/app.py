"""App commands: `app validate|price|register|update|extend|cancel|status|secrets`, the
owner's `app logs|stats|restart|redeploy`, and `apps list`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from fluxchain.core.appspec import AppSpec, format_cpu
from fluxchain.core.crypto import address_of, encode_address
from fluxchain.core.errors import FluxError, Reason
from fluxchain.core.owner_request import Method
from fluxchain.core.params import Params
from fluxchain.core.sealing import (
    AEAD_TAG_SIZE,
    KEY_CHECK_SIZE,
    KEY_SALT_SIZE,
    VALUE_NONCE_SIZE,
    SealingError,
    derive_data_key,
    key_check,
    new_key_salt,
    seal_key,
)
from fluxchain.core.secrets import open_secrets, seal_secrets, secret_misfit, secret_set_from_view
from fluxchain.core.tx import AppSecrets, Payload, Seal, Secret, SecretKind, secrets_fee
from wallet import builders
from wallet.amounts import format_flux
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
from wallet.operate import FOLLOW_VALID_S, hosts_of, operate
from wallet.render import apps_table, instances_table


@click.group()
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
    entry = account_entry(env, account_ref)
    return encode_address(address_of(entry.public_key), hrp)


def _load_spec(env: Env, path: Path, params: Params, account_ref: str | None) -> AppSpec:
    obj = builders.read_spec_file(path)
    obj = builders.with_owner(obj, _spec_owner(env, account_ref, params.address_hrp))
    return builders.parse_spec(obj, params, str(path))


def _quote_lines(env: Env, spec: AppSpec, params: Params, blocks: int) -> dict[str, Any]:
    q = builders.quote(spec, params, blocks)
    env.say(
        f"{spec.name}: {spec.instances} instance(s) of {format_cpu(spec.cpu)} cpu, "
        f"{spec.ram_mb} MB RAM, {spec.disk_gb} GB disk, {len(spec.ports)} port(s)"
    )
    if spec.domains:
        # claimed at registration, first come: the chain refuses `domain_taken` otherwise
        env.say(f"  domains: {', '.join(spec.domains)}")
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
@click.option(
    "--secrets",
    "secrets_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Sealed secrets for the app (docs/apps.md "Secrets"): sent before the register '
    "and sealed to its hosts once placed, so that it never runs without them.",
)
@send_options
@pass_env
def app_register(env: Env, spec: Path, secrets_file: Path | None, **kwargs: Any) -> None:
    """Register an app: pay its price into escrow; the chain places its instances.

    Prints where each instance landed once the tx is confirmed.

    \b
    Examples:
      flux-wallet app validate app.yaml && flux-wallet app register app.yaml
      flux-wallet app register app.yaml --account account1 --timeout 120
      flux-wallet app register shop.yaml --secrets shop-secrets.yaml
    """
    opts = send_opts(kwargs)
    names: list[str] = []
    sealed: list[dict[str, Any]] = []
    if secrets_file is not None:
        values = read_secret_values(secrets_file)  # fail before anything is sent
        if opts.nonce is not None or opts.no_wait:
            raise WalletError(
                WalletReason.BAD_INPUT, "--secrets sends three txs in turn: no --nonce, --no-wait"
            )
        params = check_network(env)
        owner = account_entry(env, opts.account_ref)
        parsed = _load_spec(env, spec, params, opts.account_ref or owner.name)
        # the register would be refused `secrets_do_not_fit`, after the secrets' own tx
        check_secrets_fit(parsed, values, secrets_file, Reason.SECRETS_DO_NOT_FIT)
        name = parsed.name
        sealed.append(_send_secrets(env, opts, name, values, pending=True))

    def build(params: Params, entry: KeyEntry) -> Payload:
        parsed = _load_spec(env, spec, params, opts.account_ref or entry.name)
        builders.check_owner(parsed, entry.public_key, params.address_hrp)
        names.append(parsed.name)
        return builders.app_register(parsed)

    result = send_tx(env, opts, build, what="registering the app")
    if result.get("status") == "confirmed":
        view = _show_placement(env, names[0])
        result["app"] = view
        if sealed:  # the chain adopted the secrets with the register: seal them to the hosts
            sealed.append(_send_secrets(env, opts, names[0], None))
            result["secrets"] = sealed
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
    opts = send_opts(kwargs)
    params = check_network(env)
    entry = account_entry(env, opts.account_ref)
    parsed = _load_spec(env, spec, params, opts.account_ref or entry.name)
    builders.check_owner(parsed, entry.public_key, params.address_hrp)
    view = env.client().app(parsed.name)
    result = send_tx(
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
    opts = send_opts(kwargs)
    view = env.client().app(name)
    result = send_tx(
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
    opts = send_opts(kwargs)
    if not yes and not click.confirm(f"Cancel app {name!r} and stop every instance?", err=True):
        raise click.Abort
    result = send_tx(env, opts, lambda p, e: builders.app_cancel(name), what=f"cancelling {name}")
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


@click.group()
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


# -- owner operations: signed requests to the hosting nodes (wallet/operate.py) -----------


def _owner_key(env: Env, view: dict[str, Any], account_ref: str | None) -> tuple[Params, Any]:
    """The chain's params and the signing key of the app's owner (checked before the
    password is asked: the hosts would refuse anyone else)."""
    params = check_network(env)
    entry = account_entry(env, account_ref)
    store = env.keystore()
    if entry.address(store.hrp) != view.get("owner"):
        raise WalletError(
            WalletReason.NOT_OWNER,
            f"{view.get('name')} is owned by {view.get('owner')}, not {entry.address(store.hrp)}",
        )
    return params, store.unlock(env.password()).signing_key(entry)


def _run_operation(
    env: Env,
    name: str,
    method: str,
    account_ref: str | None,
    instance: int | None,
    *,
    tail: int = 0,
    follow: bool = False,
) -> list[dict[str, Any]]:
    view = env.client().app(name)
    check_instance(view, instance)
    params, key = _owner_key(env, view, account_ref)
    timeout_s = FOLLOW_VALID_S + 10.0 if follow else 130.0  # a redeploy pulls an image
    lines = operate(
        key,
        params.chain_id,
        view,
        Method(method),
        instance=instance,
        tail=tail,
        follow=follow,
        timeout_s=timeout_s,
    )
    out: list[dict[str, Any]] = []
    for line in lines:
        if method != "logs":
            out.append(line)
            continue
        _show_log_line(env, line)
        if "error" in line or line.get("end") == "error":
            out.append(line)
    return out


def _show_log_line(env: Env, line: dict[str, Any]) -> None:
    if env.json_mode:
        click.echo(json.dumps(line, sort_keys=True))
        return
    if "error" in line:
        error = line["error"]
        env.err.print(
            f"node {line['node_id'][:12]}: {error.get('reason')}: {error.get('message')}",
            markup=False,
        )
    elif "data" in line:
        prefix = f"[{line.get('instance')}/{line.get('component')}] "
        text = str(line["data"])
        lines = text.splitlines()
        click.echo("".join(prefix + one + "\n" for one in lines), nl=False)
    elif line.get("end") not in (None, "done"):
        env.err.print(f"node {line['node_id'][:12]}: {line.get('end')}", markup=False)


def _failures(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    failed = [line for line in lines if "error" in line]
    for line in lines:
        failed += [
            {"node_id": line["node_id"], **r} for r in line.get("results", []) if "error" in r
        ]
    return failed


def _report_operation(env: Env, method: str, lines: list[dict[str, Any]]) -> None:
    env.emit({"method": method, "hosts": lines})
    for line in lines:
        host = line["node_id"][:12]
        if "error" in line:
            error = line["error"]
            env.say(f"node {host}: {error.get('reason')}: {error.get('message')}")
        for r in line.get("results", []):
            what = f"node {host} instance {r.get('instance')} {r.get('component')}"
            if "error" in r:
                env.say(f"{what}: {r['error'].get('reason')}: {r['error'].get('message')}")
            elif method == "stats":
                figures = ", ".join(
                    f"{k} {r[k]}"
                    for k in ("state", "cpu_seconds", "memory_bytes", "disk_bytes", "uptime_s")
                    if k in r
                )
                env.say(f"{what}: {figures}")
            else:
                env.say(f"{what}: {r.get('done', method)}")
    failed = _failures(lines)
    if failed:
        first = failed[0]["error"]
        raise WalletError(str(first.get("reason")), f"{len(failed)} failed: {first.get('message')}")


def check_instance(view: dict[str, Any], instance: int | None) -> None:
    """Refuse, before any key is unlocked or request signed, an instance the app does not
    have or the chain placed nowhere (its hosts would answer `not_hosted`)."""
    wanted = int(view.get("wanted") or view.get("spec", {}).get("instances") or 0)
    if instance is not None and instance >= wanted:
        last = f"0..{wanted - 1}" if wanted else "none"
        raise WalletError(
            WalletReason.NOT_FOUND,
            f"{view.get('name')} has {wanted} instance(s) ({last}): no instance {instance}",
        )
    hosts_of(view, instance)  # not_found: that instance (or every one) is placed nowhere


_instance_option = click.option(
    "--instance", type=click.IntRange(0), default=None, help="One instance (default: all)."
)


@app.command("logs")
@click.argument("name")
@_instance_option
@click.option("--follow", "-f", is_flag=True, help="Then print new output (up to 5 minutes).")
@click.option("--tail", type=click.IntRange(0, 10_000), default=100, show_default=True)
@account_option
@pass_env
def app_logs(
    env: Env, name: str, instance: int | None, follow: bool, tail: int, account_ref: str | None
) -> None:
    """The output of your app's components, from the nodes that host them.

    \b
    Examples:
      flux-wallet app logs wordpress --tail 50
      flux-wallet app logs wordpress --instance 1 --follow
    """
    failed = _run_operation(env, name, "logs", account_ref, instance, tail=tail, follow=follow)
    if failed:
        error = failed[0]["error"]
        raise WalletError(
            str(error.get("reason")), f"{len(failed)} host(s) failed: {error.get('message')}"
        )


@app.command("stats")
@click.argument("name")
@_instance_option
@account_option
@pass_env
def app_stats(env: Env, name: str, instance: int | None, account_ref: str | None) -> None:
    """CPU time, memory, disk and uptime of your app's components on each host.

    \b
    Example:
      flux-wallet app stats wordpress
    """
    _report_operation(env, "stats", _run_operation(env, name, "stats", account_ref, instance))


@app.command("restart")
@click.argument("name")
@_instance_option
@account_option
@pass_env
def app_restart(env: Env, name: str, instance: int | None, account_ref: str | None) -> None:
    """Stop and start your app's components again (their data is kept).

    \b
    Example:
      flux-wallet app restart wordpress --instance 0
    """
    _report_operation(env, "restart", _run_operation(env, name, "restart", account_ref, instance))


@app.command("redeploy")
@click.argument("name")
@_instance_option
@account_option
@pass_env
def app_redeploy(env: Env, name: str, instance: int | None, account_ref: str | None) -> None:
    """Pull your app's images again and recreate its components (data kept): a moved
    tag (`:latest`) brings the new version.

    \b
    Example:
      flux-wallet app redeploy wordpress
    """
    lines = _run_operation(env, name, "redeploy", account_ref, instance)
    _report_operation(env, "redeploy", lines)


def read_secret_values(path: Path) -> dict[tuple[str, SecretKind, str], bytes]:
    """The plaintext secrets file: {component: {env: {NAME: value}, registry_auth:
    {registry: "user:password"}}} (YAML or JSON). It stays on the owner's machine."""
    try:
        body = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise WalletError(WalletReason.BAD_INPUT, f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        # only the line: YAML's own message quotes the offending text, a secret perhaps
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise WalletError(WalletReason.BAD_INPUT, f"{path} is not valid YAML{where}") from None
    values: dict[tuple[str, SecretKind, str], bytes] = {}
    if not isinstance(body, dict):
        raise WalletError(WalletReason.BAD_INPUT, f"{path}: expected a map of components")
    sections = (("env", SecretKind.ENV), ("registry_auth", SecretKind.REGISTRY_AUTH))
    for component, parts in body.items():
        if not isinstance(parts, dict):
            raise WalletError(WalletReason.BAD_INPUT, f"{path}: {component} is not a map")
        for section, kind in sections:
            entries = parts.get(section)
            if not isinstance(entries, dict | None):
                raise WalletError(
                    WalletReason.BAD_INPUT, f"{path}: {component}.{section} is not a map"
                )
            for name, value in (entries or {}).items():
                if "\x00" in str(value):  # no environment or exec argument holds a NUL
                    raise WalletError(
                        WalletReason.BAD_INPUT, f"{path}: {component}.{section}.{name} holds a NUL"
                    )
                values[(str(component), kind, str(name))] = str(value).encode()
    return values


def check_secrets_fit(
    spec: AppSpec,
    values: dict[tuple[str, SecretKind, str], bytes],
    path: Path,
    reason: Reason | None = None,
) -> None:
    """Refuse, before anything is signed, a secrets file that does not fit `spec` (a
    component it lacks, a variable the agent sets itself: PORT, HOST, FLUX_*, or one its
    plain environment sets): the chain's own rule (`secret_misfit`), with its reason, or
    `reason` when the chain would refuse another tx for it (the register)."""
    for component, kind, secret_name in sorted(values):
        problem = secret_misfit(spec, Secret(component, kind, secret_name, b""))
        if problem is not None:
            section = "env" if kind is SecretKind.ENV else "registry_auth"
            raise WalletError(
                str(reason or problem[0]),
                f"{path}: {component}.{section}.{secret_name}: {problem[1]}",
            )


def _check_owner(env: Env, view: dict[str, Any], account_ref: str | None) -> None:
    """Refuse an app the signing account does not own (the chain would: `not_owner`)."""
    store = env.keystore()
    address = account_entry(env, account_ref).address(store.hrp)
    if address != view.get("owner"):
        raise WalletError(
            WalletReason.NOT_OWNER,
            f"{view.get('name')} is owned by {view.get('owner')}, not {address}",
        )


@app.command("secrets")
@click.argument("name")
@click.option(
    "--set",
    "values_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Set the app's secrets from this YAML/JSON file (a new data key: rotation). "
    "Without it: re-seal the current secrets to every host that lacks the key.",
)
@click.option(
    "--delete",
    is_flag=True,
    help="Remove the app's secrets; or, for a name you have not registered (or someone "
    "else holds), delete the secrets you sent ahead of its register.",
)
@send_options
@pass_env
def app_secrets(env: Env, name: str, values_file: Path | None, delete: bool, **kwargs: Any) -> None:
    """Seal an app's secrets to the nodes that host it (docs/apps.md "Secrets").

    Values are encrypted here; the chain and every API see only ciphertext, and each
    host gets the app's data key sealed to its node key. Hosts pass the key on to new
    hosts by themselves; run this without --set when none is left to do it.

    \b
    Example:
      flux-wallet app secrets shop --set shop-secrets.yaml
      flux-wallet app secrets shop
      flux-wallet app secrets shop --delete
    """
    opts = send_opts(kwargs)
    if delete and values_file is not None:
        raise WalletError(WalletReason.BAD_INPUT, "give --set FILE or --delete, not both")
    values = None if values_file is None else read_secret_values(values_file)  # fail early
    if delete:
        env.emit(_delete_secrets(env, opts, name))
        return
    params = check_network(env)
    view = env.client().app(name)  # not_found: no such app (`--delete` for a pending set)
    _check_owner(env, view, opts.account_ref)
    if values is not None and values_file is not None:
        spec = AppSpec.from_json(view["spec"], params.address_hrp)
        check_secrets_fit(spec, values, values_file)
    env.emit(_send_secrets(env, opts, name, values))


def _delete_secrets(env: Env, opts: SendOptions, name: str) -> dict[str, Any]:
    """One APP_SECRETS without secrets or seals: it removes the secrets of the signer's
    live app, or deletes the set the signer sent before registering `name` (the chain
    refuses it, `unknown_app` or `not_owner`, when there is neither)."""
    client = env.client()
    try:
        view: dict[str, Any] | None = client.app(name)
    except NodeApiError as exc:
        if exc.status != 404:
            raise
        view = None  # not registered: the signer's pending set, if any
    if view is not None:
        store = env.keystore()
        mine = account_entry(env, opts.account_ref).address(store.hrp) == view.get("owner")
        if mine:
            try:
                client.app_secrets(name)
            except NodeApiError as exc:
                if exc.status != 404:
                    raise
                raise WalletError(
                    Reason.NO_SECRETS.value, f"app {name!r} has no secrets to remove"
                ) from None

    def build(params: Params, entry: KeyEntry) -> Payload:
        return AppSecrets(name, bytes(KEY_SALT_SIZE), bytes(KEY_CHECK_SIZE), (), ())

    return send_tx(env, opts, build, what=f"deleting the secrets of {name}")


def _send_secrets(
    env: Env,
    opts: SendOptions,
    name: str,
    values: dict[tuple[str, SecretKind, str], bytes] | None,
    *,
    pending: bool = False,
) -> dict[str, Any]:
    """One APP_SECRETS: `values` under a new key sealed to every host (or, `pending`, for
    an app about to be registered: no hosts yet), or without `values` the current secrets
    re-sealed to every host."""
    client = env.client()
    host_keys: dict[bytes, bytes] = {}
    if not pending:
        view = client.app(name)
        hosts = sorted({i["node_id"] for i in view.get("instances", [])})
        host_keys = {bytes.fromhex(h): bytes.fromhex(client.node(h)["node_key"]) for h in hosts}
    current: dict[str, Any] | None = None
    if values is None:
        try:
            current = client.app_secrets(name)
        except NodeApiError as exc:
            raise WalletError(
                WalletReason.BAD_INPUT, f"app {name!r} has no secrets to re-seal: {exc}"
            ) from None
    chosen: dict[str, KeyEntry] = {}

    def build(params: Params, entry: KeyEntry) -> Payload:
        # The kind's shape for the fee and funds checks; `seal` (send_tx's `prove` step,
        # run once the keystore is unlocked) always replaces it with the real payload.
        chosen["entry"] = entry
        return AppSecrets(name, bytes(KEY_SALT_SIZE), bytes(KEY_CHECK_SIZE), (), ())

    def seal(params: Params, _payload: Payload, _pub: bytes, _nonce: int, keys: Any) -> Payload:
        owner = keys.signing_key(chosen["entry"])
        if values is not None:
            return seal_secrets(owner, params.chain_id, name, values, host_keys, new_key_salt())
        assert current is not None  # read above when no file was given
        secret_set = secret_set_from_view(current)
        data_key = derive_data_key(owner.secret, params.chain_id, name, secret_set.key_salt)
        if key_check(data_key) != secret_set.key_check:
            raise WalletError(
                WalletReason.BAD_INPUT, "the app's secrets were set with another owner key"
            )
        try:  # the node's answer is not proven: every value must open before it is re-sent
            open_secrets(secret_set, data_key, params.chain_id, name)
        except SealingError:
            raise WalletError(
                WalletReason.BAD_INPUT, "the node served secrets that do not open: ask another"
            ) from None
        seals = tuple(Seal(n, seal_key(k, data_key)) for n, k in sorted(host_keys.items()))
        return AppSecrets(
            name, secret_set.key_salt, secret_set.key_check, secret_set.secrets, seals
        )

    # what the chain charges for the values kept in state: their ciphertexts' bytes, known
    # before the keystore is unlocked (each value plus its nonce and tag)
    if values is not None:
        stored = sum(VALUE_NONCE_SIZE + len(v) + AEAD_TAG_SIZE for v in values.values())
    else:
        assert current is not None
        stored = sum(len(s.ciphertext) for s in secret_set_from_view(current).secrets)

    def charge(params: Params, _payload: Payload) -> int:
        return secrets_fee(stored, params)

    return send_tx(
        env,
        opts,
        build,
        prove=seal,
        charge=charge,
        pending_set=pending,
        what=f"sealing the secrets of {name}",
    )
