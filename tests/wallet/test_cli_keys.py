"""Key commands in-process (no node needed): create, import, list, address, export, help."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from fluxchain.core.crypto import address_of, encode_address
from tests.support.ports import closed_port
from tests.wallet.conftest import FAST_SCRYPT, PASSWORD
from wallet import cli as wallet_cli
from wallet.cli import keys as key_commands
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key
from wallet.keystore import KEYSTORE_FILE

WALLET_DIR = Path(__file__).resolve().parents[2] / "wallet"


def invoke(
    wallet_dir: Path, *args: str, input: str | None = None, env: dict[str, str | None] | None = None
) -> Result:
    """Run the CLI in-process; an env value None unsets the variable (prompts instead)."""
    base: dict[str, str | None] = {
        "FLUX_WALLET_DIR": str(wallet_dir),
        "FLUX_NODE": f"http://127.0.0.1:{closed_port()}",
        "FLUX_WALLET_PASSWORD": PASSWORD,
    }
    if env is not None:
        base.update(env)
    return CliRunner().invoke(wallet_cli.main, list(args), input=input, env=base)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_shows_the_mnemonic_once_and_asks_for_words_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(key_commands, "new_mnemonic", lambda bits: INSECURE_TEST_MNEMONIC)
    monkeypatch.setattr(key_commands, "_confirm_positions", lambda count: [0, 11])
    args = ("create", "--hrp", "tflux", "--words", "12", "--scrypt-n", FAST_SCRYPT)
    # interactive: password twice, then words #1 and #12
    typed = f"{PASSWORD}\n{PASSWORD}\nabandon\nabandon\n"
    wrong = invoke(tmp_path, *args, input=typed, env={"FLUX_WALLET_PASSWORD": None})
    assert wrong.exit_code == 1
    assert "error [aborted]: word #12 does not match" in wrong.stderr
    assert not (tmp_path / KEYSTORE_FILE).exists()  # nothing written

    ok = invoke(tmp_path, *args, input="abandon\nabout\n")
    assert ok.exit_code == 0, ok.output
    assert "1. abandon" in ok.stdout and "12. about" in ok.stdout
    first = encode_address(
        address_of(derive_key(INSECURE_TEST_MNEMONIC, account_path(0)).public_key), "tflux"
    )
    assert first in ok.stdout
    listed = as_json(invoke(tmp_path, "--json", "list"))
    assert [a["address"] for a in listed["accounts"]] == [first]
    assert "abandon" not in (tmp_path / KEYSTORE_FILE).read_text()

    again = invoke(tmp_path, *args, "--yes")
    assert again.exit_code == 1 and "error [wallet_exists]" in again.stderr


def test_short_password_is_refused(tmp_path: Path) -> None:
    result = invoke(
        tmp_path, "create", "--yes", "--hrp", "tflux", env={"FLUX_WALLET_PASSWORD": "x"}
    )
    assert result.exit_code == 1 and "error [weak_password]" in result.stderr


def test_create_json_for_scripts(tmp_path: Path) -> None:
    created = as_json(
        invoke(tmp_path, "--json", "create", "--yes", "--accounts", "3", "--scrypt-n", FAST_SCRYPT)
    )
    assert len(created["mnemonic"].split()) == 24
    # the node was unreachable: mainnet's prefix, said on stderr
    assert [a["address"][:5] for a in created["accounts"]] == ["flux1"] * 3
    assert [a["path"] for a in created["accounts"]] == [account_path(i) for i in range(3)]


def test_import_add_list_address_export(tmp_path: Path) -> None:
    imported = as_json(
        invoke(
            tmp_path, "--json", "import", "--mnemonic", INSECURE_TEST_MNEMONIC,
            "--accounts", "0,4-5", "--hrp", "tflux", "--scrypt-n", FAST_SCRYPT,
        )
    )  # fmt: skip
    assert [a["name"] for a in imported["accounts"]] == ["account0", "account4", "account5"]
    added = as_json(invoke(tmp_path, "--json", "add-account"))
    assert added["name"] == "account6" and added["path"] == account_path(6)
    raw = "11" * 32
    as_json(invoke(tmp_path, "--json", "import", "--key", raw, "--name", "cold"))
    listed = as_json(invoke(tmp_path, "--json", "list"))
    assert [a["name"] for a in listed["accounts"]] == [
        "account0", "account4", "account5", "account6", "cold"
    ]  # fmt: skip
    key4 = derive_key(INSECURE_TEST_MNEMONIC, account_path(4))
    address4 = encode_address(address_of(key4.public_key), "tflux")
    assert invoke(tmp_path, "address", "account4").stdout.strip() == address4
    assert invoke(tmp_path, "address", "4").stdout.strip() == address4

    exported = as_json(invoke(tmp_path, "--json", "export", "account4", "--yes"))
    assert exported["secret"] == key4.secret.hex()
    assert as_json(invoke(tmp_path, "--json", "export", "cold", "--yes"))["secret"] == raw
    words = as_json(invoke(tmp_path, "--json", "export", "--mnemonic", "--yes"))
    assert words["mnemonic"] == INSECURE_TEST_MNEMONIC
    declined = invoke(tmp_path, "export", "account4", input="n\n")
    assert declined.exit_code == 1 and key4.secret.hex() not in declined.output

    wrong = invoke(tmp_path, "export", "--yes", env={"FLUX_WALLET_PASSWORD": "not it at all"})
    assert wrong.exit_code == 9
    assert wrong.stderr.strip() == "error [wrong_password]: wrong password for this wallet " \
        "(nothing was changed)"  # fmt: skip

    # a plain number is a count, as in `create --accounts N`
    counted = as_json(
        invoke(
            tmp_path / "counted", "--json", "import", "--mnemonic", INSECURE_TEST_MNEMONIC,
            "--accounts", "3", "--hrp", "tflux", "--scrypt-n", FAST_SCRYPT,
        )
    )  # fmt: skip
    assert [a["path"] for a in counted["accounts"]] == [account_path(i) for i in range(3)]

    exists = invoke(tmp_path, "import", "--mnemonic", INSECURE_TEST_MNEMONIC)
    assert exists.exit_code == 1 and "error [wallet_exists]" in exists.stderr
    bad = invoke(tmp_path / "other", "import", "--mnemonic", "abandon " * 12)
    assert bad.exit_code == 1 and "error [bad_input]" in bad.stderr and "checksum" in bad.stderr


def test_no_wallet_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke(tmp_path, "address")
    assert result.exit_code == 1
    assert result.stderr.startswith("error [no_wallet]: no wallet in ")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(_commands(command, (*prefix, name)))
    return out


COMMANDS = _commands(wallet_cli.main)


def test_the_issue_commands_exist() -> None:
    wanted = {
        ("create",), ("import",), ("list",), ("address",), ("export",), ("balance",), ("send",),
        ("node", "keygen"), ("node", "register"), ("node", "update"), ("node", "unregister"),
        ("node", "status"), ("nodes", "list"), ("app", "validate"), ("app", "price"),
        ("app", "register"), ("app", "update"), ("app", "extend"), ("app", "cancel"),
        ("app", "status"), ("apps", "list"), ("tx", "status"),
    }  # fmt: skip
    assert wanted <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_help_with_examples_on_every_command(tmp_path: Path, path: tuple[str, ...]) -> None:
    result = invoke(tmp_path, *path, "--help")
    assert result.exit_code == 0, result.output
    command = wallet_cli.main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]  # type: ignore[assignment]
    if not isinstance(command, click.Group):
        assert "Example" in result.output, f"flux-wallet {' '.join(path)} --help has no example"


FORBIDDEN = ("fluxchain.node", "fluxchain.store", "fluxchain.api", "consensus", "p2p")


@pytest.mark.parametrize(
    "module", sorted(WALLET_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(WALLET_DIR))
)
def test_wallet_imports_only_core_types(module: Path) -> None:
    """DESIGN §1: wallet depends on fluxchain.core and talks to a node over HTTP."""
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not name.startswith(FORBIDDEN), f"{module} imports {name}"
