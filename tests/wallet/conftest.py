"""Wallet test kit: a single-process devnet on loopback and a subprocess CLI driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.wait import NodeStatus, wait_until
from wallet.hd import INSECURE_TEST_MNEMONIC

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
FAST_SCRYPT = "16384"  # the minimum scrypt cost: keeps each CLI call fast in tests
START_DEADLINE_S = 30.0
CLI_TIMEOUT_S = 90.0
# Subprocesses cache bytecode outside the tree even when PYTHONDONTWRITEBYTECODE is set:
# compiling the wallet and the core on every CLI call would double each call's cost.
PYCACHE = Path(tempfile.gettempdir()) / "fluxchain-wallet-tests-pycache"


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PYTHONPYCACHEPREFIX=str(PYCACHE), PYTHONPATH=str(REPO))
    return env


@dataclass
class DevNode:
    url: str
    home: Path
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _status(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/status", timeout=1) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except OSError:
        return None


@pytest.fixture(scope="module")
def devnode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    """tests/wallet/devnode.py on an ephemeral port; always stopped at the end."""
    root = tmp_path_factory.mktemp("devnode")
    port_file, log = root / "port", root / "devnode.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.wallet.devnode",
                "--port",
                "0",
                "--home",
                str(root / "home"),
                "--port-file",
                str(port_file),
            ],
            cwd=REPO,
            env=subprocess_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    node = DevNode("", root / "home", log, process)

    def answering() -> bool:
        if process.poll() is not None:
            pytest.fail(f"devnode exited with {process.returncode}:\n{node.log_tail()}")
        if not port_file.exists():
            return False
        node.url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        status = _status(node.url)
        return status is not None and status["height"] >= 1

    try:
        wait_until(
            answering,
            START_DEADLINE_S,
            "devnode to answer /status",
            nodes=lambda: [NodeStatus("devnode", process.poll() is None, logs=(log,))],
            poll_s=0.05,
        )
        yield node
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Cli:
    """Runs `python -m wallet` (flux-wallet) as a subprocess with a private wallet directory."""

    wallet_dir: Path
    node_url: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = subprocess_env()
        env.update(
            FLUX_NODE=self.node_url,
            FLUX_WALLET_DIR=str(self.wallet_dir),
            FLUX_WALLET_PASSWORD=PASSWORD,
        )
        if "FLUX_TRUST_GENESIS" not in self.extra_env:
            self.extra_env.update(trusting(self._node_genesis()))
        env.update(self.extra_env)
        return env

    def _node_genesis(self) -> Path:
        """The genesis of the chain under test, as its first node serves it: the test's
        own devnet is what its wallet trusts (a user compares the hash, or has the file)."""
        path = self.wallet_dir.parent / f"{self.wallet_dir.name}-genesis.json"
        if not path.exists():
            url = self.node_url.split(",")[0].rstrip("/") + "/genesis"
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(body["genesis"]))
        return path

    def run(
        self, *args: str, expect: int = 0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "wallet", *args],
            check=False,
            cwd=REPO,
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
        assert proc.returncode == expect, (
            f"flux-wallet {' '.join(args)} exited {proc.returncode}, expected {expect}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        return proc

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self.run("--json", *args, expect=expect).stdout)

    def error_line(self, *args: str, expect: int) -> str:
        """The last stderr line of a failing command (its one-line error)."""
        proc = self.run(*args, expect=expect)
        lines = proc.stderr.strip().splitlines()
        assert lines, proc.stdout
        return lines[-1]

    def import_devnet(self, accounts: str = "4-7") -> list[dict[str, Any]]:
        result = self.json(
            "import",
            "--mnemonic",
            INSECURE_TEST_MNEMONIC,
            "--accounts",
            accounts,
            "--scrypt-n",
            FAST_SCRYPT,
        )
        accounts_list: list[dict[str, Any]] = result["accounts"]
        return accounts_list

    def balance(self, account: str) -> int:
        return int(self.json("balance", account)["balance"])


def trusting(genesis: Path) -> dict[str, str]:
    """The environment of a wallet that verifies against the chain `genesis` starts (with
    the default trust period: a week on a devnet, docs/light-client.md §1)."""
    return {"FLUX_TRUST_GENESIS": str(genesis)}


@pytest.fixture
def cli(devnode: DevNode, tmp_path: Path) -> Cli:
    return Cli(tmp_path / "wallet", devnode.url)
