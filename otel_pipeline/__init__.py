"""otel_pipeline: OpenTelemetry metrics and traces for services that process work.

>>> import otel_pipeline as op
>>> pipeline = op.configure(service_name="orders", exporter="none")
>>> with op.queue("emails").processing():
...     pass
>>> op.shutdown()
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from otel_pipeline import _wiring
from otel_pipeline._internal import fork as _fork
from otel_pipeline._internal import runtime as _runtime
from otel_pipeline._internal.runtime import Pipeline
from otel_pipeline._version import __version__
from otel_pipeline.config import DEFAULT_DURATION_BUCKETS, Config
from otel_pipeline.hooks.actions import Actions, actions
from otel_pipeline.hooks.breaker import (
    CircuitBreaker,
    circuit_breaker,
    instrument_pybreaker,
    uninstrument_pybreaker,
)
from otel_pipeline.hooks.cache import Cache, cache
from otel_pipeline.hooks.checkpoint import Checkpoint, checkpoint
from otel_pipeline.hooks.dedup import Dedup, dedup
from otel_pipeline.hooks.event_loop import EventLoopMonitor, monitor_event_loop
from otel_pipeline.hooks.events import Events, events
from otel_pipeline.hooks.health import (
    HealthTarget,
    RefreshJob,
    health_target,
    refresh_job,
    register_collector,
    register_health_check,
    unregister_collector,
    unregister_health_check,
)
from otel_pipeline.hooks.http import ASGIMiddleware, HttpClient, HttpRequest, WSGIMiddleware, http_client
from otel_pipeline.hooks.pipeline import Run, Stage, StageRun, pipeline, stage
from otel_pipeline.hooks.pool import ConnectionPool, connection_pool
from otel_pipeline.hooks.queue import Queue, queue
from otel_pipeline.hooks.resources import ResourceMonitor, ResourceSample, monitor_resources
from otel_pipeline.hooks.stdlib_queue import instrument_queue, uninstrument_queue
from otel_pipeline.integrations.celery import instrument_celery, uninstrument_celery
from otel_pipeline.integrations.executor import instrument_executor, uninstrument_executor
from otel_pipeline.integrations.rq import instrument_rq, uninstrument_rq
from otel_pipeline.progress import LiveProgress, live_progress
from otel_pipeline.summary import print_summary, summary, write_summary

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "ASGIMiddleware",
    "Actions",
    "Cache",
    "Checkpoint",
    "CircuitBreaker",
    "Config",
    "ConnectionPool",
    "Dedup",
    "EventLoopMonitor",
    "Events",
    "HealthTarget",
    "HttpClient",
    "HttpRequest",
    "LiveProgress",
    "Pipeline",
    "Queue",
    "RefreshJob",
    "ResourceMonitor",
    "ResourceSample",
    "Run",
    "Stage",
    "StageRun",
    "WSGIMiddleware",
    "__version__",
    "actions",
    "cache",
    "checkpoint",
    "circuit_breaker",
    "configure",
    "connection_pool",
    "dedup",
    "events",
    "health_target",
    "http_client",
    "instrument_celery",
    "instrument_executor",
    "instrument_pybreaker",
    "instrument_queue",
    "instrument_rq",
    "live_progress",
    "monitor_event_loop",
    "monitor_resources",
    "pipeline",
    "print_summary",
    "queue",
    "refresh_job",
    "register_collector",
    "register_health_check",
    "shutdown",
    "stage",
    "summary",
    "uninstrument_celery",
    "uninstrument_executor",
    "uninstrument_pybreaker",
    "uninstrument_queue",
    "uninstrument_rq",
    "unregister_collector",
    "unregister_health_check",
    "write_summary",
]


def configure(
    service_name: str | None = None,
    *,
    exporter: str | Sequence[str] | None = None,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    export_interval: float | None = None,
    export_timeout: float | None = None,
    trace_sample_rate: float | None = None,
    histogram_buckets: Any = None,
    enabled: bool | None = None,
    service_version: str | None = None,
    instrument_mode: str | None = None,
    cardinality_limit: int | None = None,
    handle_sigterm: bool | None = None,
    hook_name_limit: int | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    pushgateway_url: str | None = None,
    pushgateway_grouping: Mapping[str, str] | None = None,
    pushgateway_delete_on_shutdown: bool | None = None,
    remote_write_url: str | None = None,
    worker_group: bool | None = None,
    group_export: str | None = None,
    **unknown: Any,
) -> Pipeline:
    """Set up metrics and traces for this process and return the running :class:`Pipeline`.

    Every option not given comes from its standard ``OTEL_*`` variable, else its default;
    an explicit argument always wins. By default ``/metrics`` is served on 127.0.0.1:9464.
    ``exporter`` takes several at once (``"prometheus,pushgateway"``, or a sequence): batch
    runs push to a Pushgateway (``pushgateway_url``) or remote write (``remote_write_url``),
    see docs/batch.md.

    Calling it again with the same options returns the same pipeline; with other options it
    raises ``RuntimeError`` (call :func:`shutdown` first). Bad values raise ``ValueError``
    naming the option, the value and what is allowed; an unknown option raises ``TypeError``
    listing the known ones (and the closest, as a suggestion).

    When an exporter pushes (OTLP, console) and the program has no ``SIGTERM`` handler of its
    own, a ``SIGTERM`` flushes before the process ends as ``SIGTERM`` would
    (``handle_sigterm=False`` / ``OTEL_PIPELINE_HANDLE_SIGTERM=false`` turns that off).

    Processes of one service that configure the same Prometheus port (gunicorn, uvicorn and
    Celery workers, a ``multiprocessing`` pool) form a worker group: one of them serves the
    group's ``/metrics`` with the exact totals of all (docs/operations.md, "Multi-process
    workers"); ``worker_group=False`` / ``OTEL_PIPELINE_WORKER_GROUP=false`` turns that off.
    With ``exporter="otlp"``, ``group_export="merged"`` / ``OTEL_PIPELINE_GROUP_EXPORT=merged``
    makes such a group push one merged OTLP stream under a stable ``service.instance.id``
    (default ``"per_process"``: each process its own stream).

    >>> import otel_pipeline as op
    >>> pipeline = op.configure(service_name="docs", exporter="prometheus", prometheus_port=0)
    >>> pipeline.prometheus_port > 0
    True
    >>> op.shutdown()
    True
    """
    if unknown:
        from inspect import signature

        from otel_pipeline._internal.options import unknown_options

        known = [name for name in signature(configure).parameters if name != "unknown"]
        raise unknown_options("otel_pipeline.configure", unknown, known)
    options: dict[str, Any] = {
        "service_name": service_name,
        "exporter": exporter,
        "prometheus_host": prometheus_host,
        "prometheus_port": prometheus_port,
        "otlp_endpoint": otlp_endpoint,
        "otlp_protocol": otlp_protocol,
        "export_interval": export_interval,
        "export_timeout": export_timeout,
        "trace_sample_rate": trace_sample_rate,
        # A list is as good as a tuple; anything else goes on to validation, which names it.
        "histogram_buckets": tuple(histogram_buckets)
        if isinstance(histogram_buckets, list)
        else histogram_buckets,
        "enabled": enabled,
        "service_version": service_version,
        "instrument_mode": instrument_mode,
        "cardinality_limit": cardinality_limit,
        "handle_sigterm": handle_sigterm,
        "hook_name_limit": hook_name_limit,
        "resource_attributes": resource_attributes,
        "pushgateway_url": pushgateway_url,
        "pushgateway_grouping": pushgateway_grouping,
        "pushgateway_delete_on_shutdown": pushgateway_delete_on_shutdown,
        "remote_write_url": remote_write_url,
        "worker_group": worker_group,
        "group_export": group_export,
    }
    return _runtime.configure(**options)


def shutdown(timeout: float | None = None) -> bool:
    """Flush metrics and spans and stop the server. Idempotent; also runs at interpreter exit.

    Returns True only when the final export of every exporter succeeded; False when one failed
    (e.g. the OTLP receiver is down) or did not finish within ``timeout`` seconds (default:
    ``export_timeout + 2``); it never blocks longer.

    >>> import otel_pipeline as op
    >>> op.shutdown()
    True
    """
    return _runtime.shutdown(timeout)


# What every pipeline's server serves besides /metrics: the hooks' health sources, /stats.
_runtime.DEFAULT_WIRING = _wiring.default_wiring()
# Forked children get a pipeline of their own (see otel_pipeline/_internal/fork.py).
_fork.register()
