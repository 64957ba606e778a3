"""Serving GET_SNAPSHOTS must not cost a scan of every snapshot chunk the node stores.

Found by the issue 23 state-sync review (review23s). A node answers each GET_SNAPSHOTS
(Node.snapshot_offers, at 1/s and a burst of 5 per peer, from up to 40 inbound peers) by
listing its snapshot heights with `ChainDB.snapshot_heights`, which walks every key under
the snapshot prefix. LevelDB keeps values inline with keys, so walking the keys of
multi-MiB chunks reads them all: a few-byte frame makes the node read every stored
snapshot (the newest few states, whole) again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fluxchain.store.db import ChainDB


class _CountingDB:
    """The plyvel database, counting the records its iterators walk."""

    def __init__(self, db: Any) -> None:
        self._inner = db
        self.walked = 0

    def iterator(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for item in self._inner.iterator(*args, **kwargs):
            self.walked += 1
            yield item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_listing_snapshots_for_a_peer_does_not_walk_every_stored_chunk(tmp_path: Path) -> None:
    """Attack: a peer sends GET_SNAPSHOTS in a loop; each answer walks every part of every
    snapshot kept. The records walked must not grow with the number of chunks."""
    db = ChainDB(tmp_path / "data")
    try:
        chunks = 2000
        for height in (100, 200, 300):
            db.write_snapshot(height, [b"manifest"] + [b"c" * 64] * chunks, keep=3)
        counting = _CountingDB(db._db)
        db._db = counting
        assert db.snapshot_heights() == [100, 200, 300]
        # A handful of records per snapshot is what listing three heights needs.
        assert counting.walked <= 3 * 4, f"{counting.walked} records walked to list 3 heights"
    finally:
        db._db = getattr(db._db, "_inner", db._db)
        db.close()
