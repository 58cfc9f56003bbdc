"""The span active at the fault gets an event with the snapshot's attributes.

Only an event: the client instrumentation owns the span's status. A snapshot
made outside the span's context (an asyncio transport failing in a loop
callback, carrying the ids of the context that made it) adds nothing: the
span active then is someone else's.
"""

from __future__ import annotations

from opentelemetry import trace as otel_trace

from .._snapshot import ResetContextSnapshot
from .attributes import EVENT_NAME, snapshot_to_attributes

__all__ = ["add_span_event"]


def add_span_event(snapshot: ResetContextSnapshot) -> None:
    if snapshot.span_id is None:
        return
    span = otel_trace.get_current_span()
    if not span.is_recording():
        return
    if f"{span.get_span_context().span_id:016x}" != snapshot.span_id:
        return
    span.add_event(EVENT_NAME, snapshot_to_attributes(snapshot), timestamp=snapshot.timestamp_ns)
