"""Frozen, slotted dataclasses that are cheap to construct.

The `__init__` that `dataclass(frozen=True)` generates stores each field with
`object.__setattr__(self, name, value)`, which looks the name up and re-checks the type
on every call: ~250 ns a field. Block import builds a Tx (ten fields) per transaction
and three Account records per transfer, so that adds up to several percent of import.
`quick_init` replaces the generated `__init__` with one that stores through the slot
descriptors directly (~60 ns a field). Nothing else changes: same fields, defaults,
equality, hash and repr, and assigning to a field afterwards still raises
FrozenInstanceError. `draft_class` goes further for the hottest decoder (a transfer's
`Tx` and `Transfer`): a mutable twin whose instances are filled by plain stores and then
become the frozen class.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

_Class = TypeVar("_Class", bound=type)


def quick_init(cls: _Class) -> _Class:
    """Give a frozen, slotted dataclass `cls` a faster `__init__` of the same signature."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    namespace: dict[str, Any] = {}
    arguments, stores = [], []
    for index, field in enumerate(dataclasses.fields(cls)):
        if not field.init or field.kw_only or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: only plain positional fields")
        namespace[f"_set{index}"] = cls.__dict__[field.name].__set__  # the slot descriptor
        if field.default is dataclasses.MISSING:
            arguments.append(field.name)
        else:
            namespace[f"_default{index}"] = field.default
            arguments.append(f"{field.name}=_default{index}")
        stores.append(f"    _set{index}(self, {field.name})")
    source = f"def __init__(self, {', '.join(arguments)}):\n" + "\n".join(stores or ["    pass"])
    exec(source, namespace)  # the source is built above from field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__dict__["__init__"].__doc__
    type.__setattr__(cls, "__init__", init)
    return cls


def draft_class(cls: type) -> type[Any]:
    """A mutable twin of the frozen, slotted dataclass `cls`, for its hottest decoder.

    The twin has `cls`'s slots, in the same order, on the same base class, and nothing
    else, so CPython lets one of its instances become a `cls` by assigning `__class__`
    (the layouts are the same). Filling a draft by plain attribute stores and then
    assigning its class costs about a third of calling even `quick_init`'s constructor: the
    stores are the interpreter's own slot writes, with no call and no descriptor lookup.
    Whoever uses it fills every slot before the assignment (a slot left unset would read
    as an AttributeError) and hands out only the finished `cls`, which is frozen as any
    other: same fields, equality, hash, repr, pickling.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    slots = tuple(field.name for field in dataclasses.fields(cls))
    if slots != tuple(cls.__dict__["__slots__"]):
        raise TypeError(f"{cls.__name__}: its slots are not its fields")
    draft: type[Any] = type(f"_{cls.__name__}Draft", cls.__bases__, {"__slots__": slots})
    trial = draft()
    trial.__class__ = cls  # a TypeError here: the layouts differ (a base with a __dict__)
    return draft
