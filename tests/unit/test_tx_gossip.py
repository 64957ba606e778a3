"""The TXS gossip frame's payload: a non-empty, bounded array of tx encodings."""

from __future__ import annotations

import pytest

from fluxchain.core.encoding import pack
from fluxchain.core.errors import DecodeError
from fluxchain.node.node import MAX_TXS_PER_FRAME, _decode_txs_payload


def test_a_batch_of_tx_encodings_decodes_in_order() -> None:
    assert _decode_txs_payload(pack([b"a", b"bc"])) == [b"a", b"bc"]


@pytest.mark.parametrize(
    "payload",
    [
        pack([]),  # nothing in it
        pack([b"a", 1]),  # not a byte string
        pack(b"a"),  # not an array
        pack([b"a"] * (MAX_TXS_PER_FRAME + 1)),  # over the bound
        pack([b"a"]) + b"\x00",  # trailing bytes
    ],
)
def test_malformed_batches_are_refused(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        _decode_txs_payload(payload)
