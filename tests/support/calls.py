"""Counting the calls a node makes to a costly method (a pool attempt, a LevelDB read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def counting(calls: list[bytes], fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, noting the tx id of each call (its first argument: an id or a tx)."""

    def counted(first: Any, *rest: Any) -> Any:
        calls.append(getattr(first, "id", first))
        return fn(first, *rest)

    return counted
