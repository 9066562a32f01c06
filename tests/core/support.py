"""Helpers for the core's tests: a pipeline per instrument mode and a normal form of exported data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData

from otel_pipeline._internal import runtime
from otel_pipeline._internal.spec import Kind, MetricSpec
from otel_pipeline.config import Config

COUNTER = MetricSpec("test.core.counter", Kind.COUNTER, "{item}", "Test counter.", ("k",), "test")
UPDOWN = MetricSpec(
    "test.core.updown", Kind.UP_DOWN_COUNTER, "{item}", "Test up-down counter.", ("k",), "test"
)
GAUGE = MetricSpec("test.core.gauge", Kind.GAUGE, "1", "Test gauge.", ("k",), "test")
HISTOGRAM = MetricSpec("test.core.histogram", Kind.HISTOGRAM, "s", "Test histogram.", ("k",), "test")
# Not declared in the catalogue: these exist for the core's tests only.
SPECS = {"counter": COUNTER, "updown": UPDOWN, "gauge": GAUGE, "histogram": HISTOGRAM}


@contextmanager
def pipeline_in(mode: str, **options: Any) -> Iterator[runtime.Runtime]:
    """A current pipeline with the local reader, plus ``extra_readers=[...]`` if given."""
    extra_readers = options.pop("extra_readers", None)
    config = Config.resolve({}, service_name="diff", exporter="none", instrument_mode=mode, **options)
    pipeline = runtime.build_pipeline(config, serve=False, extra_readers=extra_readers)
    previous = runtime.install(pipeline)
    try:
        yield pipeline
    finally:
        runtime.install(previous)
        pipeline.shutdown(timeout=5)


def _number(value: float) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def normal_form(data: MetricsData | None, *, scope: str = "otel_pipeline") -> dict[str, Any]:
    """Everything exported for ``scope`` except timestamps, in a comparable form."""
    found: dict[str, Any] = {}
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != scope:
                continue
            for metric in scope_metrics.metrics:
                points = []
                point: Any
                for point in metric.data.data_points:
                    exemplars = sorted(
                        (
                            _number(e.value),
                            e.span_id,
                            e.trace_id,
                            tuple(sorted((e.filtered_attributes or {}).items()))
                            if e.filtered_attributes is not None
                            else None,
                        )
                        for e in point.exemplars
                    )
                    if isinstance(point, HistogramDataPoint):
                        values: tuple[Any, ...] = (
                            point.count,
                            point.sum,
                            tuple(point.bucket_counts),
                            tuple(point.explicit_bounds),
                            point.min,
                            point.max,
                        )
                    else:
                        values = (_number(point.value),)
                    points.append((tuple(sorted((point.attributes or {}).items())), values, tuple(exemplars)))
                data_type = type(metric.data).__name__
                found[metric.name] = {
                    "description": metric.description,
                    "unit": metric.unit,
                    "type": data_type,
                    "temporality": getattr(metric.data, "aggregation_temporality", None),
                    "monotonic": getattr(metric.data, "is_monotonic", None),
                    "points": sorted(points, key=repr),
                }
    return found
