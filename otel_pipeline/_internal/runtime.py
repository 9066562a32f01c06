"""The configured pipeline, the process-wide state the hooks read, and configure/shutdown.

Hooks never hold a provider: they ask :data:`STATE` for the current :class:`Runtime` and rebind
their series when its generation changes (configure, shutdown, a test fixture). That is what lets
``q = op.queue("emails")`` be created at import time, before ``configure()``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_pipeline._internal import providers, signals
from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.export_state import ExportState
from otel_pipeline._internal.merge import attach_core
from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.spans import HookTracer
from otel_pipeline._internal.state import STATE, current
from otel_pipeline._internal.wiring import Wiring
from otel_pipeline._version import __version__
from otel_pipeline.config import Config

__all__ = [
    "DEFAULT_WIRING",
    "STATE",
    "Pipeline",
    "Runtime",
    "build_pipeline",
    "configure",
    "current",
    "install",
    "set_global_providers",
    "shutdown",
]

SCOPE_NAME = "otel_pipeline"
SCOPE = InstrumentationScope(SCOPE_NAME, __version__, None, None)


class Runtime:
    """A configured pipeline: providers, the hooks' registry, the server. Returned by ``configure()``.

    Public as ``otel_pipeline.Pipeline``; called the runtime inside the package, apart from the
    pipeline runs of ``op.pipeline()`` (``hooks/pipeline.py``).

    >>> import otel_pipeline as op
    >>> pipeline = op.configure(service_name="orders", exporter="none")
    >>> op.queue("emails").enqueued(2)
    >>> names = [m.name for m in pipeline.collect().resource_metrics[0].scope_metrics[0].metrics]
    >>> "queue.jobs.enqueued" in names
    True
    >>> pipeline.shutdown(), pipeline.enabled
    (True, False)
    """

    def __init__(
        self,
        config: Config,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        registry: Registry | None = None,
        tracer: HookTracer | None = None,
        local_reader: InMemoryMetricReader | None = None,
        server: Any = None,
        resource: Resource | None = None,
        export_state: ExportState | None = None,
        wiring: Wiring | None = None,
    ) -> None:
        self.config = config
        self.meter_provider = meter_provider
        self.tracer_provider = tracer_provider
        self.registry = registry
        self.tracer = tracer or HookTracer(None, 0.0, None)
        self.local_reader = local_reader
        self.server = server
        self.resource = resource
        #: Results of the exports to the receiver, for /health (none when nothing is exported).
        self.export_state = export_state or ExportState()
        #: The sources of /health and the routes besides /metrics its server gets (wiring.py).
        self.wiring = wiring or Wiring()
        #: True for a test capture (otel_pipeline.testing): configure() then returns it as is.
        self.captured = False
        self._closed = False
        self._lock = threading.Lock()
        #: Extra shutdown steps registered by hooks (e.g. stop the resource monitor).
        self.on_shutdown: list[Callable[[], None]] = []
        #: Whether configure() installed the SIGTERM handler for this pipeline (see signals.py).
        self.handles_sigterm = False
        #: The Prometheus reader (what /metrics serves), and the worker group it is part of (group/).
        self.scrape_reader: Any = None
        self.group: Any = None

    @property
    def enabled(self) -> bool:
        """False when configured with ``enabled=False`` / ``OTEL_SDK_DISABLED``, or after shutdown."""
        return self.registry is not None and not self._closed

    @property
    def prometheus_port(self) -> int | None:
        """The port ``/metrics`` is served on (the real one when 0 was asked for), or None.

        A worker group's member serves nothing itself: this is the group's port, served by its hub.
        """
        if self.server is None:
            return self.config.prometheus_port if getattr(self.group, "serves", False) else None
        return int(self.server.port)

    @property
    def metrics_url(self) -> str | None:
        if self.server is None:
            port = self.prometheus_port
            host = self.config.prometheus_host
            host = f"[{host}]" if ":" in host else host
            return None if port is None else f"http://{host}:{port}/metrics"
        return f"{self.server.url}/metrics"

    def collect(self) -> MetricsData | None:
        """Everything recorded so far, as the exporters would see it (cumulative)."""
        if self.local_reader is None or self._closed:
            return None
        return self.local_reader.get_metrics_data()

    def collect_group(self, refresh: bool = True) -> MetricsData | None:
        """What :meth:`collect` returns, merged over the worker group when this process is its hub."""
        data = self.collect()
        return data if self.group is None else self.group.merged(data, "local", refresh)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush metrics and spans, stop the server; idempotent; returns within ``timeout`` seconds.

        The default bound is ``export_timeout + 2`` seconds: spans and metrics are flushed in
        parallel, each export attempt limited to ``export_timeout``, so an unreachable receiver
        costs one bounded attempt. Returns True only when the final export of every exporter
        succeeded (see ``export_state.py``); False when one failed or did not finish in time.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        # From here every export counts in the result, the shutdown steps' own pushes included.
        self.export_state.begin_final()
        if STATE.pipeline is self:
            install(None)
        if self.handles_sigterm:
            signals.restore()
        for step in list(self.on_shutdown):
            try:
                step()
            except Exception:
                logger.exception("a shutdown step failed")
        if self.server is not None:
            self.server.stop()
        bound = self.config.export_timeout + 2.0 if timeout is None else timeout
        deadline = time.monotonic() + bound
        flushes = [
            threading.Thread(target=step, name=f"otel-pipeline-shutdown-{what}", daemon=True)
            for what, step in (("spans", self._flush_spans), ("metrics", self._flush_metrics))
        ]
        try:
            for thread in flushes:
                thread.start()
        except RuntimeError:
            # Some Pythons (3.12.0/3.12.1) refuse new threads in atexit handlers: flush inline,
            # each export still limited by export_timeout.
            self._flush_spans()
            self._flush_metrics()
            return self._delivered()
        for thread in flushes:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in flushes):
            logger.warning("shutdown gave up flushing after %.1f s (receiver down?)", bound)
            return False
        return self._delivered()

    def _delivered(self) -> bool:
        delivered, problems, reported = self.export_state.final_result()
        if not delivered:
            # A failure its exporter logged already is not logged a second time as a warning.
            logger.log(
                logging.INFO if reported else logging.WARNING,
                "shutdown: the final export did not get through (%s)",
                "; ".join(problems),
            )
        return delivered

    def _flush_spans(self) -> None:
        try:
            if self.tracer_provider is not None:
                self.tracer_provider.shutdown()
        except Exception as error:
            _flush_failed("spans", error)

    def _flush_metrics(self) -> None:
        try:
            if self.meter_provider is not None:
                # The final collection still reads the registry; observable callbacks stop after it.
                # One export attempt (export_timeout), then a second for the in-process readers.
                self.meter_provider.shutdown(timeout_millis=(self.config.export_timeout + 1.0) * 1000.0)
        except Exception as error:
            _flush_failed("metrics", error)
        finally:
            if self.registry is not None:
                self.registry.enabled = False


#: The public name of the runtime (``otel_pipeline.Pipeline``).
Pipeline = Runtime


def _flush_failed(what: str, error: Exception) -> None:
    # Usually the receiver is down: an operational condition, worth one line rather than a traceback.
    logger.warning("flushing %s at shutdown failed: %s", what, error)
    logger.debug("flush failure", exc_info=error)


#: The wiring of the pipelines built without one: the package sets it (otel_pipeline/_wiring.py).
DEFAULT_WIRING = Wiring()
_lock = threading.RLock()
_globals_set = False
_atexit_registered = False


def install(pipeline: Runtime | None) -> Runtime | None:
    """Make ``pipeline`` the one hooks record into; returns the previous one. Bumps the generation."""
    with _lock:
        previous = STATE.pipeline
        STATE.pipeline = pipeline
        STATE.generation += 1
    if pipeline is not None and pipeline.enabled:
        # Its wiring's callbacks: hooks with observed values (registered before ``configure()``,
        # e.g. a cache's size function) bind to it so that it reports them.
        for callback in pipeline.wiring.on_install:
            try:
                callback(pipeline)
            except Exception as exc:
                internal_error("install", exc, "binding observed hooks to the new pipeline failed")
    return previous


def build_pipeline(
    config: Config,
    *,
    extra_readers: list[MetricReader] | None = None,
    span_processors: list[SpanProcessor] | None = None,
    serve: bool = True,
    resource: Resource | None = None,
    forked: bool = False,
    wiring: Wiring | None = None,
) -> Runtime:
    """Providers, registry and (for the Prometheus exporter) the server, for ``config``.

    ``forked``: for a forked child, which leaves the parent's Pushgateway group alone.
    ``wiring``: what the server serves besides /metrics (default: :data:`DEFAULT_WIRING`).
    """
    wiring = DEFAULT_WIRING if wiring is None else wiring
    if not config.enabled:
        return Runtime(config, wiring=wiring)
    resource = resource or providers.build_resource(config)
    built = providers.metric_readers(config, forked=forked)
    readers = built.readers + list(extra_readers or [])
    meter_provider = providers.build_meter_provider(resource, readers)
    registry = Registry(
        meter_provider.get_meter(SCOPE_NAME, __version__),
        mode=config.instrument_mode,
        buckets=tuple(config.histogram_buckets),
        cardinality_limit=config.cardinality_limit,
    )
    for reader in readers:
        attach_core(reader, registry, resource, SCOPE)
    tracer_provider, ids = providers.build_tracer_provider(
        config, resource, span_processors, built.export_state
    )
    tracer = HookTracer(tracer_provider.get_tracer(SCOPE_NAME, __version__), config.trace_sample_rate, ids)
    pipeline = Runtime(
        config,
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        registry=registry,
        tracer=tracer,
        local_reader=built.local_reader,
        export_state=built.export_state,
        resource=resource,
        wiring=wiring,
    )
    pipeline.scrape_reader = built.prometheus_registry
    if serve and built.prometheus_registry is not None:
        from otel_pipeline._internal import group

        try:
            group.serve(pipeline, built.prometheus_registry)  # alone, or in a worker group
        except OSError:
            tracer_provider.shutdown()
            meter_provider.shutdown()
            raise
    return pipeline


def set_global_providers(meter_provider: MeterProvider, tracer_provider: TracerProvider) -> None:
    """Make these the OpenTelemetry API's global providers (once per process; tests replace this)."""
    otel_metrics.set_meter_provider(meter_provider)
    otel_trace.set_tracer_provider(tracer_provider)


