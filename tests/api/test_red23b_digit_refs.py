"""Review red23b of the API's block references: a path or query a client writes must get a
4xx with a stable reason, never a 500 (api/server.py: "no request ... produces a 5xx").

`queries._height_of` (GET /blocks/{ref}, /headers/{ref}) and `queries.search` (GET
/search?q=) take a reference for a height when `str.isdigit()` says so, then `int()` it.
`isdigit` is true for Unicode digits that `int` refuses (superscripts "²", circled "①"),
so those requests raise ValueError in the handler: 500 `internal`, and a traceback in the
node's log for each request, which anyone who reaches the API writes at will.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxchain.node.service import NodeService
from tests.api.test_api import Client, commit, run
from tests.support.chain import Builder

# "²" (SUPERSCRIPT TWO) and "①" (CIRCLED DIGIT ONE): str.isdigit() is true, int() refuses.
SUPERSCRIPT_TWO = "%C2%B2"
CIRCLED_ONE = "%E2%91%A0"


@pytest.mark.parametrize(
    "path",
    [
        f"/blocks/{SUPERSCRIPT_TWO}",
        f"/blocks/1{SUPERSCRIPT_TWO}",
        f"/headers/{CIRCLED_ONE}",
    ],
)
def test_red23b_a_unicode_digit_reference_is_a_client_error_not_a_500(
    tmp_path: Path, path: str
) -> None:
    async def body(client: Client, service: NodeService, b: Builder) -> None:
        commit(service, b)
        answer = await client.get(path)
        error = (await answer.json())["error"]
        assert 400 <= answer.status < 500, (
            f"GET {path} answered {answer.status} {error}: a height reference that "
            "str.isdigit() accepts and int() refuses reached int() in the handler"
        )
        assert error["reason"] in ("bad_request", "bad_field", "not_found")

    run(tmp_path, body)


def test_red23b_a_unicode_digit_search_finds_nothing_and_is_not_a_500(tmp_path: Path) -> None:
    """The query "²" names no block, tx, account, node or app: an empty list (or a 4xx), as any
    other query that matches nothing."""

    async def body(client: Client, service: NodeService, b: Builder) -> None:
        commit(service, b)
        answer = await client.get(f"/search?q={SUPERSCRIPT_TWO}")
        found = await answer.json()
        if answer.status == 200:
            assert found["results"] == [], found
        else:
            assert 400 <= answer.status < 500, (
                f"GET /search?q=\u00b2 answered {answer.status} {found}: str.isdigit() "
                "accepted it and int() refused it in the handler"
            )

    run(tmp_path, body)
