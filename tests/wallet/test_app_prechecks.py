"""What the chain or the hosts would refuse anyway, the wallet refuses first: before the
keystore is unlocked, anything is signed or a fee is paid, with the reason the chain (or
the host) would give. Each refusal here is run with a wrong wallet password: had the
wallet gone as far as unlocking the keystore, it would say `wrong_password` instead.

And `app secrets NAME --delete`: the owner's way out of a set sent ahead of a register
that will never apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wallet.conftest import Cli
from tests.wallet.test_e2e import write_spec

OWNER, STRANGER = "account4", "account5"


@pytest.fixture
def owner_cli(cli: Cli, tmp_path: Path) -> Cli:
    """A wallet with the owner's and a stranger's accounts, and the owner's app `keeper`
    (3 instances, a plain GREETING variable) registered, if this module has not yet."""
    cli.import_devnet("4-5")
    if "keeper" not in app_names(cli):
        cli.run("app", "register", str(write_spec(tmp_path / "keeper.yaml", "keeper")), "-a", OWNER)
    return cli


def app_names(cli: Cli) -> set[str]:
    return {a["name"] for a in cli.json("apps", "list")["apps"]}


def refused(cli: Cli, *args: str) -> str:
    """The one-line error of a command run with a wrong password, and the proof that it
    sent nothing: every account's nonce is as before."""
    nonces = {a: cli.json("balance", a)["nonce"] for a in (OWNER, STRANGER)}
    cli.extra_env["FLUX_WALLET_PASSWORD"] = "not the wallet's password"
    try:
        line = cli.error_line(*args, expect=1)
    finally:
        del cli.extra_env["FLUX_WALLET_PASSWORD"]
    assert {a: cli.json("balance", a)["nonce"] for a in nonces} == nonces
    return line


def secrets_file(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("variable", ["PORT", "HOST", "FLUX_NODE_ID"])
def test_app_secrets_naming_a_reserved_variable_are_refused_before_signing(
    owner_cli: Cli, tmp_path: Path, variable: str
) -> None:
    """A secret the hosting agent would hide behind its own variable (PORT, HOST,
    FLUX_*): the chain refuses it `bad_field`; the wallet says so first."""
    path = secrets_file(tmp_path / "s.yaml", f"web:\n  env:\n    {variable}: hunter2\n")
    line = refused(owner_cli, "app", "secrets", "keeper", "--set", str(path), "-a", OWNER)
    assert line.startswith("error [bad_field]: ") and f"web.env.{variable}" in line, line
    assert "set by the hosting agent" in line and "hunter2" not in line


@pytest.mark.parametrize(
    ("body", "reason", "says"),
    [
        ("db:\n  env:\n    PASSWORD: hunter2\n", "unknown_component", "no component 'db'"),
        ("web:\n  env:\n    GREETING: hunter2\n", "bad_field", "plain environment"),
    ],
)
def test_app_secrets_that_do_not_fit_the_spec_are_refused_before_signing(
    owner_cli: Cli, tmp_path: Path, body: str, reason: str, says: str
) -> None:
    path = secrets_file(tmp_path / "s.yaml", body)
    line = refused(owner_cli, "app", "secrets", "keeper", "--set", str(path), "-a", OWNER)
    assert line.startswith(f"error [{reason}]: ") and says in line, line


def test_app_secrets_for_an_app_you_do_not_own_are_refused_before_signing(
    owner_cli: Cli, tmp_path: Path
) -> None:
    path = secrets_file(tmp_path / "s.yaml", "web:\n  env:\n    DB_PASSWORD: hunter2\n")
    for args in (("--set", str(path)), ()):  # set, or re-seal
        line = refused(owner_cli, "app", "secrets", "keeper", *args, "-a", STRANGER)
        assert line.startswith("error [not_owner]: keeper is owned by "), line


def test_app_register_with_secrets_that_do_not_fit_sends_nothing(
    owner_cli: Cli, tmp_path: Path
) -> None:
    """`app register --secrets` sends the secrets first, then the register: a set that
    does not fit the spec would be kept pending and the register refused
    `secrets_do_not_fit`. Refused before either tx."""
    spec = write_spec(tmp_path / "second.yaml", "second")
    path = secrets_file(tmp_path / "s.yaml", "web:\n  env:\n    FLUX_ANYTHING: x\n")
    line = refused(owner_cli, "app", "register", str(spec), "--secrets", str(path), "-a", OWNER)
    assert line.startswith("error [secrets_do_not_fit]: ") and "FLUX_ANYTHING" in line, line
    assert "second" not in app_names(owner_cli)


@pytest.mark.parametrize("method", ["logs", "stats", "restart", "redeploy"])
def test_app_operation_on_a_nonexistent_instance_is_refused_before_signing(
    owner_cli: Cli, method: str
) -> None:
    """`keeper` has instances 0..2: instance 7 is nobody's, its hosts would answer
    `not_hosted`. Refused before the owner's key is unlocked."""
    line = refused(owner_cli, "app", method, "keeper", "--instance", "7", "-a", OWNER)
    assert line.startswith("error [not_found]: keeper has 3 instance(s) (0..2): no instance 7")


def test_app_operation_by_a_stranger_is_refused_before_signing(owner_cli: Cli) -> None:
    line = refused(owner_cli, "app", "restart", "keeper", "-a", STRANGER)
    assert line.startswith("error [not_owner]: keeper is owned by "), line


def test_secrets_sent_ahead_of_a_register_that_failed_can_be_deleted(
    owner_cli: Cli, tmp_path: Path
) -> None:
    """The stranger registers `other` with its secrets, claiming a domain the owner's
    app holds: the secrets (sent first) are kept pending, the register is refused
    `domain_taken`, and the set would wait for a register forever. `app secrets other
    --delete` deletes it (the tx confirms, the event says `withdrawn`); a second finds no
    set and the chain refuses it (`unknown_app`)."""
    domain = "shop.example.org"
    claimer = write_spec(tmp_path / "claimer.yaml", "claimer", port=31081, domains=domain)
    owner_cli.run("app", "register", str(claimer), "-a", OWNER)
    other = write_spec(tmp_path / "other.yaml", "other", port=31082, domains=domain)
    path = secrets_file(tmp_path / "s.yaml", "web:\n  env:\n    DB_PASSWORD: hunter2\n")
    line = owner_cli.error_line(
        "app", "register", str(other), "--secrets", str(path), "-a", STRANGER, expect=7
    )
    assert line.startswith("error [domain_taken]: "), line
    deleted = owner_cli.json("app", "secrets", "other", "--delete", "-a", STRANGER)
    assert deleted["status"] == "confirmed", deleted
    assert any(
        e["kind"] == "app_secrets_dropped" and e["reason"] == "withdrawn" for e in deleted["events"]
    ), deleted
    line = owner_cli.error_line("app", "secrets", "other", "--delete", "-a", STRANGER, expect=7)
    assert line.startswith("error [unknown_app]: "), line


def test_deleting_secrets_of_your_app_without_any_is_refused_before_signing(
    owner_cli: Cli,
) -> None:
    line = refused(owner_cli, "app", "secrets", "keeper", "--delete", "-a", OWNER)
    assert line.startswith("error [no_secrets]: app 'keeper' has no secrets to remove"), line
