"""The hub's merge: the group's points from every live member's latest snapshot and the departed ones.

Each metric merges by its catalogue rule (``MetricSpec.merge_rule``; the application's own
instruments by their kind's default):

- ``sum``: counters and histograms. The live members' points plus the *departed accumulator*,
  into which a member's last snapshot folds when it leaves: one set of points for all the
  members that ever left, so memory does not grow with recycled workers, and totals never go
  backwards when one is. Histograms add bucket by bucket (sum, count; min and max of all).
- ``live_sum``: up-down counters (in flight, in progress, active): the live members only, a
  dead worker's in-flight work is gone with it.
- ``last`` / ``max`` / ``min``: gauges of one shared thing (a broker queue's depth observed by
  every worker): the latest observation, the largest, the smallest, over live members.
- ``per_process``: each live member's own points, with a ``process.pid`` attribute.
- ``ratio:NUM/DEN+...``: recomputed from the merged counters (never averaged), per the ratio's
  own attributes; absent where the denominator is 0.

Exemplars: the most recent per histogram bucket (per series for counters) among the members,
kept until a newer one arrives. The cardinality cap applies to the merged series: past
``limit`` attribute sets a metric's further sets fold into ``otel.metric.overflow=true``; for
``sum`` metrics the admitted sets are remembered, so a series never moves to the overflow later
(its total would go backwards).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from operator import add
from typing import Any

from opentelemetry.sdk.metrics._internal.exemplar import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_pipeline._internal.catalogue import declared, find
from otel_pipeline._internal.errors import warn_once
from otel_pipeline._internal.group.snapshot import (
    MetricData,
    MetricId,
    Metrics,
    attributes_key,
    attributes_of,
    points_wire,
)
from otel_pipeline._internal.spec import RatioTerm, default_merge, parse_ratio

__all__ = ["OVERFLOW_KEY", "Merger", "Source", "rule_of"]

OVERFLOW_KEY = attributes_key({"otel.metric.overflow": True})
_CUMULATIVE = AggregationTemporality.CUMULATIVE
_KIND_DEFAULTS = {"c": "sum", "h": "sum", "u": "live_sum", "g": "last"}


def rule_of(name: str, kind: str) -> str:
    """The merge rule of metric ``name`` (the full ``ratio:...`` text for ratios)."""
    spec = find(name)
    if spec is None:
        return _KIND_DEFAULTS[kind]
    return spec.merge if spec.merge else default_merge(spec.kind)


class Source:
    """One live process's latest snapshot."""

    __slots__ = ("health", "metrics", "pid", "time")

    def __init__(self, pid: int, metrics: Metrics, time: float, health: Any = None) -> None:
        self.pid = pid
        self.metrics = metrics
        self.time = time
        self.health = health

    def carry_exemplars(self, previous: Source | None) -> None:
        """Keep the previous snapshot's exemplars where this one has none.

        Each snapshot only carries the exemplars recorded since the one before.
        """
        if previous is None:
            return
        for metric_id, old in previous.metrics.items():
            new = self.metrics.get(metric_id)
            if new is None or new.kind != old.kind:
                continue
            histogram = old.kind == "h"
            for key, point in old.points.items():
                fresh = new.points.get(key)
                if fresh is None:
                    continue
                if histogram:
                    if point[7]:
                        fresh[7] = {**point[7], **fresh[7]}
                elif point[3] is not None and fresh[3] is None:
                    fresh[3] = point[3]


