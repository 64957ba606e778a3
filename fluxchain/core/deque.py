"""Append-only queues in the state: O(1) push and pop, items under their own keys.

Used for the tier payment queues and for work scheduled at a future height (unbonding
releases, confirm-window checks, app expiries). Items are never edited in place: a
consumer that finds an item stale (the node moved on) skips it, which keeps every
operation O(1) and the whole structure free of iteration over the state.
"""

from __future__ import annotations

from fluxchain.core.records import DEQUE_HEAD, DEQUE_ITEM, DequeHead, Ref
from fluxchain.core.state import State

_EMPTY = DequeHead(1, 1)  # index 0 is reserved to mean "no entry"


def _head(state: State, name: bytes) -> DequeHead:
    head: DequeHead | None = state.get(DEQUE_HEAD + name)
    return _EMPTY if head is None else head


def _item_key(name: bytes, index: int) -> bytes:
    return DEQUE_ITEM + name + index.to_bytes(8, "big")


def push(state: State, name: bytes, value: bytes) -> int:
    """Append `value` to queue `name`; return its index (never 0)."""
    head = _head(state, name)
    state.put(_item_key(name, head.tail), Ref(value))
    state.put(DEQUE_HEAD + name, DequeHead(head.head, head.tail + 1))
    return head.tail


def peek(state: State, name: bytes) -> tuple[int, bytes] | None:
    """(index, value) of the first item without removing it, or None if the queue is empty."""
    head = _head(state, name)
    if head.head == head.tail:
        return None
    item: Ref = state.get(_item_key(name, head.head))
    return head.head, item.target


def pop(state: State, name: bytes) -> tuple[int, bytes] | None:
    """Remove and return (index, value) of the first item, or None if the queue is empty."""
    head = _head(state, name)
    if head.head == head.tail:
        return None
    key = _item_key(name, head.head)
    item: Ref = state.get(key)
    state.delete(key)
    if head.head + 1 == head.tail:
        state.delete(DEQUE_HEAD + name)  # empty queues leave nothing behind
    else:
        state.put(DEQUE_HEAD + name, DequeHead(head.head + 1, head.tail))
    return head.head, item.target


def drain(state: State, name: bytes) -> list[bytes]:
    """Remove and return every item of queue `name`, oldest first."""
    out = []
    while (item := pop(state, name)) is not None:
        out.append(item[1])
    return out


def size(state: State, name: bytes) -> int:
    head = _head(state, name)
    return head.tail - head.head
