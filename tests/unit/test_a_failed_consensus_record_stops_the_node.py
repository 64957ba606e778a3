"""Attack surface (review rev10): the disk refuses the consensus records a validator must
make durable before it signs: the signer's record (the double-sign guard) or the WAL.

Before, an OSError from either was "one bad input": logged, and the driver ran on,
deciding on a disk that had just lost writes (after a failed fsync a retried one can
report success for pages the kernel dropped); an OSError from the WAL's rewrite at the
first height ended the consensus task silently while the node kept serving. Now both stop
the node as a failed block write does (store_write_failed), and no signature leaves.
"""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

from consensus.signer import FileSignerStore, SignerGuard, SignerState
from fluxchain.core.errors import Reason, StoreError
from fluxchain.node.driver import Driver
from fluxchain.node.service import NodeService
from fluxchain.node.wal import ConsensusWal
from tests.support.chain import devnet_genesis, node_hot_key, open_chain


class RefusingStore(FileSignerStore):
    """A signer record on a disk that refuses every write."""

    def save(self, state: SignerState) -> None:
        raise OSError(errno.EIO, "Input/output error")


class RecordingGossip:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def broadcast_proposal(self, payload: bytes) -> None:
        self.sent.append(payload)

    def broadcast_vote(self, payload: bytes) -> None:
        self.sent.append(payload)


def _run_until_stopped(driver: Driver) -> None:
    async def scenario() -> None:
        driver.start()
        try:
            assert driver._task is not None
            await asyncio.wait_for(driver._task, 20)  # its loop ended: nothing more decided
        finally:
            await driver.stop()

    asyncio.run(scenario())


def test_a_signer_record_the_disk_refuses_stops_the_node_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "home")
    key = node_hot_key(0)
    guard = SignerGuard(key, devnet_genesis().chain_id, RefusingStore(tmp_path))
    gossip = RecordingGossip()
    told: list[StoreError] = []
    driver = Driver(chain, NodeService(chain), key, guard, gossip, on_storage_failure=told.append)
    try:
        _run_until_stopped(driver)
        assert [error.reason for error in told] == [Reason.STORE_WRITE_FAILED]
        assert gossip.sent == []  # the signature whose record failed never left
    finally:
        chain.close()


def test_a_wal_the_disk_refuses_at_the_first_height_stops_the_node(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "home")
    key = node_hot_key(0)

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    wal = ConsensusWal(tmp_path / "consensus.wal", fsync)
    guard = SignerGuard(key, devnet_genesis().chain_id, FileSignerStore(tmp_path))
    told: list[StoreError] = []
    driver = Driver(
        chain,
        NodeService(chain),
        key,
        guard,
        RecordingGossip(),
        wal=wal,
        on_storage_failure=told.append,
    )
    try:
        _run_until_stopped(driver)
        assert [error.reason for error in told] == [Reason.STORE_WRITE_FAILED]
    finally:
        wal.close()
        chain.close()
