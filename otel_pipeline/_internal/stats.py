"""/stats, /stats/{name} and /trends: the hooks' current values (and rates) as JSON.

Built from the pipeline's own collection (:meth:`Runtime.collect`), so it shows exactly what
the exporters see: every metric grouped by the hook that declared it (the catalogue's ``hook``
field) and by the hook's name attribute (``queue.name``, ``circuit_breaker.name`` ... — the first
``*.name`` attribute of the point; ``"*"`` for metrics without one). Metrics that are not in the
catalogue (the application's own instruments) are under the hook ``"other"``. The formats are
described in docs/hooks/health.md. The collectors /stats runs are given to :func:`stats_routes`
(the package's wiring gives it the health hook's).

Bodies are bounded: per hook, the first :data:`LISTED_NAMES` names are shown (in the order
the collection gives them, that is, first used first), plus ``"*"`` and the overflow name;
``"omitted"`` says how many more each hook has. /trends keeps rates of the same names only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Metric, MetricsData, Sum

from otel_pipeline._internal.catalogue import find
from otel_pipeline._internal.server import MetricsServer, Response, json_response
from otel_pipeline._internal.spec import MetricSpec
from otel_pipeline._internal.trends import Totals, Trends
from otel_pipeline._internal.wiring import RouteInstaller

if TYPE_CHECKING:
    from otel_pipeline._internal.runtime import Runtime

__all__ = [
    "ALL",
    "LISTED_NAMES",
    "Collectors",
    "group_key",
    "install_stats_routes",
    "stats_document",
    "stats_routes",
    "totals",
]

#: The group of points whose metric has no name attribute.
ALL = "*"
OTHER = "other"
#: Names shown per hook in /stats and /trends; the others are counted under "omitted".
LISTED_NAMES = 100
#: Always shown: the group without a name, and the hook that names past the name limit share.
_ALWAYS = (ALL, "otel.metric.overflow")


class Collectors(NamedTuple):
    """The stats collectors /stats runs: ``run(names)`` (every one when None) and their ``names()``."""

    run: Callable[[Iterable[str] | None], dict[str, dict[str, Any]]]
    names: Callable[[], list[str]]


#: No collectors: /stats shows the hooks' metrics only.
NO_COLLECTORS = Collectors(lambda names: {}, list)


def _metrics(data: MetricsData | None) -> Iterator[Metric]:
    if data is None:
        return
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            yield from scope_metrics.metrics


def group_key(spec: MetricSpec | None, attributes: dict[str, Any]) -> str | None:
    """The attribute that names the hook instance a point belongs to, if any."""
    declared = spec.attributes if spec is not None else ()
    for key in (*declared, *sorted(attributes)):
        if key.endswith(".name") and key in attributes:
            return key
    return None


def _kind(metric: Metric) -> str | None:
    data = metric.data
    if isinstance(data, Sum):
        return "counter" if data.is_monotonic else "updowncounter"
    if isinstance(data, Gauge):
        return "gauge"
    if isinstance(data, Histogram):
        return "histogram"
    return None


def _points(
    data: MetricsData | None, omitted: dict[str, set[str]] | None = None, wanted: str | None = None
) -> Iterator[tuple[str, str, Metric, str, dict[str, Any], Any]]:
    """(hook, group, metric, kind, remaining attributes, point) for the points of listed names.

    Past :data:`LISTED_NAMES` names per hook, the points of further names are skipped and those
    names added to ``omitted[hook]``; the name ``wanted`` is always listed.
    """
    listed: dict[str, set[str]] = {}
    for metric in _metrics(data):
        kind = _kind(metric)
        if kind is None:
            continue
        spec = find(metric.name)
        hook = spec.hook if spec is not None and spec.hook else OTHER
        names = listed.setdefault(hook, set())
        for point in metric.data.data_points:
            attributes = dict(point.attributes or {})
            key = group_key(spec, attributes)
            group = ALL if key is None else str(attributes.pop(key))
            if group not in names and group not in _ALWAYS and group != wanted:
                if len(names) >= LISTED_NAMES:
                    if omitted is not None:
                        omitted.setdefault(hook, set()).add(group)
                    continue
                names.add(group)
            yield hook, group, metric, kind, attributes, point


def stats_document(
    data: MetricsData | None, omitted: dict[str, int] | None = None, wanted: str | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{hook: {name: {metric: entry}}}`` for the points in ``data`` (see docs/hooks/health.md).

    ``omitted``, when given, receives the number of names left out per hook (see the module
    docs); the name ``wanted`` is never left out.
    """
    hooks: dict[str, dict[str, dict[str, Any]]] = {}
    left_out: dict[str, set[str]] = {}
    for hook, group, metric, kind, attributes, point in _points(data, left_out, wanted):
        metrics = hooks.setdefault(hook, {}).setdefault(group, {})
        entry = metrics.get(metric.name)
        if entry is None:
            entry = metrics[metric.name] = {"kind": kind, "unit": metric.unit or "", "points": []}
            if kind == "histogram":
                entry.update(count=0, sum=0.0)
            else:
                entry["value"] = 0
        if kind == "histogram":
            entry["count"] += point.count
            entry["sum"] += point.sum
            entry["points"].append(
                {
                    "attributes": attributes,
                    "count": point.count,
                    "sum": point.sum,
                    "min": point.min,
                    "max": point.max,
                    # Upper bounds and the count in each bucket (one more: past the last bound).
                    "bounds": list(point.explicit_bounds),
                    "buckets": list(point.bucket_counts),
                }
            )
        else:
            entry["value"] += point.value
            entry["points"].append({"attributes": attributes, "value": point.value})
    if omitted is not None:
        omitted.update((hook, len(names)) for hook, names in left_out.items())
    return hooks


