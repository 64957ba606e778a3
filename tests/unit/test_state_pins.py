"""`State.pin_committed`: before the tree takes a block's changes, the committed record of
every key the block writes or deletes is held in memory (the undo reads it), read from the
store only when it was not held already, and an absent one held as absent."""

from __future__ import annotations

from collections.abc import Iterator

from fluxchain.core.encoding import pack
from fluxchain.core.records import Account, account_key
from fluxchain.core.schema import new_state


class CountingStore:
    """A backing that counts the reads of each key."""

    def __init__(self, records: dict[bytes, bytes]) -> None:
        self.records = records
        self.reads: dict[bytes, int] = {}

    def get(self, key: bytes) -> bytes | None:
        self.reads[key] = self.reads.get(key, 0) + 1
        return self.records.get(key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.records.items() if k.startswith(prefix)))


def test_a_blocks_keys_are_pinned_reading_each_unheld_one_once() -> None:
    read, unread, absent, gone = (account_key(bytes([i]) * 20) for i in range(1, 5))
    store = CountingStore(
        {key: pack(Account(10, 1).to_fields()) for key in (read, unread, gone)}
    )
    state = new_state(store)
    assert state.get(read) == Account(10, 1)  # held from here on
    state.put(read, Account(5, 2))
    state.put(unread, Account(7, 0))  # written without being read
    state.put(absent, Account(3, 0))  # a new key
    state.delete(gone)
    state.pin_committed(state.pending_keys())
    assert store.reads == {read: 1, unread: 1, absent: 1, gone: 1}
    assert state.committed(read) == state.committed(unread) == Account(10, 1)
    assert state.committed(gone) == Account(10, 1)
    assert state.committed(absent) is None
    assert store.reads == {read: 1, unread: 1, absent: 1, gone: 1}, "pinned: no read again"
