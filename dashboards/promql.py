"""PromQL building blocks: catalogue metrics by their OpenTelemetry name, filtered by the dashboard variables.

Every metric name in a dashboard or rule goes through :func:`metric`, which looks it up in the
metric catalogue and returns the name the Prometheus exporter gives it, so a renamed or removed
metric fails generation instead of leaving an empty panel behind.

>>> metric("queue.jobs.enqueued")
'queue_jobs_enqueued_total'
>>> rate("queue.jobs.enqueued", "queue.name", selector="", window="5m")
'sum by (job, queue_name) (rate(queue_jobs_enqueued_total[5m]))'
"""

from __future__ import annotations

from functools import cache

from otel_pipeline._internal.promnames import label_name, prometheus_name
from otel_pipeline._internal.spec import Kind, MetricSpec
from otel_pipeline.hooks import all_metrics

__all__ = [
    "DASHBOARD_SELECTOR",
    "RATE_WINDOW",
    "by",
    "failure_ratio",
    "histogram_quantile",
    "metric",
    "plus_optional",
    "rate",
    "selected",
    "share",
    "spec",
    "used_metrics",
]

#: The label matchers every dashboard query carries: the service (job) and instance variables.
DASHBOARD_SELECTOR = 'job=~"$job", instance=~"$instance"'
#: Grafana's rate window: at least four scrape intervals, whatever the zoom.
RATE_WINDOW = "$__rate_interval"

_USED: set[str] = set()


@cache
def _catalogue() -> dict[str, MetricSpec]:
    return {entry.name: entry for entry in all_metrics()}


def spec(name: str) -> MetricSpec:
    """The catalogue entry of ``name``; KeyError naming the known metrics if there is none.

    >>> spec("queue.job.duration").unit
    's'
    """
    catalogue = _catalogue()
    if name not in catalogue:
        raise KeyError(f"{name!r} is not in the metric catalogue; known: {', '.join(sorted(catalogue))}")
    _USED.add(name)
    return catalogue[name]


def metric(name: str, suffix: str = "") -> str:
    """The Prometheus name of catalogue metric ``name``, plus ``suffix`` (``_bucket``, ``_count``).

    >>> metric("queue.job.duration", "_bucket")
    'queue_job_duration_seconds_bucket'
    """
    entry = spec(name)
    if suffix and entry.kind is not Kind.HISTOGRAM:
        raise ValueError(f"{name!r} is a {entry.kind.value}, not a histogram: no {suffix!r} series")
    return prometheus_name(entry) + suffix


def used_metrics() -> frozenset[str]:
    """The catalogue names :func:`metric` or :func:`spec` was asked for so far."""
    return frozenset(_USED)


def by(*attributes: str, job: bool = True) -> str:
    """A ``by (...)`` clause over attribute keys (as labels), the job first.

    >>> by("queue.name", "outcome")
    'by (job, queue_name, outcome)'
    """
    labels = (["job"] if job else []) + [label_name(key) for key in attributes]
    return f"by ({', '.join(labels)})"


def selected(name: str, matchers: str = "", suffix: str = "", selector: str = DASHBOARD_SELECTOR) -> str:
    """``metric{<selector>, <matchers>}``.

    >>> selected("cache.hits", 'cache_name="users"')
    'cache_hits_total{job=~"$job", instance=~"$instance", cache_name="users"}'
    """
    inner = ", ".join(part for part in (selector, matchers) if part)
    return f"{metric(name, suffix)}{{{inner}}}" if inner else metric(name, suffix)


def rate(
    name: str,
    *attributes: str,
    matchers: str = "",
    window: str = RATE_WINDOW,
    selector: str = DASHBOARD_SELECTOR,
    suffix: str = "",
) -> str:
    """Per-second rate of a counter (or of a histogram's ``_count``), summed by job and ``attributes``."""
    inner = selected(name, matchers, suffix, selector)
    return f"sum {by(*attributes)} (rate({inner}[{window}]))"


def failure_ratio(
    name: str,
    *attributes: str,
    window: str = RATE_WINDOW,
    selector: str = DASHBOARD_SELECTOR,
) -> str:
    """Share of a counter with an ``outcome`` label that was not a success, over ``window``.

    ``1 - success / all``, with a missing success series counted as 0: the ratio is 0 while nothing
    failed and 1 while everything fails (NaN while nothing ran: 0/0).

    >>> failure_ratio("queue.jobs.processed", selector="", window="5m")[:45]
    '1 - ((sum by (job) (rate(queue_jobs_processed'
    """
    everything = rate(name, *attributes, window=window, selector=selector)
    success = rate(name, *attributes, matchers='outcome="success"', window=window, selector=selector)
    return f"1 - {share(success, everything)}"


def failed_ratio(
    name: str,
    *attributes: str,
    window: str = RATE_WINDOW,
    selector: str = DASHBOARD_SELECTOR,
) -> str:
    """Share of a counter with an ``outcome`` label that was ``failure``, over ``window``.

    Unlike :func:`failure_ratio`, other outcomes than success (a job's ``retry``, ``rejected``,
    ``revoked``...) are not failures: ``failure / all``, 0 while nothing failed.

    >>> failed_ratio("queue.jobs.processed", selector="", window="5m")[:45]
    '((sum by (job) (rate(queue_jobs_processed_tot'
    """
    everything = rate(name, *attributes, window=window, selector=selector)
    failed = rate(name, *attributes, matchers='outcome="failure"', window=window, selector=selector)
    return share(failed, everything)


def share(part: str, whole: str) -> str:
    """``part / whole`` where a missing ``part`` series counts as 0 (so the share is 0, not absent).

    >>> share("a", "b")
    '((a or b * 0) / b)'
    """
    return f"(({part} or {whole} * 0) / {whole})"


def plus_optional(required: str, optional: str) -> str:
    """``required + optional`` where a missing ``optional`` series counts as 0.

    >>> plus_optional("a", "b")
    '(a + (b or a * 0))'
    """
    return f"({required} + ({optional} or {required} * 0))"


def histogram_quantile(
    quantile: float,
    name: str,
    *attributes: str,
    window: str = RATE_WINDOW,
    selector: str = DASHBOARD_SELECTOR,
) -> str:
    """The ``quantile`` of a histogram over ``window``, from its buckets, by job and ``attributes``.

    >>> histogram_quantile(0.95, "queue.job.duration", selector="", window="5m")
    'histogram_quantile(0.95, sum by (job, le) (rate(queue_job_duration_seconds_bucket[5m])))'
    """
    labels = by(*attributes).removesuffix(")") + ", le)"
    buckets = selected(name, suffix="_bucket", selector=selector)
    return f"histogram_quantile({quantile}, sum {labels} (rate({buckets}[{window}])))"
