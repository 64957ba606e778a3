"""Review 23 (issue 23 part 1): the light client's work for an answer it refuses anyway.

On the hand-made chains of tests/light/test_verifier.py (a counting Source).
"""

from __future__ import annotations

import pytest

from fluxchain.core.encoding import pack
from fluxchain.light.answers import verify_state_answer
from fluxchain.light.errors import LightError, LightReason
from tests.light.test_verifier import client, genesis_store, steady, verify


def test_stale_answer_is_refused_before_walking_back_by_hash_links() -> None:
    """A liar answers with a proof against an old header H (kept from long ago) that the
    client can reach only by walking back by hash links from a newer trusted block. The
    client fetches every header between them (up to 10,000, each with the wallet's 10 s
    timeout: hours against a slow liar) and only then sees that H is older than the trust
    period, which the header's own time said before any request."""
    chain = steady(600)
    store = genesis_store()
    light = client(store, chain.time_of(10))
    verify(light, chain, 10)
    light.clock = lambda: chain.time_of(600)
    verify(light, chain, 600)  # skipping from 10, still within the hour's trust period
    # Blocks are 1 s apart: 10 has expired, 600 has not, and 100 is just past its period.
    period = light.options.trust_period_ms
    light.clock = lambda: chain.time_of(100) + period
    store.blocks[:] = [b for b in store.blocks if b.height in (0, 10, 600)]
    assert [b.height for b in store.blocks] == [0, 10, 600]
    old = chain.blocks[100]
    proof = {
        "height": 100,
        "header_raw": pack(old.header.to_fields()).hex(),
        "commit_raw": pack(old.commit.to_fields()).hex(),
        "entries": [],
    }
    chain.asked.clear()
    with pytest.raises(LightError) as caught:
        verify_state_answer(light, chain, proof)
    assert caught.value.reason is LightReason.STALE_HEADER, caught.value
    fetched = len(chain.asked)
    assert fetched <= 1, f"{fetched} headers fetched for an answer refused as stale"
