"""One spelling for an exception's type, wherever we name one.

``error.type`` and ``exception.type`` carry the class's qualified name with
its module, except for builtins, which read as Python spells them
(``TimeoutError``, not ``builtins.TimeoutError``), as the OpenTelemetry SDK's
``record_exception`` and the contrib HTTP instrumentations write them.
"""

from __future__ import annotations

__all__ = ["exception_type_name"]


def exception_type_name(error: BaseException | type[BaseException]) -> str:
    """``ConnectionResetError``, ``httpcore.ReadError``, ``aiohttp.client_exceptions.X``."""
    cls = error if isinstance(error, type) else type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
