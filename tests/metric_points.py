"""Typed access to what an ``InMemoryMetricReader`` collected.

The SDK types a metric's points as a union of number, histogram and
exponential-histogram points, and every point's attributes as optional. A test
knows which instrument it reads; these helpers check that knowledge once (an
assert that fails the test when it is wrong) so the test reads the fields of
the right point type and mypy can check it.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.util.types import AnyValue

Point = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint


def metrics_by_name(data: MetricsData | None) -> dict[str, Metric]:
    """Every metric collected, by instrument name (none when nothing was collected)."""
    if data is None:
        return {}
    return {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }


def number_points(metric: Metric) -> list[NumberDataPoint]:
    """The points of a counter, up-down counter or gauge."""
    points = list(metric.data.data_points)
    numbers = [p for p in points if isinstance(p, NumberDataPoint)]
    assert len(numbers) == len(points), f"{metric.name} has points that are not numbers"
    return numbers


def histogram_points(metric: Metric) -> list[HistogramDataPoint]:
    """The points of an explicit-bucket histogram."""
    points = list(metric.data.data_points)
    histograms = [p for p in points if isinstance(p, HistogramDataPoint)]
    assert len(histograms) == len(points), f"{metric.name} has points that are not histograms"
    return histograms


def attributes(point: Point) -> Mapping[str, AnyValue]:
    """A point's attributes; the SDK gives every point a mapping (maybe empty)."""
    assert point.attributes is not None
    return point.attributes
