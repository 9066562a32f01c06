"""/metrics keeps the latest exemplar of each sample until a newer one replaces it (prometheus_client's rule).

Each collection only brings the exemplars measured since the previous one (the readers' reservoirs
reset, as in the SDK); the scrape reader keeps them, so a second scraper (curl, an HA Prometheus, a
Collector's scraper) sees what the first one saw.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline._internal import timed as timed_module
from otel_pipeline._internal.exposition import ScrapeReader
from otel_pipeline.config import Config
from tests.hooks import FakeClock
from tests.test_exposition import Scraped, exemplar_lines, scraped

__all__ = ["scraped"]  # the fixture, in both instrument modes

SCOPE = f'otel_scope_name="otel_pipeline",otel_scope_schema_url="",otel_scope_version="{op.__version__}"'
PROCESSED = f'queue_jobs_processed_total{{{SCOPE},outcome="success",queue_name="emails"}}'
FAST = f'queue_job_duration_seconds_bucket{{le="0.005",{SCOPE},outcome="success",queue_name="emails"}}'
SLOW = f'queue_job_duration_seconds_bucket{{le="2.5",{SCOPE},outcome="success",queue_name="emails"}}'


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timed_module, "perf_counter", fake)
    return fake


def process(target: Scraped, clock: FakeClock, seconds: float) -> tuple[str, str]:
    """One job of ``seconds`` in a span of its own; (trace id, span id) of the hook's span."""
    with target.tracer().start_as_current_span("handle"), op.queue("emails").processing():
        clock.advance(seconds)
    span = target.spans.get_finished_spans()[-2]  # the hook's span ends before the user's
    assert span.name == "queue.process emails"
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def test_every_scrape_shows_the_exemplar_until_a_new_measurement_replaces_it(
    scraped: Scraped, clock: FakeClock
) -> None:
    first = process(scraped, clock, 0.0009765625)
    shown = exemplar_lines(scraped.openmetrics())
    assert set(shown) == {PROCESSED, FAST}
    assert shown[FAST][:3] == (*first, 0.0009765625)
    assert shown[PROCESSED][:3] == (*first, 1.0)
    # The second and third scrapes (and a text scrape between them) show the very same exemplars.
    assert exemplar_lines(scraped.openmetrics()) == shown
    assert b" # {" not in scraped.reader.scrape("text/plain")[0]
    assert exemplar_lines(scraped.openmetrics()) == shown

    # A job in another bucket: that bucket gets its exemplar, the fast bucket keeps the first one.
    second = process(scraped, clock, 2.0)
    after_slow = exemplar_lines(scraped.openmetrics())
    assert set(after_slow) == {PROCESSED, FAST, SLOW}
    assert after_slow[SLOW][:3] == (*second, 2.0)
    assert after_slow[FAST] == shown[FAST]
    assert after_slow[PROCESSED][:3] == (*second, 1.0)

    # A new job in the fast bucket replaces its exemplar; the slow bucket's stays.
    third = process(scraped, clock, 0.001953125)
    latest = exemplar_lines(scraped.openmetrics())
    assert latest[FAST][:3] == (*third, 0.001953125)
    assert latest[SLOW] == after_slow[SLOW]
    assert latest[PROCESSED][:3] == (*third, 1.0)
    assert exemplar_lines(scraped.openmetrics()) == latest


class TwoReaders(Scraped):
    """A scraped pipeline with an in-memory reader beside the scrape reader (as an OTLP one would be)."""

    def __init__(self, mode: str) -> None:
        self.memory = InMemoryMetricReader()
        self.reader = ScrapeReader()
        self.spans = InMemorySpanExporter()
        config = Config.resolve({}, service_name="scraped", exporter="none", instrument_mode=mode)
        self.pipeline = runtime.build_pipeline(
            config,
            extra_readers=[self.memory, self.reader],
            span_processors=[SimpleSpanProcessor(self.spans)],
            serve=False,
        )
        runtime.install(self.pipeline)

    def collected_exemplars(self) -> dict[str, int]:
        """Metric name -> the number of exemplars the in-memory reader's collection has."""
        data = self.memory.get_metrics_data()
        assert data is not None
        return {
            metric.name: sum(len(point.exemplars) for point in metric.data.data_points)
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name in ("queue.jobs.processed", "queue.job.duration")
        }


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_other_readers_keep_the_sdks_rule_each_collection_takes_its_own(mode: str, clock: FakeClock) -> None:
    target = TwoReaders(mode)
    try:
        first = process(target, clock, 0.0009765625)
        assert exemplar_lines(target.openmetrics())[FAST][:2] == first
        assert target.collected_exemplars() == {"queue.jobs.processed": 1, "queue.job.duration": 1}
        assert target.collected_exemplars() == {"queue.jobs.processed": 0, "queue.job.duration": 0}
        assert exemplar_lines(target.openmetrics())[FAST][:2] == first
        second = process(target, clock, 0.0009765625)
        assert target.collected_exemplars() == {"queue.jobs.processed": 1, "queue.job.duration": 1}
        assert exemplar_lines(target.openmetrics())[FAST][:2] == second
    finally:
        runtime.install(None)
        target.pipeline.shutdown(timeout=5)
