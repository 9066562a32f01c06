"""Series semantics: the cardinality cap, negative values, exemplars, start times, the merge."""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import Aggregation

from otel_pipeline._internal.exemplars import TRACKER
from otel_pipeline._internal.merge import check_cumulative
from tests.core.support import SPECS, normal_form, pipeline_in


def test_a_million_distinct_values_keep_memory_bounded() -> None:
    with pipeline_in("core", cardinality_limit=100) as pipeline:
        assert pipeline.registry is not None
        instrument = pipeline.registry.instrument(SPECS["counter"])
        tracemalloc.start()
        try:
            for i in range(1_000_000):
                instrument.bind({"k": str(i)}).add(1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        exported = normal_form(pipeline.collect())
    points = exported["test.core.counter"]["points"]
    assert len(points) == 101
    overflow = [values for attrs, values, _ in points if attrs == (("otel.metric.overflow", True),)]
    assert overflow == [(1_000_000 - 100,)]
    assert peak < 5_000_000  # 100 series and one overflow series, not a million


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_negative_values_are_dropped_on_counters_and_histograms(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), pipeline_in(mode) as pipeline:
        assert pipeline.registry is not None
        counter = pipeline.registry.instrument(SPECS["counter"]).bind({"k": "n"})
        histogram = pipeline.registry.instrument(SPECS["histogram"]).bind({"k": "n"})
        counter.add(4)
        counter.add(-1)
        histogram.record(-0.5)
        histogram.record(0.5)
        exported = normal_form(pipeline.collect())
    assert exported["test.core.counter"]["points"][0][1] == (4,)
    assert exported["test.core.histogram"]["points"][0][1][0] == 1
    assert any(
        "negative" in r.getMessage().lower() or "non-negative" in r.getMessage() for r in caplog.records
    )


def test_exemplars_only_inside_sampled_spans() -> None:
    with pipeline_in("core", trace_sample_rate=1.0) as pipeline:
        assert pipeline.registry is not None
        assert pipeline.tracer_provider is not None
        histogram = pipeline.registry.instrument(SPECS["histogram"]).bind({"k": "e"})
        histogram.record(0.001)  # outside any span
        tracer = pipeline.tracer_provider.get_tracer("t")
        with tracer.start_as_current_span("traced") as span:
            assert TRACKER.active >= 1
            histogram.record(0.3)
            context = span.get_span_context()
        exported = normal_form(pipeline.collect())
        ((_, values, exemplars),) = exported["test.core.histogram"]["points"]
        assert values[0] == 2
        assert exemplars == ((0.3, context.span_id, context.trace_id, ()),)
        # Exemplars are per collection, as in the SDK: the next collection has none.
        again = normal_form(pipeline.collect())
        assert again["test.core.histogram"]["points"][0][2] == ()


def test_untouched_series_are_not_exported_and_start_times_precede_points() -> None:
    with pipeline_in("core") as pipeline:
        assert pipeline.registry is not None
        pipeline.registry.instrument(SPECS["counter"]).bind({"k": "never"})
        used = pipeline.registry.instrument(SPECS["counter"]).bind({"k": "used"})
        used.add(0)
        data = pipeline.collect()
    assert data is not None
    (metric,) = [
        m
        for sm in data.resource_metrics[0].scope_metrics
        for m in sm.metrics
        if m.name == "test.core.counter"
    ]
    point: Any
    (point,) = metric.data.data_points
    assert dict(point.attributes or {}) == {"k": "used"}
    assert point.value == 0
    assert point.start_time_unix_nano <= point.time_unix_nano


def test_user_instruments_and_core_series_share_the_reader() -> None:
    with pipeline_in("core") as pipeline:
        assert pipeline.registry is not None
        assert pipeline.meter_provider is not None
        mine = pipeline.meter_provider.get_meter("user.app").create_counter(
            "user.orders", "{order}", "Orders."
        )
        mine.add(3, {"shop": "x"})
        pipeline.registry.instrument(SPECS["counter"]).bind({"k": "a"}).add(2)
        data = pipeline.collect()
    assert data is not None
    scopes = {sm.scope.name: [m.name for m in sm.metrics] for sm in data.resource_metrics[0].scope_metrics}
    assert scopes["user.app"] == ["user.orders"]
    assert "test.core.counter" in scopes["otel_pipeline"]
    assert len(data.resource_metrics) == 1


def test_a_reader_asking_for_delta_is_refused_with_the_cure() -> None:
    from opentelemetry.sdk.metrics import Counter
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
    with pytest.raises(ValueError, match="delta temporality") as raised:
        check_cumulative(reader)
    assert "instrument_mode='sdk'" in str(raised.value)
    assert isinstance(Aggregation, type)
