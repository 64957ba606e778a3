"""rev18b: held18b's parked-tx defences that held under review."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.core.accounts import changed_accounts
from fluxchain.core.block import Block
from fluxchain.core.crypto import SigningKey, address_of
from fluxchain.core.errors import TxError
from fluxchain.core.params import COIN
from fluxchain.core.records import ACCOUNT
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.mempool import Mempool
from fluxchain.node.service import NodeService
from tests.support.chain import Builder, funded_key, history_genesis, open_chain
from tests.support.commits import commit_to
from wallet.hd import INSECURE_TEST_MNEMONIC, account_path, derive_key


def _unfunded(index: int) -> SigningKey:
    return derive_key(INSECURE_TEST_MNEMONIC, account_path(index))


def test_rev18b_changed_accounts_name_every_balance_or_nonce_a_block_moved(
    tmp_path: Path,
) -> None:
    """Fees, the proposer's and validators' rewards at epoch ends, senders, recipients:
    every account whose record differs after a block is in `changed_accounts`."""
    chain = open_chain(tmp_path / "home", history_genesis())
    try:
        b = Builder(chain)
        senders = [funded_key(), funded_key(2)]
        epoch = chain.params.epoch_length
        for height in range(1, 2 * epoch + 2):
            before = dict(chain.state.items(ACCOUNT))
            txs = [b.transfer(key, b"\x20" * 19 + bytes([height])) for key in senders]
            block, commit = b.block(txs)
            assert not b.rejected
            execution = chain.import_block(Block.decode(block.encode(), 1 << 30, 1 << 20), commit)
            b.last_commit = commit
            after = dict(chain.state.items(ACCOUNT))
            moved = {
                key[len(ACCOUNT) :]
                for key in before.keys() | after.keys()
                if before.get(key) != after.get(key)
            }
            assert moved <= set(changed_accounts(execution.changes)), f"height {height}"
    finally:
        chain.close()


def test_rev18b_a_parked_tx_a_block_commits_is_checked_and_then_forgotten(
    tmp_path: Path,
) -> None:
    """A parked tx is in `checked` (the import skips its decode and signature) and a
    block that commits it while it is parked here (funding and all) forgets it."""
    chain = open_chain(tmp_path / "home")
    try:
        service = NodeService(chain, Mempool())
        admission = service.admission
        b = Builder(chain)
        poor = _unfunded(97)
        pay = Tx.create(poor, chain.params.chain_id, 0, 10_000, Transfer(b"\x21" * 20, COIN, b""))
        with pytest.raises(TxError):
            service.submit(pay.raw, from_peer=True)
        assert admission.is_parked(pay.id) and pay.id in admission.checked
        fund = b.transfer(funded_key(), address_of(poor.public_key), 2 * COIN)
        commit_to(service, b, [fund, pay])  # a proposer that had it funded in one block
        assert pay.id not in admission.checked and not admission.is_parked(pay.id)
        assert pay.id not in service.mempool
        with pytest.raises(TxError):
            service.submit(pay.raw, from_peer=True)  # a late copy: already_known
        assert not admission.is_parked(pay.id)
    finally:
        chain.close()