def _newer(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b[1] >= a[1] else a


def _add(into: list[Any], point: list[Any], histogram: bool) -> bool:
    """Add ``point`` into the accumulated ``into`` (same layout); False when they cannot add."""
    if histogram:
        counts = into[0]
        if into[4] != point[4] or len(counts) != len(point[0]):
            return False
        # map(add) and plain comparisons rather than a comprehension and min()/max(): the hub runs
        # this for every member's every point at each scrape (same results, about half the time).
        into[0] = list(map(add, counts, point[0]))
        into[1] += point[1]
        if point[2] < into[2]:
            into[2] = point[2]
        if point[3] > into[3]:
            into[3] = point[3]
        if point[5] < into[5]:
            into[5] = point[5]
        if point[6] > into[6]:
            into[6] = point[6]
        if point[7]:
            exemplars = dict(into[7])
            for index, exemplar in point[7].items():
                exemplars[index] = _newer(exemplars.get(index), exemplar)
            into[7] = exemplars
        return True
    into[0] += point[0]
    if point[1] is not None:
        into[1] = point[1] if into[1] is None else min(into[1], point[1])
    if point[2] > into[2]:
        into[2] = point[2]
    if point[3] is not None:
        into[3] = _newer(into[3], point[3])
    return True


def _copy(point: list[Any]) -> list[Any]:
    return list(point)


class _Merged:
    """One metric being merged: metadata from the first source that has it, and its points."""

    __slots__ = ("meta", "points", "rule")

    def __init__(self, meta: MetricData, rule: str) -> None:
        self.meta = meta
        self.rule = rule
        self.points: dict[str, list[Any]] = {}


class Merger:
    """The departed accumulator and the cap's memory; :meth:`merge` makes the group's points."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Folded totals of every member that left, ``sum`` metrics only.
        self.departed: dict[MetricId, _Merged] = {}
        #: How many members folded into it.
        self.departed_members = 0
        #: Attribute sets admitted under the cap, per ``sum`` metric (never taken back).
        self._admitted: dict[MetricId, dict[str, None]] = {}

    # -- the departed ---------------------------------------------------------------------

    def fold(self, metrics: Metrics, members: int = 1) -> None:
        """A member left: its last totals of every ``sum`` metric join the departed accumulator."""
        for metric_id, metric in metrics.items():
            if rule_of(metric.name, metric.kind) != "sum":
                continue
            target = self.departed.get(metric_id)
            if target is None:
                target = self.departed[metric_id] = _Merged(metric, "sum")
            self._accumulate(target, metric_id, metric.points.items(), metric.kind == "h")
        self.departed_members += members

    def departed_wire(self) -> list[list[Any]]:
        """The departed accumulator in wire form (handed to the next hub)."""
        out: list[list[Any]] = []
        for merged in self.departed.values():
            meta = merged.meta
            points = points_wire(meta.kind, merged.points)
            out.append([meta.scope, meta.name, meta.description, meta.unit, meta.kind, points])
        return out

    # -- the merge ------------------------------------------------------------------------

    def _key(self, metric_id: MetricId, key: str, live: dict[str, None] | None) -> str:
        """``key`` under the cap: remembered for ``sum`` metrics, per merge (``live``) otherwise."""
        admitted = live if live is not None else self._admitted.setdefault(metric_id, {})
        if key in admitted:
            return key
        if len(admitted) < self.limit:
            admitted[key] = None
            return key
        warn_once(
            f"group-overflow:{metric_id[1]}",
            "metric %s reached its cardinality limit of %d attribute sets over the worker group; "
            "further sets are folded into otel.metric.overflow=true",
            metric_id[1],
            self.limit,
        )
        return OVERFLOW_KEY

    def _accumulate(
        self, target: _Merged, metric_id: MetricId, points: Iterable[tuple[str, list[Any]]], histogram: bool
    ) -> None:
        found = target.points
        for key, point in points:
            key = self._key(metric_id, key, None)
            existing = found.get(key)
            if existing is None:
                found[key] = _copy(point)
            elif not _add(existing, point, histogram):
                warn_once(
                    f"group-bounds:{metric_id[1]}",
                    "metric %s: members record it with different histogram buckets; a member's points "
                    "that do not match are left out of the group",
                    metric_id[1],
                )

    def merge(self, sources: list[Source]) -> dict[MetricId, _Merged]:
        """The group's metrics from the live ``sources`` (the hub's own first) and the departed."""
        merged: dict[MetricId, _Merged] = {}
        ratios: list[MetricId] = []
        live_caps: dict[MetricId, dict[str, None]] = {}
        for metric_id, departed in self.departed.items():
            target = merged[metric_id] = _Merged(departed.meta, "sum")
            target.points = {key: _copy(point) for key, point in departed.points.items()}
        for source in sources:
            for metric_id, metric in source.metrics.items():
                found = merged.get(metric_id)
                if found is None:
                    rule = rule_of(metric.name, metric.kind)
                    target = merged[metric_id] = _Merged(metric, rule)
                    if rule.startswith("ratio:"):
                        ratios.append(metric_id)
                else:
                    target = found
                if target.meta.kind != metric.kind:
                    continue  # the same name as another kind elsewhere: the first one wins
                rule = target.rule
                if rule.startswith("ratio:"):
                    continue
                histogram = metric.kind == "h"
                if rule == "sum":
                    self._accumulate(target, metric_id, metric.points.items(), histogram)
                    continue
                cap = live_caps.setdefault(metric_id, {})
                if rule == "per_process":
                    for key, point in metric.points.items():
                        pid_key = self._key(metric_id, _with_pid(key, source.pid), cap)
                        target.points[pid_key] = _copy(point)
                    continue
                for key, point in metric.points.items():
                    key = self._key(metric_id, key, cap)
                    existing = target.points.get(key)
                    if existing is None:
                        target.points[key] = _copy(point)
                    elif rule == "live_sum":
                        _add(existing, point, histogram)
                    elif _replaces(rule, existing, point, histogram):
                        target.points[key] = _copy(point)
        _add_ratios(merged, ratios)
        return merged


def _with_pid(key: str, pid: int) -> str:
    attributes = json.loads(key)
    attributes.append(["process.pid", pid])
    attributes.sort()
    return json.dumps(attributes, separators=(",", ":"))


def _replaces(rule: str, existing: list[Any], point: list[Any], histogram: bool) -> bool:
    """For last/max/min: whether ``point`` wins over ``existing`` (histograms: the latest)."""
    if histogram or rule == "last":
        time = 6 if histogram else 2
        return bool(point[time] >= existing[time])
    if rule == "max":
        return bool(point[0] > existing[0])
    return bool(point[0] < existing[0])


def _term_values(term: RatioTerm, by: tuple[str, ...], merged: dict[MetricId, _Merged]) -> dict[str, float]:
    """The merged values of ``term``'s metric passing its filter, summed per ``by`` attributes."""
    name, wanted = term
    values: dict[str, float] = {}
    for (_, metric_name), metric in merged.items():
        if metric_name != name or metric.meta.kind == "h":
            continue
        for key, point in metric.points.items():
            attributes = attributes_of(key)
            if any(str(attributes.get(k)) != v for k, v in wanted):
                continue
            group = attributes_key({k: attributes[k] for k in by if k in attributes})
            values[group] = values.get(group, 0.0) + point[0]
    return values


