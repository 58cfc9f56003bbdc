"""The capture path: one snapshot per fault, never two for one exception, never none for a new one."""

from __future__ import annotations

import seedance_otel
from seedance_otel._capture import FaultContext, capture
from seedance_otel._classify import HookFacts
from seedance_otel.instrumentation.asyncio_sockets import LIBRARY as ASYNCIO


def capture_fault(exc: BaseException, facts: HookFacts, server_port: int | None = None) -> object:
    return capture(FaultContext(library=ASYNCIO, exc=exc, facts=facts, server_port=server_port))


def reset() -> ConnectionResetError:
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError as exc:
        return exc


def test_each_new_exception_is_recorded_even_when_the_previous_one_was_freed(instrumented):
    # In a fault storm exceptions are created and freed back to back and often
    # reuse the same address: identity must not be mistaken for repetition.
    for i in range(200):
        capture_fault(reset(), HookFacts(phase="request"), server_port=i)
    assert seedance_otel.stats()["captured"] == 200


def test_one_exception_seen_by_two_hooks_is_recorded_once(instrumented):
    exc = reset()
    first = capture_fault(exc, HookFacts(phase="dns"))
    second = capture_fault(exc, HookFacts(phase="connect"))
    assert first is not None and second is None
    assert len(seedance_otel.snapshots()) == 1


def test_not_instrumented_records_nothing():
    seedance_otel.uninstrument()
    assert capture_fault(reset(), HookFacts()) is None


def test_suppressed_instrumentation_records_nothing(instrumented):
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        assert capture_fault(reset(), HookFacts()) is None
    assert seedance_otel.snapshots() == []


def test_capture_is_suppressed_as_opentelemetry_says(instrumented):
    # ``capture`` reads OpenTelemetry's private suppression keys itself, in one
    # context lookup; this fails if they move or a third one appears.
    from opentelemetry import context
    from opentelemetry.instrumentation.utils import (
        is_instrumentation_enabled,
        suppress_http_instrumentation,
        suppress_instrumentation,
    )

    def captured(port: int) -> bool:
        return capture_fault(reset(), HookFacts(phase="request"), server_port=port) is not None

    assert is_instrumentation_enabled() and captured(1)
    with suppress_instrumentation():
        assert not is_instrumentation_enabled() and not captured(2)
    with suppress_http_instrumentation():  # HTTP-only: still a connection fault to record
        assert is_instrumentation_enabled() and captured(3)
    # The plain string key, which older instrumentations set alone.
    token = context.attach(context.set_value("suppress_instrumentation", True))
    try:
        assert not is_instrumentation_enabled() and not captured(4)
    finally:
        context.detach(token)
    assert captured(5)
    assert [s.server_port for s in seedance_otel.snapshots()] == [1, 3, 5]


def test_capture_reads_the_current_context_as_opentelemetry_does():
    # Under OpenTelemetry's default runtime context, the context variable is
    # read directly: it must be the one ``get_current`` reads.
    from opentelemetry import context

    from seedance_otel import _capture

    token = context.attach(context.set_value("seedance-test-key", 42))
    try:
        assert _capture._current_context() is context.get_current()
        assert _capture._current_context().get("seedance-test-key") == 42
    finally:
        context.detach(token)
    assert _capture._current_context() is context.get_current()
    assert _capture._current_context is not context.get_current  # the fast path is in use
