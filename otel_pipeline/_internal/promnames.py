"""The Prometheus names the default ``/metrics`` endpoint gives each catalogue metric.

The rules are those of ``opentelemetry-exporter-prometheus`` (which serves ``/metrics``), applied
with its own helpers so that they cannot drift: the name is sanitized (runs of characters other
than ``[a-zA-Z0-9:]`` become ``_``), the unit is mapped (``s`` -> ``seconds``, ``By`` ->
``bytes``, ``{annotations}`` dropped, ``1`` -> nothing) and appended unless the name already ends
with it, and counters get ``_total``. Up-down counters become gauges. Attribute keys become
labels with ``.`` -> ``_``. Docs, dashboards and alert rules are generated with these functions.

>>> from otel_pipeline._internal.spec import Kind
>>> metric_name("queue.job.duration", "s", Kind.HISTOGRAM)
'queue_job_duration_seconds'
>>> metric_name("queue.jobs.enqueued", "{job}", Kind.COUNTER)
'queue_jobs_enqueued_total'
>>> label_name("queue.name")
'queue_name'
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_attribute, sanitize_full_name

from otel_pipeline._internal.spec import Kind, MetricSpec

__all__ = ["label_name", "metric_name", "prometheus_name", "prometheus_type", "sample_names"]

_TYPES = {
    Kind.COUNTER: "counter",
    Kind.OBSERVABLE_COUNTER: "counter",
    # The exporter turns cumulative non-monotonic sums into gauges.
    Kind.UP_DOWN_COUNTER: "gauge",
    Kind.OBSERVABLE_UP_DOWN_COUNTER: "gauge",
    Kind.GAUGE: "gauge",
    Kind.OBSERVABLE_GAUGE: "gauge",
    Kind.HISTOGRAM: "histogram",
}


def prometheus_type(kind: Kind) -> str:
    """The Prometheus metric type of an instrument kind: ``counter``, ``gauge`` or ``histogram``.

    >>> prometheus_type(Kind.UP_DOWN_COUNTER)
    'gauge'
    """
    return _TYPES[kind]


def metric_name(name: str, unit: str, kind: Kind) -> str:
    """The name to query in Prometheus (a counter's ``_total`` included; histograms: the base name).

    >>> metric_name("cache.size", "By", Kind.OBSERVABLE_UP_DOWN_COUNTER)
    'cache_size_bytes'
    """
    base = sanitize_full_name(name)
    prom_type = _TYPES[kind]
    if prom_type == "counter" and base.endswith("_total"):
        base = base[: -len("_total")]  # prometheus_client strips it before adding the unit
    suffix = map_unit(unit)
    if suffix and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    return f"{base}_total" if prom_type == "counter" else base


def prometheus_name(spec: MetricSpec) -> str:
    """:func:`metric_name` of a catalogue entry.

    >>> from otel_pipeline._internal.catalogue import declared
    >>> names = {spec.name: prometheus_name(spec) for spec in declared()}
    >>> names["queue.jobs.in_progress"]
    'queue_jobs_in_progress'
    """
    return metric_name(spec.name, spec.unit, spec.kind)


def sample_names(spec: MetricSpec) -> tuple[str, ...]:
    """Every sample name the metric's family exposes (a histogram's ``_bucket``, ``_sum``, ``_count``).

    >>> from otel_pipeline._internal.catalogue import declared
    >>> [sample_names(s) for s in declared() if s.name == "queue.job.duration"][0][0]
    'queue_job_duration_seconds_bucket'
    """
    name = prometheus_name(spec)
    if spec.kind is Kind.HISTOGRAM:
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    return (name,)


def label_name(key: str) -> str:
    """The Prometheus label an attribute key becomes.

    >>> label_name("error.type")
    'error_type'
    """
    return sanitize_attribute(key)
