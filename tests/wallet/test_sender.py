"""Nonce planning, submission errors and waiting, against a scripted node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fluxchain.core.params import COIN
from fluxchain.core.tx import Transfer, Tx
from fluxchain.genesis_builder import devnet_params
from tests.support.chain import funded_key
from tests.support.ports import closed_port
from wallet.client import Account, NodeClient
from wallet.errors import ExitCode, NodeApiError, WalletError
from wallet.sender import Sender

ADDRESS = "tflux1example"


class ScriptedNode(NodeClient):
    """Answers from dictionaries instead of HTTP."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1")
        self.nonce = 0
        self.balance = 100 * COIN
        self.statuses: dict[str, dict[str, Any]] = {}
        self.refuse: NodeApiError | None = None
        self.answer: dict[str, Any] = {"status": "pending"}
        self.submitted: list[bytes] = []

    def account(self, address: str) -> Account:
        return Account(address, self.balance, self.nonce)

    def tx(self, tx_id: str) -> dict[str, Any]:
        return self.statuses.get(tx_id, {"status": "unknown"})

    def submit(self, raw_tx: bytes) -> dict[str, Any]:
        if self.refuse is not None:
            raise self.refuse
        self.submitted.append(raw_tx)
        return self.answer


def signed(nonce: int) -> Tx:
    return Tx.create(funded_key(), devnet_params().chain_id, nonce, 1_000, Transfer(b"\1" * 20, 5))


def test_quick_sends_get_consecutive_nonces_and_hold_their_cost(tmp_path: Path) -> None:
    node = ScriptedNode()
    sender = Sender(node, tmp_path)
    with sender.locked():
        plan = sender.plan(ADDRESS)
        assert (plan.nonce, plan.balance) == (0, 100 * COIN)
        first = sender.submit(ADDRESS, signed(0), 5)["id"]
    node.statuses[first] = {"status": "pending"}
    plan = sender.plan(ADDRESS)
    assert plan.nonce == 1 and plan.balance == 100 * COIN - 5 - 1_000
    second = sender.submit(ADDRESS, signed(1), 5)["id"]
    node.statuses[second] = {"status": "pending"}
    assert sender.plan(ADDRESS).nonce == 2

    # the first is committed: the chain's nonce moves, its record goes
    node.nonce, node.statuses[first] = 1, {"status": "confirmed", "height": 3}
    plan = sender.plan(ADDRESS)
    assert plan.nonce == 2 and [p.nonce for p in plan.pending] == [1]
    # the second is dropped by the node: its nonce is free again
    node.statuses[second] = {"status": "rejected", "reason": "insufficient_funds"}
    plan = sender.plan(ADDRESS)
    assert plan.nonce == 1 and plan.pending == ()
    assert (tmp_path / "pending.json").stat().st_mode & 0o777 == 0o600


def test_api20_a_send_the_node_holds_keeps_its_nonce_until_it_commits(tmp_path: Path) -> None:
    """Issue 24 (api20 1): the node answered `held` (refused for now, kept and offered
    again: it may commit), so the send is recorded and its nonce is not free: a second tx
    at that nonce would race it. Once the node no longer holds it, the nonce is free."""
    node = ScriptedNode()
    node.answer = {"status": "held", "reason": "sender_limit", "message": "too many"}
    sender = Sender(node, tmp_path)
    answer = sender.submit(ADDRESS, signed(0), 5)
    assert answer["status"] == "held" and answer["reason"] == "sender_limit"
    held = answer["id"]
    assert held == signed(0).id.hex()
    node.statuses[held] = {"status": "held", "reason": "sender_limit"}
    plan = sender.plan(ADDRESS)
    assert plan.nonce == 1 and [p.tx_id for p in plan.pending] == [held]
    node.statuses[held] = {"status": "pending"}  # offered again and pooled
    assert sender.plan(ADDRESS).nonce == 1
    node.statuses[held] = {"status": "rejected", "reason": "sender_limit"}  # let go
    assert sender.plan(ADDRESS).nonce == 0


def test_damaged_record_file_is_only_a_cache(tmp_path: Path) -> None:
    (tmp_path / "pending.json").write_text("{not json")
    assert Sender(ScriptedNode(), tmp_path).plan(ADDRESS).nonce == 0


@pytest.mark.parametrize(
    ("reason", "expected", "code"),
    [
        ("nonce_mismatch", "nonce_conflict", ExitCode.NONCE_CONFLICT),
        ("replacement_underpriced", "nonce_conflict", ExitCode.NONCE_CONFLICT),
        ("nonce_too_far", "nonce_conflict", ExitCode.NONCE_CONFLICT),
        ("insufficient_funds", "insufficient_funds", ExitCode.INSUFFICIENT_FUNDS),
        ("fee_too_low", "fee_too_low", ExitCode.REJECTED),
    ],
)
def test_submission_refusals(tmp_path: Path, reason: str, expected: str, code: ExitCode) -> None:
    node = ScriptedNode()
    node.refuse = NodeApiError(400, reason, "no")
    with pytest.raises(WalletError) as info:
        Sender(node, tmp_path).submit(ADDRESS, signed(0), 5)
    assert (info.value.reason, info.value.exit_code) == (expected, code)
    assert not (tmp_path / "pending.json").exists()  # nothing recorded


def test_wait_outcomes(tmp_path: Path) -> None:
    node = ScriptedNode()
    sender = Sender(node, tmp_path)
    node.statuses["a"] = {"status": "confirmed", "height": 7, "events": []}
    assert sender.wait("a", 1.0)["height"] == 7
    node.statuses["b"] = {"status": "rejected", "reason": "app_exists", "message": "taken"}
    with pytest.raises(WalletError) as info:
        sender.wait("b", 1.0)
    assert info.value.reason == "app_exists" and info.value.exit_code == ExitCode.REJECTED
    assert "rejected by the chain: taken" in info.value.message
    node.statuses["c"] = {"status": "pending"}
    polls: list[float] = []
    with pytest.raises(WalletError) as info:
        sender.wait("c", 0.3, lambda status, left: polls.append(left))
    assert info.value.reason == "timeout" and info.value.exit_code == ExitCode.TIMEOUT
    assert len(polls) >= 2 and polls[-1] == 0.0


def test_unreachable_node() -> None:
    client = NodeClient(f"http://127.0.0.1:{closed_port()}", timeout_s=2)
    with pytest.raises(WalletError) as info:
        client.status()
    assert info.value.reason == "node_unreachable"
    assert info.value.exit_code == ExitCode.NODE_UNREACHABLE
    with pytest.raises(WalletError) as info:
        NodeClient("ftp://example.org")
    assert info.value.reason == "bad_input"
