"""Shutdown still flushes when the interpreter refuses new threads (atexit on Python 3.12.0/1)."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter, MetricExportResult
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader as Periodic

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline.config import Config


class _Recording(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exported: list[object] = []

    def export(
        self, metrics_data: object, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        return None


def test_flush_runs_inline_when_threads_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = _Recording()
    reader = Periodic(exporter, export_interval_millis=3_600_000)
    config = Config.resolve({}, service_name="exit", exporter="none")
    pipeline = runtime.build_pipeline(config, serve=False, extra_readers=[reader, InMemoryMetricReader()])
    runtime.install(pipeline)
    op.queue("exit").enqueued(4)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert pipeline.shutdown(timeout=5) is True
    monkeypatch.undo()
    assert len(exporter.exported) == 1
    names = [
        m.name
        for rm in exporter.exported[0].resource_metrics  # type: ignore[attr-defined]
        for sm in rm.scope_metrics
        for m in sm.metrics
    ]
    assert "queue.jobs.enqueued" in names
