"""Request bodies as the wire brings them: no content coding, a byte cap per route, and a
parse whose work the body's punctuation bounds before it starts.

The API is served with aiohttp's `auto_decompress` off and refuses a coded body (415
`unsupported_encoding`): inflated, 16 KiB of deflate is 16 MiB, so every byte bound
(`client_max_size`, the admission gate's) would count bytes the client never sent (rev19a).
No client of the API compresses (the wallet, the dashboard, the agent, the benches).

Parsing JSON costs per value, not per byte: 16 MiB of `[],` is 5.6 M values, ~1 s of the
event loop in `json.loads` and ~0.2 s in pydantic's own parser (~1.5 s more to report an
unknown field holding them). Every value after the first follows one of `, : [ {`, and a
valid tx body holds only hex strings, none of which contains one: so counting those bytes
(a memchr pass) bounds the parse, and a body with more than its model can hold is refused
unparsed (400 `bad_request`).
"""

from __future__ import annotations

from typing import Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from fluxchain.api.models import MAX_BATCH, MAX_BODY
from fluxchain.api.queries import ApiError
from fluxchain.core.errors import Reason

M = TypeVar("M", bound=BaseModel)

UNSUPPORTED_ENCODING: Final = "unsupported_encoding"  # a Content-Encoding other than identity
_SEPARATORS: Final = (b",", b":", b"[", b"{")
# Bytes one tx takes in a post besides its hex: quotes, a comma, indentation.
_TX_FRAMING: Final = 16
_ENVELOPE: Final = 1024  # the object around the txs, with any whitespace a client adds
# Separators allowed past a valid body's: a few unknown fields reach the model, whose
# error names them; a few dozen values cost the parse nothing.
_ROOM: Final = 16


def check_encoding(request: web.Request) -> None:
    """ApiError(415 `unsupported_encoding`) if `request` carries a coded body."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in ("", "identity") and request.body_exists:
        raise ApiError(
            415, UNSUPPORTED_ENCODING, f"Content-Encoding {coding!r}: send the body uncompressed"
        )


def check_size(size: int | None, cap: int) -> None:
    """ApiError(413 `too_large`) if a body of `size` bytes (None: not known yet) passes `cap`."""
    if size is not None and size > cap:
        raise ApiError(413, str(Reason.TOO_LARGE), f"request body over {cap} bytes")


def tx_body_cap(max_tx_bytes: int, txs: int) -> int:
    """The most bytes a post of `txs` txs of at most `max_tx_bytes` each can need (hex)."""
    return min(MAX_BODY, txs * (2 * max_tx_bytes + _TX_FRAMING) + _ENVELOPE)


# Separators of a valid body: `{"tx": ..}` `{` `:`; `{"txs": [..]}` `{` `:` `[` and a
# `,` between two txs.
SUBMIT_TX_SEPARATORS: Final = 2
SUBMIT_BATCH_SEPARATORS: Final = MAX_BATCH + 2


def parse_json(raw: bytes, model: type[M], max_separators: int) -> M:
    """`raw` as `model` (unknown fields refused), parsed only if it has at most
    `max_separators` of `, : [ {` (and a little room); ApiError(400 `bad_request`) otherwise."""
    if sum(raw.count(separator) for separator in _SEPARATORS) > max_separators + _ROOM:
        raise ApiError(
            400, "bad_request", f"body holds more JSON values than a {model.__name__} can"
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise ApiError(400, "bad_request", "body is not valid JSON") from None
        raise