def totals(data: MetricsData | None) -> Totals:
    """What /trends computes rates of: per (hook, name, metric), counter totals and histogram (count, sum)."""
    found: Totals = {}
    for hook, group, metric, kind, _, point in _points(data):
        key = (hook, group, metric.name)
        if kind == "counter":
            value, _sum = found.get(key, (0.0, None))
            found[key] = (value + point.value, None)
        elif kind == "histogram":
            count, total = found.get(key, (0.0, 0.0))
            found[key] = (count + point.count, (total or 0.0) + point.sum)
    return found


def _stats(pipeline: Runtime, name: str | None, collectors: Collectors) -> tuple[int, dict[str, Any]]:
    omitted: dict[str, int] = {}
    hooks = stats_document(pipeline.collect_group(), omitted, name)
    body: dict[str, Any] = {"service": pipeline.config.service_name, "time": time.time()}
    if name is None:
        body.update(hooks=hooks, collectors=collectors.run(None))
        if omitted:
            body["omitted"] = omitted
        return 200, body
    if name in hooks:
        selected = {name: hooks[name]}
        if name in omitted:
            body["omitted"] = {name: omitted[name]}
    else:
        selected = {hook: {name: groups[name]} for hook, groups in hooks.items() if name in groups}
    found: dict[str, Any] = {}
    if name == "collectors" or name in collectors.names():
        found = collectors.run(None if name == "collectors" else [name])
    if not selected and not found:
        # Only what was asked: listing every hook and collector name would grow with the names.
        return 404, {"error": "not found", "name": name}
    body.update(hooks=selected, collectors=found)
    return 200, body


def stats_routes(collectors: Collectors) -> RouteInstaller:
    """The route installer of /stats, /stats/{name} and /trends, running ``collectors``."""

    def install(server: MetricsServer, pipeline: Runtime) -> None:
        install_stats_routes(server, pipeline, collectors)

    return install


def install_stats_routes(
    server: MetricsServer, pipeline: Runtime, collectors: Collectors = NO_COLLECTORS
) -> None:
    """Add /stats, /stats/{name} and /trends to ``server``; start the trends snapshotter."""
    trends = Trends(lambda: totals(pipeline.collect_group(refresh=False)))

    def stats(path: str, headers: dict[str, str]) -> Response:
        name = path[len("/stats/") :] if path.startswith("/stats/") else ""
        return json_response(*_stats(pipeline, name or None, collectors))

    def trend(path: str, headers: dict[str, str]) -> Response:
        body = {"service": pipeline.config.service_name, **trends.report()}
        return json_response(200, body)

    server.add_route("/stats", stats)
    server.add_route("/stats/", stats, prefix=True)
    server.add_route("/trends", trend)
    trends.start()
    pipeline.on_shutdown.append(trends.stop)
