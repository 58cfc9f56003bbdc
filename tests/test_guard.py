"""Guard: our own failures are logged and counted, never raised into the application."""

from __future__ import annotations

import asyncio
import logging

import pytest

from seedance_otel import _guard
from seedance_otel._guard import Guard


@pytest.fixture
def lenient():
    _guard.set_strict(False)
    _guard.reset()
    try:
        yield
    finally:
        _guard.set_strict(True)
        _guard.reset()


def test_an_exception_inside_is_logged_counted_and_swallowed(lenient, caplog):
    guard = Guard("test hook")
    ran_after = []
    with caplog.at_level(logging.ERROR, logger="seedance_otel"):
        for _ in range(3):  # one instance serves every call
            with guard:
                raise KeyError("bug in our bookkeeping")
            ran_after.append(True)
    assert ran_after == [True, True, True]
    assert _guard.internal_error_count() == 3
    # Rate-limited: logged once a minute per place, with the traceback.
    [record] = [r for r in caplog.records if "test hook" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is KeyError


def test_cancellation_and_exit_pass_through(lenient):
    for exc in (asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(0)):
        with pytest.raises(type(exc)), Guard("test hook"):
            raise exc
    assert _guard.internal_error_count() == 0


def test_strict_mode_re_raises():
    _guard.set_strict(True)
    with pytest.raises(ZeroDivisionError), Guard("test hook"):
        1 / 0  # noqa: B018
