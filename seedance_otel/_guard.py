"""What happens when our own code fails: it is logged, rate-limited, and never raised.

Hooks run inside the user's request. A bug in our bookkeeping must not turn a
working request into a failing one, so every hook body runs inside
``with Guard("where"):`` (as sentry's ``capture_internal_exceptions``) and the
user's call stays outside that block. ``SEEDANCE_OTEL_STRICT=1`` (our test suite) re-raises
instead, so a hidden failure cannot pass the tests.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

__all__ = ["Guard", "internal_error_count", "report_internal_error", "reset", "set_strict"]

_logger = logging.getLogger("seedance_otel")

_LOG_INTERVAL_S = 60.0
_strict = False
_lock = threading.Lock()
_last_logged: dict[str, float] = {}
_counts: dict[str, int] = {}


def set_strict(strict: bool) -> None:
    """Strict mode re-raises internal errors (tests only)."""
    global _strict  # noqa: PLW0603 - one process-wide switch
    _strict = strict


def reset_after_fork() -> None:
    """In a forked child the lock may have been held by a thread that is gone."""
    global _lock  # noqa: PLW0603
    _lock = threading.Lock()


def reset() -> None:
    """Forget counts and rate-limit state (a new ``instrument()`` starts afresh)."""
    with _lock:
        _last_logged.clear()
        _counts.clear()


def report_internal_error(where: str) -> None:
    """Log the exception being handled, at most once a minute per hook; count it.

    Must be called from an ``except`` block. In strict mode the exception is
    re-raised.
    """
    if _strict:
        raise  # noqa: PLE0704 - called only from except blocks
    _log(where)


def _log(where: str, exc: BaseException | None = None) -> None:
    now = time.monotonic()
    with _lock:
        _counts[where] = _counts.get(where, 0) + 1
        last = _last_logged.get(where)
        should_log = last is None or now - last >= _LOG_INTERVAL_S
        if should_log:
            _last_logged[where] = now
    if should_log:
        _logger.error(
            "seedance_otel: internal error in %s (the application is unaffected; "
            "further errors here are logged at most once a minute)",
            where,
            exc_info=exc if exc is not None else True,
        )


def internal_error_count() -> int:
    """Internal errors seen so far (exposed through ``stats()``)."""
    with _lock:
        return sum(_counts.values())


class Guard:
    """``with Guard("aiohttp release"): ...``: our code inside never reaches the application.

    An ``Exception`` raised inside is logged (rate-limited) and counted, and
    execution goes on after the block; ``BaseException`` (cancellation, exit)
    passes through untouched. Strict mode re-raises. Holds no state but its
    name, so a hot path can keep one instance and reuse it.
    """

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is None or not issubclass(exc_type, Exception) or _strict:
            return False
        _log(self.where, exc)
        return True
