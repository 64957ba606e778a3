"""Any peer makes a node keep 36 MB of id layouts for good (rev16d 2).

Since wan16b, `split_ids` unpacks a TX_IDS or GET_TXS id list with a `struct.Struct` of
`count` "32s" codes, cached per count (`_ids_layout`, lru_cache of 256). A layout of
4,096 ids is about 140 KB (a format code per id, and its format string), so 256 frames of
valid, distinct lengths near MAX_TX_IDS_PER_ANNOUNCE leave about 36 MB held for the life
of the process (the layout is built at decoding, `TxIds.ids()`, before the id rate is
checked), and a peer cycling through more than 256 lengths makes every frame compile
one. What a user sees: a node's memory up by tens of MB from one peer's announcements.
Fix direction: unpack a long list in fixed chunks with one cached layout (say 64 ids),
so that what is kept does not grow with the count."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from p2p import messages
from p2p.messages import MAX_TX_IDS_PER_ANNOUNCE, TX_ID_SIZE, TxIds

pytestmark = pytest.mark.filterwarnings("error")

KEPT_BOUND = 4_000_000  # bytes: a few MB is plenty for any cache of id layouts


def test_rev16d_id_lists_of_many_lengths_leave_little_memory_held() -> None:
    # Layouts cached by earlier tests would not count: start from none.
    cache = getattr(messages, "_ids_layout", None)
    if cache is not None:
        cache.cache_clear()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for count in range(MAX_TX_IDS_PER_ANNOUNCE - 255, MAX_TX_IDS_PER_ANNOUNCE + 1):
            data = count.to_bytes(2, "big") * (count * TX_ID_SIZE // 2)
            assert len(TxIds(data).ids()) == count
            del data
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < KEPT_BOUND, (
        f"{kept / 1e6:.1f} MB still held after decoding 256 valid TX_IDS lists of "
        "distinct lengths: one cached struct layout per length"
    )
