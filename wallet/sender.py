"""Sending: choosing the nonce, submitting, remembering unconfirmed sends, waiting.

Nonces. The node reports an account's *committed* nonce; txs still in its mempool are
not counted there. So the wallet keeps `pending.json` in the wallet directory: for each
address, the sends it submitted that are not confirmed yet (nonce, tx id, what they
cost). The next nonce is the committed nonce plus the run of recorded sends just above
it that the node still reports as pending or confirmed; a recorded send the node no
longer knows (dropped, rejected) ends the run and is forgotten. A send the node holds
(`held`: refused for now, kept and offered to its mempool again after later blocks) may
still commit, so it keeps its nonce as a pending one does: a second tx at that nonce
would race it. So does a send the node let go of after relaying it (`evicted`: it may
still commit from a peer's pool), until the account's nonce passes it or the node says
it is confirmed or rejected (its nonce spent by another tx). Two quick `--no-wait`
sends therefore get consecutive nonces, and the pending costs are subtracted from the
balance before the next send's funds check. The choice and the submission happen under
an exclusive lock on the wallet directory, so two wallet processes cannot pick the same
nonce. A conflict with another wallet holding the same key (the node says the nonce is
spent, or already taken in its mempool) is reported as `nonce_conflict`.

Waiting polls `GET /txs/{id}` (50 ms backing off to 0.5 s) until the tx is confirmed or
rejected, or a deadline (an evicted tx is waited for: it may still commit).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fluxchain.core.tx import Tx
from wallet.client import NodeClient
from wallet.errors import NodeApiError, WalletError, WalletReason, rejected
from wallet.keystore import write_atomic

PENDING_FILE: Final = "pending.json"
LOCK_FILE: Final = ".lock"
# Polls start fast (a devnet block may already be out) and back off to a steady pace:
# one cheap GET per poll, at most two a second.
POLL_FIRST_S: Final = 0.05
POLL_MAX_S: Final = 0.5
POLL_GROWTH: Final = 1.5
PENDING_MAX_AGE_S: Final = 24 * 3600  # a record older than this is dropped unseen
# What the node says when a nonce is not usable: it is spent, another tx holds it in the
# mempool, or it is too far ahead.
NONCE_REASONS: Final = frozenset({"nonce_mismatch", "replacement_underpriced", "nonce_too_far"})
# A held answer for one of these is a conflict all the same (an older node holds such a tx,
# rev20a 2): the nonce is spent or another tx holds it, so the wallet records nothing and
# keeps its record of the tx at that nonce. A nonce too far ahead takes no tx's place.
TAKEN_REASONS: Final = frozenset({"nonce_mismatch", "replacement_underpriced"})
# A recorded send in one of these states still holds its nonce: it may commit.
LIVE: Final = frozenset({"pending", "held", "evicted", "confirmed"})


@dataclass(frozen=True, slots=True)
class PendingSend:
    nonce: int
    tx_id: str
    cost: int  # fee + amount / collateral / price: what the balance will lose
    sent_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "tx": self.tx_id, "cost": self.cost, "sent_ms": self.sent_ms}


@dataclass(frozen=True, slots=True)
class SendPlan:
    """What an account can spend now: the nonce to use and the balance net of pending sends."""

    nonce: int
    balance: int
    committed_balance: int
    pending: tuple[PendingSend, ...]


class Sender:
    """Sends txs from one wallet directory's accounts through one node."""

    def __init__(self, client: NodeClient, wallet_dir: Path) -> None:
        self.client = client
        self.wallet_dir = wallet_dir

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the wallet's nonces (released when the process dies)."""
        self.wallet_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.wallet_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def plan(self, address: str) -> SendPlan:
        """The next nonce and spendable balance of `address` (call under `locked`)."""
        account = self.client.account(address)
        records = sorted(self._load().get(address, []), key=lambda r: r.nonce)
        now_ms = int(time.time() * 1000)
        live: list[PendingSend] = []
        nonce = account.nonce
        for record in records:
            if record.nonce < account.nonce or record.nonce != nonce:
                continue  # spent, or past a gap: the run of usable nonces ended before it
            if now_ms - record.sent_ms > PENDING_MAX_AGE_S * 1000:
                continue
            status = self.client.tx(record.tx_id).get("status")
            if status not in LIVE:
                break  # rejected or dropped: its nonce is free again
            live.append(record)
            nonce += 1
        self._store(address, live)
        balance = account.balance - sum(r.cost for r in live)
        return SendPlan(nonce, balance, account.balance, tuple(live))

    def submit(self, address: str, tx: Tx, cost: int) -> dict[str, Any]:
        """POST the tx; record it as pending (the node holds it, `held` or `pending`);
        the node's answer, `id` always set. Raise nonce_conflict or the node's reason."""
        try:
            answer = {**self.client.submit(tx.raw)}
        except NodeApiError as exc:
            if exc.reason in NONCE_REASONS:
                raise _nonce_conflict(tx, exc.reason, exc.message) from None
            if exc.status == 429:  # not now: nothing was taken, the nonce is still free
                raise WalletError(
                    exc.reason, f"the node is busy: {exc.message}", exit_code=exc.exit_code
                ) from None
            raise rejected(exc.reason, f"the node refused the tx: {exc.message}") from None
        if answer.get("status") == "held" and answer.get("reason") in TAKEN_REASONS:
            raise _nonce_conflict(tx, str(answer["reason"]), str(answer.get("message", "")))
        tx_id = answer["id"] = str(answer.get("id") or tx.id.hex())
        answer.setdefault("status", "pending")
        records = [r for r in self._load().get(address, []) if r.nonce != tx.nonce]
        records.append(PendingSend(tx.nonce, tx_id, cost + tx.fee, int(time.time() * 1000)))
        self._store(address, records)
        return answer

    def forget(self, address: str, tx_id: str) -> None:
        """Drop a recorded send once its outcome is known."""
        with self.locked():
            records = self._load().get(address, [])
            self._store(address, [r for r in records if r.tx_id != tx_id])

    def wait(
        self,
        tx_id: str,
        timeout_s: float,
        on_poll: Callable[[dict[str, Any], float], None] | None = None,
    ) -> dict[str, Any]:
        """The confirmed tx's status body; raise the chain's reason if it was rejected."""
        deadline = time.monotonic() + timeout_s
        interval = POLL_FIRST_S
        while True:
            status = self.client.tx(tx_id)
            state = status.get("status")
            if state == "confirmed":
                return status
            if state == "rejected":
                reason = str(status.get("reason") or "rejected")
                raise rejected(reason, f"rejected by the chain: {status.get('message', '')}")
            remaining = deadline - time.monotonic()
            if on_poll is not None:
                on_poll(status, max(0.0, remaining))
            if remaining <= 0:
                still = (
                    f"evicted from the node's pool [{status.get('reason')}] but may still "
                    "commit from a peer's, so its nonce stays taken"
                    if state == "evicted"
                    else f"still {state}"
                )
                raise WalletError(
                    WalletReason.TIMEOUT,
                    f"tx {tx_id} is {still} after {timeout_s:g} s; "
                    f"check later with `flux-wallet tx status {tx_id}`",
                )
            time.sleep(min(interval, remaining))
            interval = min(POLL_MAX_S, interval * POLL_GROWTH)

    # -- the record file -------------------------------------------------------------------

    def _load(self) -> dict[str, list[PendingSend]]:
        path = self.wallet_dir / PENDING_FILE
        try:
            raw = json.loads(path.read_text())
            return {
                address: [
                    PendingSend(int(r["nonce"]), str(r["tx"]), int(r["cost"]), int(r["sent_ms"]))
                    for r in records
                ]
                for address, records in raw.items()
            }
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError):
            # Only a cache of what the node also knows: a damaged record is rebuilt, not fatal.
            return {}

    def _store(self, address: str, records: list[PendingSend]) -> None:
        current = self._load()
        if records:
            current[address] = records
        else:
            current.pop(address, None)
        body = {a: [r.to_json() for r in rs] for a, rs in sorted(current.items())}
        write_atomic(self.wallet_dir / PENDING_FILE, (json.dumps(body, indent=1) + "\n").encode())


def _nonce_conflict(tx: Tx, reason: str, message: str) -> WalletError:
    return WalletError(
        WalletReason.NONCE_CONFLICT,
        f"nonce {tx.nonce} cannot be used: {message} ({reason}); another "
        "wallet may be sending from this account — retry, or pass --nonce",
    )
