"""The /metrics exposition: Prometheus text and OpenMetrics (with exemplars) straight from MetricsData.

:class:`ScrapeReader` is a metric reader collected by the scrape itself; :func:`render` writes what it
collected. Metric names, label names and values, HELP/TYPE/UNIT lines, ``target_info`` and the
``otel_scope_*`` labels are those of opentelemetry-exporter-prometheus 0.66b2's
``PrometheusMetricReader`` rendered by prometheus_client (the text format byte for byte; the
differential tests prove it). What we add: exemplars in the OpenMetrics output, on counter
``_total`` samples and histogram ``_bucket`` samples, from measurements made inside sampled spans.
What we write faster: the lines directly, each point's label set rendered once (not once per
bucket), without building prometheus_client families and samples.

Where the stock output is wrong we differ: two metrics of different scopes in one Prometheus family
but with different label names keep each sample's own labels (the stock exporter pairs the second
one's values with the first one's names); exponential histograms are left out (the stock exporter
fails the scrape); a ``:`` in a name (from a unit) stays in OpenMetrics sample names too (the stock
exporter turns it into ``_`` there only, so samples no longer match their family).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from json import dumps
from typing import Any, cast

from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute, sanitize_full_name
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    CardinalityLimits,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv._incubating.attributes.otel_attributes import OtelComponentTypeValues
from prometheus_client import utils as _prometheus_utils
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name

from otel_pipeline._internal.errors import warn_once
from otel_pipeline._internal.validation import safe_repr

__all__ = [
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "ScrapeReader",
    "negotiate",
    "render",
]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

#: prometheus_client's float formatting (``+Inf``, ``NaN``, Go-style exponents), typed.
_go_float = cast("Callable[[float], str]", _prometheus_utils.floatToGoString)
_CACHE_LIMIT = 10_000
_names: dict[tuple[str, str], tuple[str, str]] = {}  # (name, unit) -> (sanitized name, Prometheus unit)
_label_names: dict[str, str] = {}  # attribute key -> label name
_numbers: dict[int, str] = {}  # small integer -> Go float string
_bounds: dict[tuple[float, ...], tuple[str, ...]] = {}  # explicit bounds -> le values, +Inf last


def negotiate(accept: str) -> bool:
    """True when the ``Accept`` header asks for OpenMetrics 1.x (prometheus_client's rule).

    >>> negotiate("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
    True
    >>> negotiate("text/plain")
    False
    """
    for accepted in accept.split(","):
        tokens = accepted.split(";")
        if tokens[0].strip() != "application/openmetrics-text":
            continue
        version = ""
        for token in tokens[1:]:
            key, _, value = token.strip().partition("=")
            if key == "version":
                version = value
                break
        if not version or _major(version) >= 1:
            return True
    return False


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def render(
    data: MetricsData | None, *, openmetrics: bool = False, retained: dict[str, Any] | None = None
) -> bytes:
    """The exposition of ``data``: Prometheus text 0.0.4, or OpenMetrics 1.0 with exemplars.

    ``retained`` keeps the latest exemplar of each counter sample and histogram bucket from one
    call to the next (whatever the format): a sample whose point has none shows the retained one.

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    >>> from opentelemetry.sdk.resources import Resource
    >>> reader = InMemoryMetricReader()
    >>> meter = MeterProvider(resource=Resource({}), metric_readers=[reader]).get_meter("app")
    >>> meter.create_counter("jobs", "{job}", "Jobs done.").add(2, {"queue": "emails"})
    >>> print(render(reader.get_metrics_data()).decode(), end="")
    # HELP target_info Target metadata
    # TYPE target_info gauge
    target_info 1.0
    # HELP jobs_total Jobs done.
    # TYPE jobs_total counter
    jobs_total{otel_scope_name="app",otel_scope_schema_url="",otel_scope_version="",queue="emails"} 2.0
    """
    if data is None:
        return b"# EOF\n" if openmetrics else b""
    families: dict[str, list[str]] = {}
    resource: dict[str, Any] = {}
    for resource_metrics in data.resource_metrics:
        resource.update(resource_metrics.resource.attributes)
    families["target"] = [_target_info(resource, openmetrics)]
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            scope = _scope_labels(scope_metrics.scope)
            for metric in scope_metrics.metrics:
                _render_metric(metric, scope, families, openmetrics, retained)
    body = "".join(["".join(lines) for lines in families.values()])
    if openmetrics:
        body += "# EOF\n"
    return body.encode()


class ScrapeReader(MetricReader):
    """A metric reader collected on demand by the /metrics scrape, with exemplars in OpenMetrics.

    Each collection takes the exemplars measured since the previous one; the reader keeps the latest
    of each counter sample and histogram bucket until a newer one replaces it (as prometheus_client
    does), so every scrape shows them, not only the first after the measurement.

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> reader = ScrapeReader()
    >>> provider = MeterProvider(metric_readers=[reader])
    >>> provider.get_meter("app").create_counter("jobs", "1", "Jobs done.").add(1)
    >>> body, content_type = reader.scrape("application/openmetrics-text")
    >>> content_type == OPENMETRICS_CONTENT_TYPE, body.splitlines()[-1]
    (True, b'# EOF')
    >>> provider.shutdown()
    """

    def __init__(self, cardinality_limits: CardinalityLimits | None = None) -> None:
        super().__init__(
            cardinality_limits=cardinality_limits,
            otel_component_type=OtelComponentTypeValues.PROMETHEUS_HTTP_TEXT_METRIC_EXPORTER,
        )
        self._lock = threading.Lock()
        self._received: MetricsData | None = None
        #: The latest exemplars, by sample (see :func:`render`); bounded by the series there are.
        self._exemplars: dict[str, Any] = {}

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._received = metrics_data

    def collect_now(self, timeout_millis: float = 10_000) -> MetricsData | None:
        """Collect from the MeterProvider and return what arrived (None before registration)."""
        with self._lock:
            return self._collect_received(timeout_millis)

    def _collect_received(self, timeout_millis: float) -> MetricsData | None:
        self._received = None
        self.collect(timeout_millis=timeout_millis)
        data, self._received = self._received, None
        return data

    def scrape(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) answering a scrape whose ``Accept`` header is ``accept``."""
        openmetrics = negotiate(accept)
        with self._lock:  # one scrape at a time updates the retained exemplars
            body = render(self._collect_received(10_000), openmetrics=openmetrics, retained=self._exemplars)
        return body, OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to release: the scrape pulls, nothing is buffered."""


# -- values and labels ------------------------------------------------------------------------


def _number(value: float) -> str:
    """prometheus_client's Go-style float string, memoised for the small integers counts are."""
    if type(value) is int and 0 <= value < _CACHE_LIMIT:
        text = _numbers.get(value)
        if text is None:
            text = _numbers[value] = _go_float(value)
        return text
    return _go_float(value)


def _label_name(key: str) -> str:
    name = _label_names.get(key)
    if name is None:
        name = escape_label_name(sanitize_attribute(key))
        if len(_label_names) < _CACHE_LIMIT:
            _label_names[key] = name
    return name


def _label_value(value: Any) -> str:
    """The stock exporter's label value (JSON for non-strings), escaped for the exposition."""
    text = value if type(value) is str else dumps(value, default=str)
    if "\\" in text or "\n" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return text


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join([f'{name}="{value}"' for name, value in pairs])


def _scope_labels(scope: InstrumentationScope) -> dict[str, str]:
    attributes: dict[str, Any] = {}
    for key, value in (scope.attributes or {}).items():
        attributes["otel_scope_" + key] = value
    attributes["otel_scope_name"] = scope.name or ""
    attributes["otel_scope_version"] = scope.version or ""
    attributes["otel_scope_schema_url"] = scope.schema_url or ""
    return {_label_name(key): _label_value(value) for key, value in attributes.items()}


def _target_info(resource: Mapping[str, Any], openmetrics: bool) -> str:
    labels = {_label_name(key): _label_value(value) for key, value in resource.items()}
    sample = "target_info" + (f"{{{_labels(sorted(labels.items()))}}}" if labels else "") + " 1.0\n"
    if openmetrics:
        return f"# HELP target Target metadata\n# TYPE target info\n{sample}"
    return f"# HELP target_info Target metadata\n# TYPE target_info gauge\n{sample}"


def _help(description: str, openmetrics: bool) -> str:
    text = description.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def _le_values(bounds: Sequence[float]) -> tuple[str, ...]:
    key = tuple(bounds)
    found = _bounds.get(key)
    if found is None:
        found = (*(f"{bound}" for bound in key), "+Inf")
        if len(_bounds) < _CACHE_LIMIT:
            _bounds[key] = found
    return found


def _exemplar(exemplar: Any) -> str:
    """`` # {trace_id="..",span_id=".."} value seconds``, or "" without trace and span ids."""
    span_id, trace_id = exemplar.span_id, exemplar.trace_id
    if span_id is None or trace_id is None:
        return ""
    ns = int(exemplar.time_unix_nano)
    seconds = f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
    value = _go_float(exemplar.value)
    return f' # {{trace_id="{trace_id:032x}",span_id="{span_id:016x}"}} {value} {seconds}'


# -- metrics ----------------------------------------------------------------------------------


def _names_of(metric: Metric) -> tuple[str, str]:
    key = (metric.name, metric.unit or "")
    found = _names.get(key)
    if found is None:
        found = (sanitize_full_name(metric.name), map_unit(metric.unit or ""))
        if len(_names) < _CACHE_LIMIT:
            _names[key] = found
    return found


def _kind(metric: Metric) -> str | None:
    data = metric.data
    if isinstance(data, Sum):
        cumulative = data.aggregation_temporality == AggregationTemporality.CUMULATIVE
        # Prometheus compatibility: cumulative non-monotonic sums are gauges.
        return "gauge" if not data.is_monotonic and cumulative else "counter"
    if isinstance(data, Gauge):
        return "gauge"
    if isinstance(data, Histogram):
        return "histogram"
    return None


def _family_name(name: str, unit: str, kind: str) -> str:
    if kind == "counter" and name.endswith("_total"):
        name = name[:-6]
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    return str(escape_metric_name(name))


def _header(family: str, kind: str, unit: str, description: str, openmetrics: bool) -> str:
    exposed = family + "_total" if kind == "counter" and not openmetrics else family
    lines = f"# HELP {exposed} {_help(description, openmetrics)}\n# TYPE {exposed} {kind}\n"
    if openmetrics and unit:
        lines += f"# UNIT {family} {unit}\n"
    return lines


def _render_metric(
    metric: Metric,
    scope: dict[str, str],
    families: dict[str, list[str]],
    openmetrics: bool,
    retained: dict[str, Any] | None = None,
) -> None:
    kind = _kind(metric)
    if kind is None:
        warn_once(
            f"exposition:{metric.name}",
            "/metrics: %s has data of type %s, which Prometheus cannot show; skipped",
            metric.name,
            type(metric.data).__name__,
        )
        return
    name, unit = _names_of(metric)
    description = metric.description or ""
    family = _family_name(name, unit, kind)
    family_id = f"{name}|{description}|{unit}|{kind}"
    lines = families.get(family_id)
    if lines is None:
        lines = families[family_id] = [_header(family, kind, unit, description, openmetrics)]
    points, order, rows = _rows(metric, scope)
    if kind == "histogram":
        _histogram_lines(metric, family, points, order, rows, lines, openmetrics, retained)
        return
    sample = family + "_total" if kind == "counter" else family
    counter = kind == "counter"
    retained = retained if counter else None
    for point, row in zip(points, rows, strict=False):
        braced = f"{{{','.join(row)}}}" if row else ""
        try:
            exemplar = point.exemplars[-1] if counter and point.exemplars else None
            if retained is not None:
                if exemplar is not None:
                    retained[sample + braced] = exemplar
                elif retained:
                    exemplar = retained.get(sample + braced)
            suffix = _exemplar(exemplar) if openmetrics and exemplar is not None else ""
            lines.append(f"{sample}{braced} {_number(point.value)}{suffix}\n")
        except Exception:  # a value no float holds (10**400), not a number: this point only
            _unrenderable(metric, point)


def _unrenderable(metric: Metric, point: Any) -> None:
    warn_once(
        f"exposition-value:{metric.name}",
        "/metrics: %s has a point that cannot be rendered (value %s); such points are skipped",
        metric.name,
        safe_repr(getattr(point, "value", getattr(point, "sum", None))),
    )


def _rows(metric: Metric, scope: dict[str, str]) -> tuple[list[Any], list[str], list[list[str]]]:
    """The points that can be rendered, the label names, sorted, and each point's ``name="value"`` pairs.

    A point has the scope labels, then its attributes; a name only other points have gets "". A
    point whose labels cannot be rendered is left out (one warning), not the whole scrape.
    """
    points: list[Any] = []
    dicts: list[dict[str, str]] = []
    names: set[str] = set()
    for point in metric.data.data_points:
        labels = dict(scope)
        try:
            for key, value in (point.attributes or {}).items():
                labels[_label_name(key)] = _label_value(value)
        except Exception:
            _unrenderable(metric, point)
            continue
        names.update(labels)
        dicts.append(labels)
        points.append(point)
    order = sorted(names)
    return points, order, [[f'{name}="{labels.get(name, "")}"' for name in order] for labels in dicts]


def _histogram_lines(
    metric: Metric,
    family: str,
    points: Sequence[Any],
    order: list[str],
    rows: list[list[str]],
    lines: list[str],
    openmetrics: bool,
    retained: dict[str, Any] | None = None,
) -> None:
    # Bucket samples carry ``le`` in its sorted place; it replaces an attribute named ``le``.
    split = bisect_left(order, "le")
    resume = split + 1 if split < len(order) and order[split] == "le" else split
    for point, row in zip(points, rows, strict=False):
        try:
            sum_text = _number(point.sum)
        except Exception:  # a sum no float holds: this point only
            _unrenderable(metric, point)
            continue
        le_values = _le_values(point.explicit_bounds)
        head = family + "_bucket{" + "".join([pair + "," for pair in row[:split]]) + 'le="'
        tail = '"' + "".join(["," + pair for pair in row[resume:]]) + "} "
        exemplars = _bucket_exemplars(point) if openmetrics or retained is not None else None
        if retained is not None:
            # Kept by the point's labels; its new exemplars replace those of their buckets only.
            kept = retained.get(head + tail) if retained else None
            if exemplars:
                exemplars = retained[head + tail] = {**kept, **exemplars} if kept else exemplars
            else:
                exemplars = kept
        total = 0
        for index, (le, count) in enumerate(zip(le_values, point.bucket_counts, strict=False)):
            total += count
            number = _numbers.get(total) or _number(total)
            if openmetrics and exemplars and index in exemplars:
                number += _exemplar(exemplars[index])
            lines.append(f"{head}{le}{tail}{number}\n")
        # Like prometheus_client: no _count/_sum when a bucket bound is negative.
        if point.bucket_counts and float(le_values[0]) >= 0:
            braced = f"{{{','.join(row)}}}" if row else ""
            lines.append(f"{family}_count{braced} {_number(total)}\n")
            lines.append(f"{family}_sum{braced} {sum_text}\n")


def _bucket_exemplars(point: HistogramDataPoint) -> dict[int, Any]:
    """The last exemplar of each bucket, by bucket index (a bucket holds values <= its bound)."""
    found: dict[int, Any] = {}
    for exemplar in point.exemplars or ():
        found[bisect_left(point.explicit_bounds, exemplar.value)] = exemplar
    return found
