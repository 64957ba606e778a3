"""core/frozen.py: the cheap ways to build frozen, slotted dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fluxchain.core.frozen import draft_class


@dataclasses.dataclass(frozen=True, slots=True)
class _Point:
    x: int
    y: int = 0


def test_a_filled_draft_becomes_an_instance_equal_to_one_built_by_its_constructor() -> None:
    draft_of = draft_class(_Point)
    draft = draft_of()
    draft.x, draft.y = 3, 4
    draft.__class__ = _Point
    point: Any = draft
    assert type(point) is _Point and point == _Point(3, 4) and hash(point) == hash(_Point(3, 4))
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 5  # type: ignore[misc]


def test_a_class_a_draft_cannot_turn_into_is_refused() -> None:
    """No twin for a class that is not frozen and slotted, or whose slots are not its
    fields (a subclass holds its base's fields in the base's slots: another layout)."""

    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int

    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Deeper(_Point):
        z: int = 0

    for cls in (Mutable, Unslotted):
        with pytest.raises(TypeError, match="not a frozen, slotted dataclass"):
            draft_class(cls)
    with pytest.raises(TypeError, match="its slots are not its fields"):
        draft_class(Deeper)