def configure(environ: Mapping[str, str] | None = None, **options: Any) -> Runtime:
    """See :func:`otel_pipeline.configure` (the public docstring lives there)."""
    global _globals_set, _atexit_registered
    config = Config.resolve(os.environ if environ is None else environ, **options)
    with _lock:
        existing = STATE.pipeline
        if existing is not None and existing.captured:
            return existing  # under test capture: record into the capture, export nothing
        if existing is not None and not existing._closed:
            if existing.config == config:
                return existing
            changed = sorted(
                name
                for name in config.__dataclass_fields__
                if getattr(config, name) != getattr(existing.config, name)
            )
            raise RuntimeError(
                "otel_pipeline is already configured with other options (" + ", ".join(changed) + "); "
                "call otel_pipeline.shutdown() before configuring again"
            )
        pipeline = build_pipeline(config)
        if pipeline.meter_provider is not None and pipeline.tracer_provider is not None:
            if not _globals_set:
                set_global_providers(pipeline.meter_provider, pipeline.tracer_provider)
                _globals_set = True
            else:
                warn_once(
                    "globals-once",
                    "configured again after shutdown(); the hooks record into the new "
                    "pipeline, but the OpenTelemetry global providers can be set once per process and "
                    "stay those of the first configure()",
                )
        install(pipeline)
        # A worker group's hand-overs are pushes too: a member's last totals, the hub's departed.
        pushes = pipeline.export_state.pushes or pipeline.group is not None
        if config.handle_sigterm and pipeline.enabled and pushes:
            pipeline.handles_sigterm = signals.install(shutdown, limit=config.export_timeout + 20.0)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
    return pipeline


def shutdown(timeout: float | None = None) -> bool:
    """See :func:`otel_pipeline.shutdown`."""
    with _lock:
        pipeline = STATE.pipeline
        if pipeline is None:
            return True
        install(None)
    return pipeline.shutdown(timeout)
