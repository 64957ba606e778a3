"""Accounts: balances and nonces, fees, and TRANSFER.

An account exists once it has been credited or has sent a transaction; reading an
unknown address gives a zero account, so nothing needs creating explicitly.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final

from fluxchain.core.context import BlockContext
from fluxchain.core.encoding import MAX_AMOUNT
from fluxchain.core.errors import Reason, TxError
from fluxchain.core.frozen import draft_class
from fluxchain.core.records import ACCOUNT, EMPTY_ACCOUNT, Account, account_key
from fluxchain.core.state import State
from fluxchain.core.tx import Transfer, Tx, TxKind


def get_account(state: State, address: bytes) -> Account:
    """The account at `address` (zero balance and nonce if it never appeared)."""
    account: Account | None = state.get(account_key(address))
    return EMPTY_ACCOUNT if account is None else account


def changed_accounts(changes: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
    """The addresses whose accounts a block's state writes (`Execution.changes`, in key
    order) changed: their balance or nonce moved."""
    start = bisect.bisect_left(changes, (ACCOUNT,))
    out = []
    for key, _ in changes[start:]:
        if not key.startswith(ACCOUNT):
            break  # key order: the account writes are one run
        out.append(key[len(ACCOUNT) :])
    return out


def credit(state: State, address: bytes, amount: int) -> None:
    """Add `amount` to a balance. Supply is bounded far below MAX_AMOUNT by genesis."""
    key = account_key(address)
    account: Account = state.get(key) or EMPTY_ACCOUNT
    balance = account.balance + amount
    assert balance <= MAX_AMOUNT, "supply exceeds the encodable range"
    state.put(key, Account(balance, account.nonce))


def debit(state: State, address: bytes, amount: int) -> None:
    """Take `amount` from a balance; raise insufficient_funds if it is not there."""
    key = account_key(address)
    account: Account = state.get(key) or EMPTY_ACCOUNT
    if account.balance < amount:
        raise TxError(
            Reason.INSUFFICIENT_FUNDS,
            f"balance {account.balance} is below the {amount} this needs",
        )
    state.put(key, Account(account.balance - amount, account.nonce))


def process_fee_and_nonce(ctx: BlockContext, tx: Tx, spend: int = 0) -> None:
    """First step of every tx: the nonce must be the next one, and the fee is taken, with
    `spend` more that the tx moves out of the account (a transfer's amount) in the same
    write."""
    key = account_key(tx.sender_address)
    account: Account = ctx.state.get(key) or EMPTY_ACCOUNT
    # check: the nonce orders a sender's txs and makes each one apply at most once
    if tx.nonce != account.nonce:
        raise TxError(Reason.NONCE_MISMATCH, f"nonce {tx.nonce}, expected {account.nonce}")
    # check: the fee is covered by the balance
    if account.balance < tx.fee:
        raise TxError(
            Reason.INSUFFICIENT_FUNDS, f"balance {account.balance} does not cover fee {tx.fee}"
        )
    balance = account.balance - tx.fee
    # check: so is what the tx spends, after the fee
    if balance < spend:
        raise TxError(
            Reason.INSUFFICIENT_FUNDS, f"balance {balance} is below the {spend} this needs"
        )
    ctx.state.put(key, Account(balance - spend, account.nonce + 1))
    # The base fee is burnt, not paid: a proposer filling its own blocks pays it too.
    # min_fee >= base_fee (genesis rule) and fee-free kinds carry no fee: min() burns
    # exactly base_fee from every fee-paying tx.
    base = min(tx.fee, ctx.params.base_fee)
    ctx.burned += base
    ctx.fees += tx.fee - base


def burn_from_fee(ctx: BlockContext, tx: Tx, charge: int) -> None:
    """Burn `charge` out of `tx`'s tip (its fee above the base fee): work the tx makes every
    node do costs the sender even in its own blocks. Check, before any mutation of the
    handler, that tx.fee covers `min_fee + charge`; raise relocation_fee_too_low if not."""
    if not charge:
        return  # the fee floor itself is checked statelessly (check_stateless)
    needed = ctx.params.min_fee + charge
    if tx.fee < needed:
        raise TxError(
            Reason.RELOCATION_FEE_TOO_LOW,
            f"fee {tx.fee} is below the {needed} that this tx's re-placement work costs",
        )
    ctx.fees -= charge
    ctx.burned += charge


def process_transfer(ctx: BlockContext, tx: Tx) -> None:
    """A whole TRANSFER, its fee and nonce included: the commonest tx reads and writes its
    sender once."""
    payload: Transfer = tx.payload
    deposit = 0
    to_key = account_key(payload.to)
    # Read once: the sender's write below cannot change it (a transfer to oneself is
    # refused statelessly), and a new payee's miss costs a walk of the state tree.
    payee: Account | None = ctx.state.get(to_key)
    if payee is None:
        # check: a new account is paid for: every node keeps it forever, so it takes at
        # least account_deposit to exist and the sender burns that much more on top
        if payload.amount < ctx.params.account_deposit:
            raise TxError(
                Reason.BELOW_ACCOUNT_DEPOSIT,
                f"a transfer creating an account moves at least {ctx.params.account_deposit}",
            )
        deposit = ctx.params.account_deposit
    process_fee_and_nonce(ctx, tx, payload.amount + deposit)
    ctx.burned += deposit
    # as `credit`, from the account read above
    account = EMPTY_ACCOUNT if payee is None else payee
    balance = account.balance + payload.amount
    assert balance <= MAX_AMOUNT, "supply exceeds the encodable range"
    ctx.state.put(to_key, Account(balance, account.nonce))


def process_transfers(ctx: BlockContext, txs: Sequence[Tx], start: int) -> int:
    """Apply the run of TRANSFERs that begins at `txs[start]` as `process_transfer` would
    one by one, and return the index of the first tx it did not apply: the end of the
    run (another kind, or the end of the block) or the first transfer that `process_transfer`
    would refuse, which the caller then applies by the general path (raising its error).

    Why: the commonest block is thousands of transfers, and the per-tx path costs about
    ten Python calls each (handler, fee and nonce step, keys, reads, two records, two
    writes). Here each account a run touches is read once, its (balance, nonce) kept in a
    local table while the run goes on, and written once at the end, as one record: the
    same final records, fees and burns as tx by tx (transfers emit no events), so the
    same state root. For block import only (`execute`): the writes are not journalled
    per tx. A table with a derived index (`State.watch`) takes the per-tx path."""
    state = ctx.state
    if state.watcher(ACCOUNT) is not None:
        return start
    get = state.get
    deposit = ctx.params.account_deposit
    base_fee = ctx.params.base_fee
    transfer = TxKind.TRANSFER
    # address -> (balance, nonce) of every account this run has written so far (keyed by
    # the address the tx holds: the state's key is built once an address, not once a tx)
    touched: dict[bytes, tuple[int, int]] = {}
    fees = burned = 0
    end = len(txs)
    # A for loop, not a while: CPython 3.11 specializes a function's bytecode on its
    # 8th call or a for loop's 8th turn, never on a while loop's, and this runs once a
    # block (measured: 7k instructions a transfer more while unspecialized).
    for i in range(start, end):
        tx = txs[i]
        payload: Transfer = tx.payload
        if payload.KIND is not transfer:
            break
        amount = payload.amount
        # the payee, read once (a transfer to oneself is refused statelessly)
        to = payload.to
        payee = touched.get(to)
        if payee is None:
            record: Account | None = get(ACCOUNT + to)
            if record is None:
                # a new account costs the deposit (`process_transfer`'s check)
                if amount < deposit:
                    break
                payee, spend = (0, 0), amount + deposit
            else:
                payee, spend = (record.balance, record.nonce), amount
        else:
            spend = amount
        source = tx.sender_address
        sender = touched.get(source)
        if sender is None:
            account: Account = get(ACCOUNT + source) or EMPTY_ACCOUNT
            sender = (account.balance, account.nonce)
        balance, nonce = sender
        fee = tx.fee
        credited = payee[0] + amount
        # `process_fee_and_nonce`'s checks: the next nonce, the fee and then what the tx
        # spends (one test: a balance short of the fee leaves less than the 0 or more it spends),
        # and the bound that the per-tx path asserts on a credit
        if tx.nonce != nonce or balance - fee < spend or credited > MAX_AMOUNT:
            break
        touched[source] = (balance - fee - spend, nonce + 1)
        touched[to] = (credited, payee[1])
        base = fee if fee < base_fee else base_fee
        burned += base + spend - amount
        fees += fee - base
    else:
        i = end
    _write_accounts(state, touched)
    ctx.burned += burned
    ctx.fees += fees
    return i


def _write_accounts(state: State, accounts: dict[bytes, tuple[int, int]]) -> None:
    """Put the account of each address in `accounts` (address -> (balance, nonce)), each
    built as `Account(balance, nonce)` builds it for half the cost: the slots filled by
    plain stores, then the object frozen (core/frozen.py)."""
    put = state.put
    for address, (balance, nonce) in accounts.items():
        account = _ACCOUNT_DRAFT()
        account.balance = balance
        account.nonce = nonce
        account.__class__ = Account
        put(ACCOUNT + address, account)


_ACCOUNT_DRAFT: Final = draft_class(Account)
