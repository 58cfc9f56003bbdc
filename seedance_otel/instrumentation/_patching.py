"""Install our hooks and put back exactly what was there before.

Two kinds of hook, with one calling convention each:

* ``wrap`` takes a wrapt-style wrapper, ``wrapper(wrapped, instance, args,
  kwargs)``: for hooks that run per new connection or per fault. Over a plain
  Python function (almost every method we hook) it installs a plain function
  that calls the wrapper with the original bound to the instance; over
  anything else (a ``staticmethod`` such as ``SSLContext.__new__``, a
  builtin) a wrapt ``FunctionWrapper``. Counted under valgrind in an aiohttp
  fault storm, each wrapt call on a new connection's path cost 6,000-8,000
  instructions (the bound-wrapper object and its attribute lookups), the
  plain function about 3,700 fewer, and seven of them run per connection.
* ``replace`` installs a plain function made by a factory that closes over
  the original, with the library's exact signature: for the few hooks that
  run on *every request*, and for the per-connection ones that only note
  something and pass the call on (aiohttp's ``connection_lost`` and
  ``ceil_timeout``, httpcore's ``aclose``/``close``). Measured in the aiohttp
  sequential benchmark, a trivial wrapt wrapper on a per-request method
  costs 2.5-3 us per request (cold in a real workload), a plain function
  about 0.1 us. The per-request budget is 3 us in total.

A plain hook over an ``async def`` keeps answering
``asyncio.iscoroutinefunction`` (and, on Python 3.12+,
``inspect.iscoroutinefunction``) as the original did; on 3.10 and 3.11
``inspect.iscoroutinefunction`` of a hooked coroutine method says ``False``.

``opentelemetry.instrumentation.utils.unwrap`` restores ``__wrapped__``, which
for a ``staticmethod`` (``SSLContext.__new__``) is the bare function, not the
original object, so we keep the class-dict entry we replaced and restore that
- but only if our hook is still the one installed: if another tool wrapped on
top of us, its wrapper stays and ours is switched off by ``enabled``.

Per-connection state is kept in one attribute per library object, with a
class-level default of ``None`` (``add_default``) so that reading it never
misses. We never touch an instance's ``__dict__``: on CPython 3.11+ that
materialises the dict and slows the library's own attribute access (measured:
+2 us per request on aiohttp).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import types
from collections.abc import Callable
from typing import Any

import wrapt

__all__ = ["PatchSet", "Wrapper", "signature_is"]

_logger = logging.getLogger("seedance_otel")

Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]
_MISSING = object()


def signature_is(
    func: Any, positional: tuple[str, ...], keyword_only: tuple[str, ...] = ()
) -> bool:
    """Whether ``func`` takes exactly these parameters (names and kinds).

    Per-request hooks use a wrapper with the exact signature when the library's
    method has the one we know (measured: ~0.6 us per request cheaper on aiohttp
    than ``*args, **kwargs``), and a generic wrapper otherwise, so a library
    that changes the signature still works.
    """
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    kinds = inspect.Parameter
    names = tuple(p.name for p in params if p.kind is kinds.POSITIONAL_OR_KEYWORD)
    keywords = tuple(p.name for p in params if p.kind is kinds.KEYWORD_ONLY)
    others = [p for p in params if p.kind not in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
    return names == positional and keywords == keyword_only and not others


class PatchSet:
    """The hooks one instrumentation module installed, and how to undo them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.enabled = False
        self._applied: list[tuple[Any, str, Any, Any]] = []

    def wrap(
        self,
        owner: type,
        attribute: str,
        wrapper: Wrapper,
        *,
        step_aside: Callable[[], object] | None = None,
        while_enabled: bool = False,
    ) -> None:
        """Hook ``owner.attribute`` (defined on ``owner`` itself) with ``wrapper``.

        ``step_aside``, if given, is asked first on every call; a true answer
        sends the call straight to the original, before the original is bound
        and the arguments packed for ``wrapper``. For hooks that most calls
        pass through (the asyncio loop's, while a client library's own hook
        is connecting): counted under valgrind in an aiohttp fault storm, the
        bound wrapper of one such pass-through cost some 8,000 instructions
        per connection. Best a C callable, such as a ``ContextVar``'s ``get``.

        ``while_enabled``: while this set is not ``enabled`` the call goes
        straight to the original. The hook reads the flag itself, so an
        enabled call costs no extra call (a Python call costs some 2,000
        instructions; these hooks run per new connection).
        """
        if step_aside is not None and while_enabled:
            raise ValueError("step_aside and while_enabled: check enabled in step_aside")
        original = owner.__dict__[attribute]
        if isinstance(original, types.FunctionType):
            gate = self if while_enabled else None
            setattr(owner, attribute, _method_hook(original, wrapper, step_aside, gate))
        else:
            wrapt.wrap_function_wrapper(
                owner, attribute, self.when_enabled(wrapper) if while_enabled else wrapper
            )
        self._applied.append((owner, attribute, original, owner.__dict__[attribute]))

    def wrap_module_function(self, module: Any, attribute: str, wrapper: Wrapper) -> None:
        """Hook a function that other code calls through ``module.attribute``."""
        original = module.__dict__[attribute]
        if isinstance(original, types.FunctionType):
            setattr(module, attribute, _function_hook(original, wrapper))
        else:
            wrapt.wrap_function_wrapper(module, attribute, wrapper)
        self._applied.append((module, attribute, original, module.__dict__[attribute]))

    def replace(
        self,
        owner: type | types.ModuleType,
        attribute: str,
        factory: Callable[[Any], Callable[..., Any]],
    ) -> None:
        """Replace ``owner.attribute`` (a class's or a module's) by
        ``factory(original)`` (a plain function)."""
        original = owner.__dict__[attribute]
        replacement = _dressed(factory(original), original)
        setattr(owner, attribute, replacement)
        self._applied.append((owner, attribute, original, replacement))

    def add_default(self, owner: type, attribute: str, value: Any) -> None:
        """Give ``owner`` a class attribute it did not have (removed on restore)."""
        if attribute in owner.__dict__:
            raise RuntimeError(f"{owner.__qualname__}.{attribute} already exists")
        setattr(owner, attribute, value)
        self._applied.append((owner, attribute, _MISSING, value))

    def restore(self) -> None:
        """Put every original back (newest first)."""
        self.enabled = False
        while self._applied:
            owner, attribute, original, installed = self._applied.pop()
            if owner.__dict__.get(attribute, _MISSING) is not installed:
                _logger.debug(
                    "seedance_otel: %s.%s was replaced after us; leaving it in place",
                    owner.__qualname__,
                    attribute,
                )
            elif original is _MISSING:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)

    @property
    def count(self) -> int:
        return len(self._applied)

    def when_enabled(self, record: Wrapper) -> Wrapper:
        """A wrapt wrapper that calls ``record`` while enabled, else the original
        (``wrap(..., while_enabled=True)`` over something not a plain function).

        ``record(wrapped, instance, args, kwargs)`` is usually an ``async def``
        that awaits the original and looks at the outcome; the gate keeps the
        original's own coroutine (no extra frame) once we are turned off.
        """

        def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            if not self.enabled:
                return wrapped(*args, **kwargs)
            return record(wrapped, instance, args, kwargs)

        wrapper.__name__ = wrapper.__qualname__ = getattr(record, "__name__", "wrapper")
        return wrapper


