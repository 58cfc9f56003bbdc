"""The span active at the fault gets an event with the snapshot's attributes.

Only an event: the client instrumentation owns the span's status. A snapshot
made outside the span's context (an asyncio transport failing in a loop
callback, carrying the ids of the context that made it) adds nothing: the
span active then is someone else's.

The event repeats the log record. ``SEEDANCE_OTEL_SPAN_EVENTS=false`` drops
it; so does the semantic conventions' ``OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN``
when it asks for ``logs`` only (``logs/dup``, or unset, keeps both).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace as otel_trace

from .._snapshot import ResetContextSnapshot
from .attributes import EVENT_NAME, snapshot_to_attributes

__all__ = ["EXCEPTION_SIGNAL_OPT_IN", "add_span_event", "span_events_wanted"]

EXCEPTION_SIGNAL_OPT_IN = "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN"


def span_events_wanted(enabled: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether to add span events: our switch, then the semconv opt-in.

    The opt-in is a comma-separated list; ``logs`` without ``logs/dup`` means
    exceptions go to logs only, and our log record is always sent.
    """
    if not enabled:
        return False
    values = {v.strip().lower() for v in environ.get(EXCEPTION_SIGNAL_OPT_IN, "").split(",")}
    return not ("logs" in values and "logs/dup" not in values)


def add_span_event(snapshot: ResetContextSnapshot) -> None:
    if snapshot.span_id is None:
        return
    span = otel_trace.get_current_span()
    if not span.is_recording():
        return
    if f"{span.get_span_context().span_id:016x}" != snapshot.span_id:
        return
    span.add_event(EVENT_NAME, snapshot_to_attributes(snapshot), timestamp=snapshot.timestamp_ns)
