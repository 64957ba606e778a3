"""Each tx's signature is verified once by a node (issue 24, conc20).

A compact proposal read ahead of the TXS frames waiting in an inbox is rebuilt from txs
fetched of its proposer, which the block check verifies (they were not admitted); their
own frames, handled later, were then decoded and verified again at admission: twice the
signature work for each. The block check now hands its verified txs to the admission,
which admits their copies for a dict look-up, still through the mempool.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fluxchain.core import crypto
from fluxchain.core import tx as tx_module
from fluxchain.core.block import Block
from fluxchain.core.tx import Transfer, Tx
from fluxchain.node.admission import TxAdmission
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.store.chain import Chain
from tests.support.chain import Builder, NoGossip, funded_key, node_hot_key, open_chain

TXS = 24


@pytest.fixture
def proposed(tmp_path: Path) -> Iterator[tuple[Chain, Block]]:
    """A chain at genesis and its block 1 of TXS transfers, none admitted by the node."""
    chain = open_chain(tmp_path / "node")
    try:
        yield chain, block_of_transfers(Builder(chain))
    finally:
        chain.close()


def block_of_transfers(builder: Builder) -> Block:
    """The next block of TXS transfers of one sender (not admitted by the node)."""
    sender = funded_key()
    txs = [builder.tx(sender, Transfer(bytes([i]) * 20, 10**8)) for i in range(1, TXS + 1)]
    block, _commit = builder.block(txs)
    return block


def count_signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record the id of every tx whose signature is verified from here on, by any path."""
    checked: list[bytes] = []
    original = Tx.signature_valid
    first_invalid = crypto.first_invalid

    def counted(tx: Tx) -> bool:
        checked.append(tx.id)
        return original(tx)

    def counted_first_invalid(
        keys: Sequence[bytes], digests: Sequence[bytes], signatures: Sequence[bytes]
    ) -> int | None:
        """A block's signatures checked in one go (`check_signatures`): each one checked
        up to the first bad one counts."""
        bad = first_invalid(keys, digests, signatures)
        checked.extend(signatures[: len(signatures) if bad is None else bad + 1])
        return bad

    monkeypatch.setattr(Tx, "signature_valid", counted)
    monkeypatch.setattr(tx_module, "first_invalid", counted_first_invalid)
    return checked


def validator(chain: Chain) -> tuple[Driver, NodeService]:
    service = NodeService(chain)
    driver = Driver(
        chain,
        service,
        node_hot_key(0),
        None,
        NoGossip(),
        checked_txs=service.admission.checked,
    )
    return driver, service


def test_a_tx_verified_by_a_block_check_is_not_verified_again_when_its_frame_arrives(
    proposed: tuple[Chain, Block], monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, block = proposed
    driver, service = validator(chain)
    checks = count_signature_checks(monkeypatch)
    execution = driver._execute(block.encode(), block.hash())
    assert execution is not None, "the block is valid"
    assert len(checks) == TXS
    checks.clear()
    driver._abort_pending()  # the round aborts: the txs wait in the pool for another
    for raw in block.txs:  # their TXS frames, read after the proposal
        tx = service.submit(raw, from_peer=True, peer="p")
        assert tx.id in service.mempool, "still pooled, as a tx admitted in full is"
    assert checks == [], f"{len(checks)} signatures verified a second time"
    admission = service.admission
    assert chain.signatures_verified == TXS  # what an operator reads at the node's stop
    assert admission.signatures_verified == 0
    assert admission.block_verified_taken == TXS
    assert all(tx_id in admission.checked for tx_id in execution.tx_ids)


def test_txs_a_block_check_verified_stay_fetchable_by_id_until_admitted_or_committed(
    proposed: tuple[Chain, Block],
) -> None:
    """A peer rebuilding the block (or its re-proposal, once the round aborted) can have
    them of us (`Node._gather_for_block`); a committed one is dropped."""
    chain, block = proposed
    driver, service = validator(chain)
    execution = driver._execute(block.encode(), block.hash())
    assert execution is not None
    driver._abort_pending()
    admission = service.admission
    ids = execution.tx_ids
    assert [admission.verified_tx(tx_id) for tx_id in ids] == list(block.txs)
    admission.note_committed(ids[:3])
    assert [admission.verified_tx(tx_id) for tx_id in ids[:3]] == [None] * 3
    with pytest.raises(Exception, match="already confirmed"):
        admission.admit(block.txs[0])  # refused unchecked, as before


def test_a_block_that_fails_its_check_leaves_no_tx_to_be_admitted_unverified(
    proposed: tuple[Chain, Block], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer cannot have us keep junk: only a block check that passed whole records its
    txs (here one signature of the block is bad)."""
    chain, block = proposed
    driver, service = validator(chain)
    first_invalid = crypto.first_invalid
    bad = Tx.decode(block.txs[5], chain.params.max_tx_bytes).signature

    def one_bad(
        keys: Sequence[bytes], digests: Sequence[bytes], signatures: Sequence[bytes]
    ) -> int | None:
        """As `crypto.first_invalid`, with `bad` refused too."""
        flagged = next((i for i, signature in enumerate(signatures) if signature == bad), None)
        found = first_invalid(keys, digests, signatures)
        return found if flagged is None or (found is not None and found < flagged) else flagged

    monkeypatch.setattr(tx_module, "first_invalid", one_bad)
    assert driver._execute(block.encode(), block.hash()) is None, "the block is invalid"
    admission = service.admission
    assert all(admission.verified_tx(tx_id) is None for tx_id in block.tx_ids())
    admission.admit(block.txs[0])
    assert admission.signatures_verified == 1 and admission.block_verified_taken == 0


def test_the_block_checked_txs_are_bounded_oldest_out_first(
    proposed: tuple[Chain, Block],
) -> None:
    chain, block = proposed
    admission = TxAdmission(chain, verified_capacity=5)
    txs = [Tx.decode(raw, chain.params.max_tx_bytes) for raw in block.txs[:8]]
    admission.note_verified(txs)
    assert [admission.verified_tx(tx.id) is not None for tx in txs] == [False] * 3 + [True] * 5
    admission.admit(txs[0].raw)  # pushed out: admitted in full
    admission.admit(txs[7].raw)
    assert admission.signatures_verified == 1 and admission.block_verified_taken == 1