def _method_hook(
    original: types.FunctionType,
    wrapper: Wrapper,
    step_aside: Callable[[], object] | None,
    gate: PatchSet | None = None,
) -> Callable[..., Any]:
    """A plain method calling ``wrapper`` as wrapt would, the original bound
    (or the original itself, when ``step_aside()`` says so or ``gate`` is
    not enabled)."""
    bind = types.MethodType

    if gate is not None:

        def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not gate.enabled:
                return original(self, *args, **kwargs)
            return wrapper(bind(original, self), self, args, kwargs)

    elif step_aside is None:

        def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
            return wrapper(bind(original, self), self, args, kwargs)

    else:

        def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
            if step_aside():
                return original(self, *args, **kwargs)
            return wrapper(bind(original, self), self, args, kwargs)

    return _dressed(hook, original)


def _function_hook(original: types.FunctionType, wrapper: Wrapper) -> Callable[..., Any]:
    """A plain function calling ``wrapper`` as wrapt would (no instance)."""

    def hook(*args: Any, **kwargs: Any) -> Any:
        return wrapper(original, None, args, kwargs)

    return _dressed(hook, original)


def _dressed(hook: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    """``hook`` with the original's name, docstring and ``__wrapped__``, and
    marked as a coroutine function when the original is one."""
    functools.update_wrapper(hook, original)
    if inspect.iscoroutinefunction(original):
        mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
        if mark is not None:
            mark(hook)
        else:
            hook._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return hook
