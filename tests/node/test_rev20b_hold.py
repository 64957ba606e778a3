"""rev20b: defences of conc20's block-checked txs and compact proposals ahead that held."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fluxchain.core.errors import TxError
from fluxchain.core.tx import Transfer
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from p2p.messages import Gossip, Kind
from p2p.peer import Inbox
from tests.support.chain import Builder, NoGossip, funded_key, node_hot_key, open_chain


def test_rev20b_a_block_checked_tx_is_still_judged_on_committed_state(tmp_path: Path) -> None:
    """A byzantine proposer's block (its round aborted) has us keep a tx; a committed
    block then spends that tx's nonce: its late copy, admitted without a signature check,
    is still refused by the mempool's state checks, so it is neither pooled nor relayed."""
    chain = open_chain(tmp_path / "node")
    try:
        builder = Builder(chain)
        sender = funded_key()
        kept = builder.tx(sender, Transfer(b"\x01" * 20, 10**8))
        block, _commit = builder.block([kept])
        service = NodeService(chain)
        driver = Driver(
            chain, service, node_hot_key(0), None, NoGossip(), checked_txs=service.admission.checked
        )
        assert driver._execute(block.encode(), block.hash()) is not None
        driver._abort_pending()
        assert service.admission.verified_tx(kept.id) == kept.raw
        builder.nonces[sender.public_key] = kept.nonce  # another tx at the same nonce
        builder.commit([builder.tx(sender, Transfer(b"\x02" * 20, 10**8))])
        with pytest.raises(TxError):
            service.submit(kept.raw, from_peer=True, peer="p")
        assert kept.id not in service.mempool
        assert service.admission.block_verified_taken == 1  # it did take the shortcut
    finally:
        chain.close()


def test_rev20b_compact_proposals_ahead_stay_within_the_inbox_bound_and_behind_earlier_votes() -> (
    None
):
    """A peer sending compact proposals behind a backlog cannot grow its inbox past the
    bound, nor pass the votes it sent before them; it reorders only its own frames."""

    async def main() -> list[Kind]:
        inbox = Inbox(20, 16)
        for i in range(16):
            inbox.put_nowait((Gossip(Kind.TXS, b"t%d" % i), b""))
        inbox.put_nowait((Gossip(Kind.VOTE, b"v"), b""))
        for i in range(3):
            inbox.put_nowait((Gossip(Kind.COMPACT_PROPOSAL, b"p%d" % i), b""))
        with pytest.raises(asyncio.QueueFull):
            inbox.put_nowait((Gossip(Kind.COMPACT_PROPOSAL, b"more"), b""))
        taken = []
        while not inbox.empty():
            message, _ = await inbox.get()
            assert isinstance(message, Gossip)
            taken.append(message.kind)
        return taken

    taken = asyncio.run(main())
    assert taken[:4] == [Kind.VOTE, *[Kind.COMPACT_PROPOSAL] * 3]
    assert taken[4:] == [Kind.TXS] * 16
