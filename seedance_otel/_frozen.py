"""Building frozen, slotted dataclasses without their ``__init__``'s cost.

A frozen dataclass's generated ``__init__`` sets each field with
``object.__setattr__(self, name, value)``, since its own ``__setattr__``
refuses: one call per field, about 1,100 instructions each. For the
snapshot (35 fields) built on every full capture, that is 40,000
instructions, a fifth of the capture.

:func:`fast_constructor` makes a twin class with the same fields in the same
slots that is not frozen, so its ``__init__`` stores each field directly;
its ``__post_init__`` then makes the object an instance of the frozen class
(the layouts are the same, so CPython lets ``__class__`` be assigned). What
a caller gets is an ordinary instance of the frozen class, equal to what its
own constructor builds, and as immutable.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_constructor"]

T = TypeVar("T")


def fast_constructor(cls: type[T]) -> type[T]:
    """A constructor for ``cls`` (a frozen, slotted dataclass): same arguments, same result.

    Typed as ``type[T]`` so that callers' arguments are checked against
    ``cls``'s fields; calling it returns a ``cls`` instance. ``cls`` itself
    is returned when the twin cannot stand in: ``cls`` has a ``__post_init__``
    of its own (the twin's would take its place), has no slots, or the
    interpreter refuses the ``__class__`` assignment.
    """
    if not dataclasses.is_dataclass(cls) or "__post_init__" in vars(cls):
        return cls
    fields = dataclasses.fields(cls)

    try:
        twin = _twin(cls, fields)
        probe = twin(**{f.name: None for f in fields})
    except Exception:  # a dataclass or a layout this interpreter will not twin
        return cls
    return twin if type(probe) is cls else cls


def _twin(cls: type[Any], fields: tuple[dataclasses.Field[Any], ...]) -> type[Any]:
    def __post_init__(self: Any) -> None:
        self.__class__ = cls

    twin: type[Any] = dataclasses.make_dataclass(
        f"_{cls.__name__}Builder",
        [
            (
                f.name,
                f.type,
                dataclasses.field(
                    default=f.default, default_factory=f.default_factory, kw_only=f.kw_only
                ),
            )
            for f in fields
        ],
        namespace={"__post_init__": __post_init__},
        slots=True,
        eq=False,
        repr=False,
        match_args=False,
    )
    twin.__module__ = cls.__module__
    # A wrong argument is reported as ``cls``'s own constructor reports it.
    vars(twin)["__init__"].__qualname__ = vars(cls)["__init__"].__qualname__
    if getattr(twin, "__slots__", None) != getattr(cls, "__slots__", None):
        raise TypeError(f"{cls.__name__} has no slots to share")
    return twin