def _add_ratios(merged: dict[MetricId, _Merged], reported: list[MetricId]) -> None:
    """Every catalogue ratio whose counters the group has, whether a live member reports it or not.

    The counters of departed members alone make a ratio too.
    """
    present = {metric_id[1]: metric_id for metric_id in merged}
    for spec in declared():
        if not spec.merge.startswith("ratio:") or spec.name in present:
            continue
        numerator, _ = parse_ratio(spec.merge)
        counter = present.get(numerator[0])
        if counter is not None:
            meta = MetricData(counter[0], spec.name, spec.description, spec.unit, "g")
            metric_id = (counter[0], spec.name)
            merged[metric_id] = _Merged(meta, spec.merge)
            reported.append(metric_id)
    for metric_id in reported:
        _ratio(merged[metric_id], merged)


def _ratio(target: _Merged, merged: dict[MetricId, _Merged]) -> None:
    numerator, denominators = parse_ratio(target.rule)
    spec = find(target.meta.name)
    by = spec.attributes if spec is not None else ()
    tops = _term_values(numerator, by, merged)
    bottoms: dict[str, float] = {}
    for term in denominators:
        for group, value in _term_values(term, by, merged).items():
            bottoms[group] = bottoms.get(group, 0.0) + value
    target.points = {}
    for group, bottom in bottoms.items():
        if bottom > 0:
            target.points[group] = [tops.get(group, 0.0) / bottom, None, 0, None]


# -- to OpenTelemetry --------------------------------------------------------------------------


def _exemplar(raw: list[Any] | None) -> list[Exemplar]:
    if raw is None:
        return []
    value, time, span_id, trace_id, filtered = raw
    return [Exemplar(filtered, value, time, span_id, trace_id)]


def _metric(merged: _Merged, now: int) -> Metric | None:
    meta = merged.meta
    if not merged.points:
        return None
    data: Any
    if meta.kind == "h":
        points: list[Any] = [
            HistogramDataPoint(
                attributes=attributes_of(key),
                start_time_unix_nano=p[5],
                time_unix_nano=now,
                count=sum(p[0]),
                sum=p[1],
                bucket_counts=tuple(p[0]),
                explicit_bounds=tuple(p[4]),
                min=p[2],
                max=p[3],
                exemplars=[e for index in sorted(p[7]) for e in _exemplar(p[7][index])],
            )
            for key, p in merged.points.items()
        ]
        data = Histogram(data_points=points, aggregation_temporality=_CUMULATIVE)
    else:
        points = [
            NumberDataPoint(
                attributes=attributes_of(key),
                start_time_unix_nano=p[1],
                time_unix_nano=now,
                value=p[0],
                exemplars=_exemplar(p[3]),
            )
            for key, p in merged.points.items()
        ]
        if meta.kind == "g":
            data = Gauge(data_points=points)
        else:
            data = Sum(data_points=points, aggregation_temporality=_CUMULATIVE, is_monotonic=meta.kind == "c")
    return Metric(name=meta.name, description=meta.description, unit=meta.unit, data=data)


def _scope(key: str) -> InstrumentationScope:
    name, version, schema_url, attributes = json.loads(key)
    return InstrumentationScope(name, version or None, schema_url or None, dict(attributes) or None)


def to_metrics_data(merged: dict[MetricId, _Merged], resource: Resource, now: int) -> MetricsData:
    """The merged metrics as what a reader collects: one resource, one entry per scope."""
    scopes: dict[str, list[Metric]] = {}
    for (scope, _), metric in merged.items():
        built = _metric(metric, now)
        if built is not None:
            scopes.setdefault(scope, []).append(built)
    scope_metrics = []
    for key, metrics in scopes.items():
        made = _scope(key)
        scope_metrics.append(ScopeMetrics(scope=made, metrics=metrics, schema_url=made.schema_url or ""))
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(resource=resource, scope_metrics=scope_metrics, schema_url=resource.schema_url)
        ]
    )
