"""One spelling for an exception's type, wherever we name one.

``error.type`` and ``exception.type`` carry the class's qualified name with
its module, except for builtins, which read as Python spells them
(``TimeoutError``, not ``builtins.TimeoutError``), as the OpenTelemetry SDK's
``record_exception`` and the contrib HTTP instrumentations write them.
"""

from __future__ import annotations

__all__ = ["exception_type_name"]

_NAMES: dict[type, str] = {}
"""Each class's name, spelled once: every fault names its type (the storm key
among others). Bounded: a process raises few classes."""
_NAMES_KEPT = 256


def exception_type_name(error: BaseException | type[BaseException]) -> str:
    """``ConnectionResetError``, ``httpcore.ReadError``, ``aiohttp.client_exceptions.X``."""
    cls = error if isinstance(error, type) else type(error)
    name = _NAMES.get(cls)
    if name is None:
        module = cls.__module__
        name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
        if len(_NAMES) < _NAMES_KEPT:
            _NAMES[cls] = name
    return name
