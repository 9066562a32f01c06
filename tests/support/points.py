"""Read points out of an OpenTelemetry ``MetricsData`` by metric name and exact attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import Metric, MetricsData

__all__ = ["find_metric", "find_point", "metric_names"]


def _metrics(data: MetricsData | None) -> list[Metric]:
    if data is None:
        return []
    return [
        metric
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    ]


def metric_names(data: MetricsData | None) -> set[str]:
    return {metric.name for metric in _metrics(data)}


def find_metric(data: MetricsData | None, name: str) -> Metric:
    for metric in _metrics(data):
        if metric.name == name:
            return metric
    raise KeyError(f"no metric {name!r}; have {sorted(metric_names(data))}")


def find_point(data: MetricsData | None, name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """The point of ``name`` whose attributes are exactly ``attributes``."""
    wanted = dict(attributes or {})
    points: list[Any] = list(find_metric(data, name).data.data_points)
    for point in points:
        if dict(point.attributes or {}) == wanted:
            return point
    raise KeyError(f"{name}: no point {wanted}; have {[dict(p.attributes or {}) for p in points]}")
