"""Which trace a fault belongs to: the active OpenTelemetry span, else an OpenTracing one.

Services that have not finished migrating still run the archived
``jaeger-client`` (or another OpenTracing tracer) as the global tracer. When no
OTel span is active we ask ``opentracing.global_tracer().active_span`` and
widen its 64-bit ids to the W3C widths (32 / 16 lowercase hex, zero padded),
so snapshots still join their traces. ``opentracing`` is only consulted if the
application already imported it; we never import it ourselves.
"""

from __future__ import annotations

import sys
from typing import Any

from opentelemetry import trace as otel_trace

__all__ = ["NO_TRACE", "TraceIds", "current_trace_ids"]

TraceIds = tuple[str | None, str | None, bool | None]
"""(trace id, span id, sampled): the span's W3C ids and its sampled flag
(``None`` when unknown: an OpenTracing span)."""

NO_TRACE: TraceIds = (None, None, None)
_INVALID = NO_TRACE


def _hex(value: Any, width: int) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            return None
        return f"{value:0{width}x}"[-width:]
    if isinstance(value, str) and value:
        text = value.lower().removeprefix("0x")
        try:
            int(text, 16)
        except ValueError:
            return None
        if len(text) > width:
            return text[-width:]
        return text.rjust(width, "0")
    return None


def _opentracing_ids() -> TraceIds:
    opentracing = sys.modules.get("opentracing")
    if opentracing is None:
        return _INVALID
    tracer = opentracing.global_tracer()
    span = getattr(tracer, "active_span", None)
    if span is None:
        return _INVALID
    ctx = getattr(span, "context", None)
    trace_id = _hex(getattr(ctx, "trace_id", None), 32)
    span_id = _hex(getattr(ctx, "span_id", None), 16)
    if trace_id is None or span_id is None:
        return _INVALID
    return trace_id, span_id, None


def current_trace_ids() -> TraceIds:
    """``(trace_id, span_id, sampled)`` of the span active here, or :data:`NO_TRACE`."""
    ctx = otel_trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", ctx.trace_flags.sampled
    return _opentracing_ids()
