"""A member's hand-over: its cumulative points, as plain JSON-able lists, and back.

A snapshot is what one collection of the member's pipeline returned (the core's series, the
observable instruments' values at that moment, the application's own OpenTelemetry instruments),
flattened to lists so that it crosses the group socket as JSON. Every point carries its attribute
set as one canonical JSON string: the merge uses it as the series' identity without decoding it.

Wire form of one metric: ``[scope, name, description, unit, kind, points]`` where ``scope`` is
``[name, version, schema_url, attributes]`` as a JSON string, ``kind`` is ``c`` (counter), ``u``
(up-down counter), ``g`` (gauge) or ``h`` (histogram), and a point is
``[attributes, value, start, time, exemplar]`` or, for histograms,
``[attributes, counts, sum, min, max, bounds, start, time, exemplars]``; an exemplar is
``[value, time, span_id, trace_id, filtered_attributes]`` (histograms: ``{bucket: exemplar}``).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Metric, MetricsData, Sum

__all__ = ["MetricData", "Metrics", "attributes_key", "attributes_of", "decode", "encode", "to_wire"]

#: (scope JSON, metric name): a metric's identity across members.
MetricId = tuple[str, str]


class MetricData:
    """One metric of one process: its metadata and ``{attributes key: point}``."""

    __slots__ = ("description", "kind", "name", "points", "scope", "unit")

    def __init__(self, scope: str, name: str, description: str, unit: str, kind: str) -> None:
        self.scope = scope
        self.name = name
        self.description = description
        self.unit = unit
        self.kind = kind
        self.points: dict[str, list[Any]] = {}


Metrics = dict[MetricId, MetricData]


#: One encoder for every key: json.dumps() with options builds a new one per call (a third of the time).
_KEY_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str).encode


def attributes_key(attributes: Mapping[str, Any]) -> str:
    """The canonical JSON of an attribute set (1, 1.0 and true stay distinct)."""
    return _KEY_ENCODER(sorted(attributes.items()))


def attributes_of(key: str) -> dict[str, Any]:
    """The attribute set back from its key (JSON lists become the tuples OpenTelemetry uses)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(key)}


def _scope_key(scope: Any) -> str:
    attributes = sorted((scope.attributes or {}).items())
    return json.dumps([scope.name, scope.version or "", scope.schema_url or "", attributes], default=str)


def _kind(metric: Metric) -> str | None:
    data = metric.data
    if isinstance(data, Sum):
        return "c" if data.is_monotonic else "u"
    if isinstance(data, Gauge):
        return "g"
    if isinstance(data, Histogram):
        return "h"
    return None  # exponential histograms: not merged


def _exemplar(exemplar: Any) -> list[Any]:
    filtered = None if exemplar.filtered_attributes is None else dict(exemplar.filtered_attributes)
    return [exemplar.value, exemplar.time_unix_nano, exemplar.span_id, exemplar.trace_id, filtered]


def _metrics(data: MetricsData | None) -> Iterator[tuple[str, Metric]]:
    if data is None:
        return
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            scope = _scope_key(scope_metrics.scope)
            for metric in scope_metrics.metrics:
                yield scope, metric


def encode(data: MetricsData | None) -> list[list[Any]]:
    """The wire form of one collection."""
    out: list[list[Any]] = []
    for scope, metric in _metrics(data):
        kind = _kind(metric)
        if kind is None:
            continue
        points: list[list[Any]] = []
        point: Any
        for point in metric.data.data_points:
            key = attributes_key(point.attributes or {})
            if kind == "h":
                bounds = list(point.explicit_bounds)
                exemplars = {
                    bisect_left(bounds, exemplar.value): _exemplar(exemplar)
                    for exemplar in point.exemplars or ()
                }
                points.append(
                    [
                        key,
                        list(point.bucket_counts),
                        point.sum,
                        point.min,
                        point.max,
                        bounds,
                        point.start_time_unix_nano,
                        point.time_unix_nano,
                        {str(index): value for index, value in exemplars.items()},
                    ]
                )
            else:
                exemplar = _exemplar(point.exemplars[-1]) if point.exemplars else None
                points.append([key, point.value, point.start_time_unix_nano, point.time_unix_nano, exemplar])
        out.append([scope, metric.name, metric.description or "", metric.unit or "", kind, points])
    return out


def decode(wire: list[Any]) -> Metrics:
    """A snapshot's metrics by identity; a histogram's exemplars keyed by bucket index."""
    metrics: Metrics = {}
    for scope, name, description, unit, kind, points in wire:
        metric = metrics.get((scope, name))
        if metric is None:
            metric = metrics[(scope, name)] = MetricData(scope, name, description, unit, kind)
        found = metric.points
        if kind == "h":
            for point in points:
                exemplars = point[8]
                point[8] = {int(index): value for index, value in exemplars.items()} if exemplars else {}
                point[5] = tuple(point[5])
                found[point[0]] = point[1:]
        else:
            for point in points:
                found[point[0]] = point[1:]
    return metrics


def points_wire(kind: str, points: Mapping[str, list[Any]]) -> list[list[Any]]:
    """Decoded points (``{key: point}``) back in wire form."""
    out = [[key, *point] for key, point in points.items()]
    if kind == "h":
        for point in out:
            point[5] = list(point[5])
            point[8] = {str(index): value for index, value in point[8].items()}
    return out


def to_wire(metrics: Metrics) -> list[list[Any]]:
    """Decoded metrics back in wire form (what :func:`decode` reads)."""
    out: list[list[Any]] = []
    for metric in metrics.values():
        points = points_wire(metric.kind, metric.points)
        out.append([metric.scope, metric.name, metric.description, metric.unit, metric.kind, points])
    return out
