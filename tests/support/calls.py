"""Counting the calls a node makes to a costly method (a pool attempt, a LevelDB read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fluxchain.core import crypto
from fluxchain.core import votes as votes_module


def counting(calls: list[bytes], fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, noting the tx id of each call (its first argument: an id or a tx)."""

    def counted(first: Any, *rest: Any) -> Any:
        calls.append(getattr(first, "id", first))
        return fn(first, *rest)

    return counted


def count_vote_signatures(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The signatures the vote layer (`fluxchain.core.votes`: a vote's, a commit's)
    verifies from here on, in order."""
    checked: list[bytes] = []
    verify = crypto.verify

    def counted(public_key: bytes, message: bytes, signature: bytes) -> bool:
        checked.append(signature)
        return verify(public_key, message, signature)

    monkeypatch.setattr(votes_module, "verify", counted)
    return checked
