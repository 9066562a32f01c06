"""Capture otel_pipeline's metrics and spans in memory: fresh providers per test, pytest or not.

:class:`Capture` needs nothing but the package (no pytest). With pytest, request the
``otel_capture`` fixture in a test: the package's pytest plugin (``_otel_pipeline_pytest``, a
``pytest11`` entry point) gives one Capture per test. The global OpenTelemetry providers are never
touched, and whatever pipeline was current is restored afterwards.

>>> from otel_pipeline.testing import Capture
>>> with Capture() as capture:
...     import otel_pipeline as op
...     op.queue("emails").enqueued(3)
...     capture.value("queue.jobs.enqueued", {"queue.name": "emails"})
3
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_pipeline._internal import boundary, runtime
from otel_pipeline._internal.boundary import InternalError
from otel_pipeline.config import Config

__all__ = ["Capture", "InternalError"]


class Capture:
    """A pipeline of its own with in-memory export, made current while in use.

    Options are those of :func:`otel_pipeline.configure` (the exporter is always in-memory, and
    ``OTEL_*`` variables are ignored). While it is current, ``configure()`` returns its pipeline
    and starts nothing, so code under test may call ``configure()`` as it does in production.

    With ``strict_internal_errors=True``, an internal fault of otel_pipeline raises
    :class:`InternalError` where it happens, and one swallowed on its way (in a thread, at
    collection) raises when the capture ends, instead of being logged.
    """

    def __init__(self, *, strict_internal_errors: bool = False, **options: Any) -> None:
        #: Raise otel_pipeline's own internal faults (see :class:`InternalError`) instead of
        #: logging them, while this capture is current: a bug of the package fails the test.
        self.strict_internal_errors = strict_internal_errors
        self._previous_strict: bool | None = None
        options.setdefault("service_name", "test")
        options["exporter"] = "none"
        self.config = Config.resolve({}, **options)
        self.reader = InMemoryMetricReader()
        self.spans_exporter = InMemorySpanExporter()
        self.pipeline = runtime.build_pipeline(
            self.config,
            extra_readers=[self.reader],
            span_processors=[SimpleSpanProcessor(self.spans_exporter)],
            serve=False,
        )
        self.pipeline.captured = True
        self._previous: runtime.Runtime | None = None

    def __enter__(self) -> Capture:
        if self.strict_internal_errors:
            boundary.take_faults()
            self._previous_strict = boundary.set_strict(True)
        self._previous = runtime.install(self.pipeline)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        runtime.install(self._previous)
        self.pipeline.shutdown(timeout=5)
        if self.strict_internal_errors:
            boundary.set_strict(self._previous_strict)
            faults = boundary.take_faults()
            # A fault something swallowed on its way (the SDK around an observable callback, a
            # thread) fails the test here; one that reached the test already failed it.
            if faults and exc_type is None:
                site, fault = faults[0]
                raise InternalError(site) from fault

    # -- metrics --------------------------------------------------------------------------

    def collect(self) -> MetricsData | None:
        """Collect now: every metric recorded so far (cumulative)."""
        return self.reader.get_metrics_data()

    def metrics(self) -> dict[str, Metric]:
        """Every metric collected now, by name."""
        data = self.collect()
        found: dict[str, Metric] = {}
        if data is not None:
            for resource_metrics in data.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        found[metric.name] = metric
        return found

    def metric(self, name: str) -> Metric:
        """The metric named ``name``; ``KeyError`` listing what exists if it is missing."""
        found = self.metrics()
        if name not in found:
            raise KeyError(f"no metric {name!r}; collected: {sorted(found)}")
        return found[name]

    def point(self, name: str, attributes: Mapping[str, Any] | None = None) -> Any:
        """The data point of ``name`` whose attributes are exactly ``attributes``."""
        metric = self.metric(name)
        wanted = dict(attributes or {})
        points: list[Any] = list(metric.data.data_points)
        for point in points:
            if dict(point.attributes or {}) == wanted:
                return point
        raise KeyError(
            f"{name}: no point with attributes {wanted}; points have {[dict(p.attributes) for p in points]}"
        )

    def value(self, name: str, attributes: Mapping[str, Any] | None = None) -> Any:
        """A counter/gauge point's value, or a histogram point's count."""
        point = self.point(name, attributes)
        return point.count if hasattr(point, "bucket_counts") else point.value

    def points(self, name: str) -> list[Any]:
        """Every data point of ``name``."""
        return list(self.metric(name).data.data_points)

    # -- spans ----------------------------------------------------------------------------

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, oldest first, optionally only those named ``name``."""
        spans = list(self.spans_exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def clear_spans(self) -> None:
        """Forget the finished spans captured so far."""
        self.spans_exporter.clear()
