"""The exporter component of /health follows the results of the exports to the receiver."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import MetricExportResult

from otel_pipeline._internal.export_state import ExportState
from otel_pipeline._internal.routes import health_report
from otel_pipeline.testing import Capture


class _Exporter:
    def __init__(self, results: list[Any]) -> None:
        self._results = results

    def export(self, data: object, timeout_millis: float = 10_000) -> Any:
        result = self._results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def test_failures_in_a_row_degrade_then_fail_and_a_success_heals() -> None:
    state = ExportState()
    outcomes = [
        MetricExportResult.FAILURE,
        MetricExportResult.FAILURE,
        ConnectionError("down"),
        MetricExportResult.SUCCESS,
    ]
    exporter = state.watch(_Exporter(outcomes), "metrics")
    seen = []
    for _ in range(3):
        with contextlib.suppress(ConnectionError):
            exporter.export(object())
        seen.append(state.component("otlp")["status"])
    assert seen == ["degraded", "degraded", "unhealthy"]
    component = state.component("otlp")
    assert component["consecutive_failures"] == 3
    assert component["last_failure"] == "metrics: ConnectionError"
    assert exporter.export(object()) is MetricExportResult.SUCCESS
    healed = state.component("otlp")
    assert healed["status"] == "healthy"
    assert healed["exports"] == 4
    assert "consecutive_failures" not in healed
    assert isinstance(healed["last_success"], float)


@pytest.mark.parametrize(
    ("failures", "code", "status"), [(0, 200, "healthy"), (1, 200, "degraded"), (3, 503, "unhealthy")]
)
def test_health_reports_the_exporter_state(failures: int, code: int, status: str) -> None:
    with Capture() as capture:
        for _ in range(failures):
            capture.pipeline.export_state.record(False, "metrics: export FAILURE")
        http_status, body = health_report(capture.pipeline)
    assert http_status == code
    assert body["status"] == status
    assert body["components"]["exporter"]["status"] == status
