"""Merge the core's points into what a reader collects from the MeterProvider.

Every reader registered on a MeterProvider gets a collect callback from it; we wrap that
callback so that, after the SDK has collected its own instruments (the user's, and our
observable ones), the core's series are added under our instrumentation scope. Prometheus,
periodic OTLP/console and in-memory readers all go through this one path, so the same
provider, resource, readers and exporters carry both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics._internal.instrument import _Counter, _Gauge, _Histogram, _UpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_pipeline._internal.errors import logger
from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.validation import drop_point, exportable, finite

__all__ = ["attach_core"]


def check_cumulative(reader: MetricReader) -> None:
    """The core aggregates cumulatively; refuse a reader that asks for delta, naming the cure."""
    temporality: dict[Any, AggregationTemporality] = reader._instrument_class_temporality
    for cls in (_Counter, _UpDownCounter, _Histogram, _Gauge):
        if temporality.get(cls) is AggregationTemporality.DELTA:
            raise ValueError(
                f"otel_pipeline: the reader {type(reader).__name__} asks for delta temporality "
                "(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE?), which instrument_mode='core' does "
                "not produce; use cumulative (the default) or instrument_mode='sdk'"
            )


def attach_core(
    reader: MetricReader, registry: Registry, resource: Resource, scope: InstrumentationScope
) -> None:
    """Make ``reader`` (already registered on a MeterProvider) also collect ``registry``'s series.

    In both instrument modes the reader also goes quiet in a forked child: what the parent
    recorded must not be exported a second time from the child (the child gets a pipeline of
    its own, see ``fork.py``).
    """
    if registry.mode == "core":
        check_cumulative(reader)
    original: Callable[..., MetricsData | None] | None = reader._collect  # type: ignore[assignment]
    if original is None:
        raise RuntimeError("attach_core needs a reader registered on a MeterProvider")
    owner_pid = os.getpid()
    index = registry.add_reader()

    def collect(reader_: MetricReader, timeout_millis: float = 10_000, **kwargs: Any) -> MetricsData | None:
        if os.getpid() != owner_pid:
            return None
        data = _exportable(original(reader_, timeout_millis=timeout_millis, **kwargs))
        if registry.mode != "core":
            return data
        try:
            metrics = registry.collect(time_ns(), index)
        except Exception:  # a fault in the core must not cost the user's own metrics
            logger.exception("collecting the core's series failed")
            return data
        if not metrics:
            return data
        return _merged(data, metrics, resource, scope)

    reader._set_collect_callback(collect)  # type: ignore[arg-type]


def _point_ok(point: Any) -> bool:
    """True when every exporter can encode ``point``: finite values, integers within int64."""
    if type(point) is NumberDataPoint:
        return exportable(point.value)
    if not finite(point.sum):
        return False
    return not point.count or (finite(point.min) and finite(point.max))


def _exportable(data: MetricsData | None) -> MetricsData | None:
    """``data`` without the points no exporter can encode (a user's counter past int64, a nan).

    The SDK collects the user's own instruments and the observable ones; one bad point there must
    cost that point, not the whole export. The usual case (nothing bad) returns ``data`` itself.
    """
    if data is None:
        return None
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    if not _point_ok(point):
                        return _filtered(data)
    return data


def _filtered(data: MetricsData) -> MetricsData:
    resources = []
    for resource_metrics in data.resource_metrics:
        scopes = []
        for scope_metrics in resource_metrics.scope_metrics:
            metrics = []
            for metric in scope_metrics.metrics:
                points = metric.data.data_points
                kept: list[Any] = [point for point in points if _point_ok(point)]
                if len(kept) < len(points):
                    bad = next(point for point in points if not _point_ok(point))
                    drop_point(
                        metric.name,
                        getattr(bad, "value", getattr(bad, "sum", None)),
                        dict(bad.attributes or {}),
                    )
                if kept:
                    data_: Any = metric.data
                    metrics.append(replace(metric, data=replace(data_, data_points=kept)))
            scopes.append(replace(scope_metrics, metrics=metrics))
        resources.append(replace(resource_metrics, scope_metrics=scopes))
    return MetricsData(resource_metrics=resources)


def _merged(
    data: MetricsData | None, metrics: list[Any], resource: Resource, scope: InstrumentationScope
) -> MetricsData:
    if data is None or not data.resource_metrics:
        return MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=resource,
                    scope_metrics=[
                        ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url or "")
                    ],
                    schema_url=resource.schema_url,
                )
            ]
        )
    first = data.resource_metrics[0]
    scopes = list(first.scope_metrics)
    for index, scope_metrics in enumerate(scopes):
        if scope_metrics.scope == scope:
            scopes[index] = ScopeMetrics(
                scope=scope, metrics=[*scope_metrics.metrics, *metrics], schema_url=scope_metrics.schema_url
            )
            break
    else:
        scopes.append(ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url or ""))
    merged = ResourceMetrics(resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url)
    return MetricsData(resource_metrics=[merged, *data.resource_metrics[1:]])
