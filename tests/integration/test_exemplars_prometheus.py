"""A real Prometheus scrapes /metrics as OpenMetrics and stores our exemplars; promtool accepts the text."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace

import otel_pipeline as op
from tests.support.prometheus import Prometheus, promtool_check_metrics

pytestmark = pytest.mark.integration

Result = list[dict[str, Any]]
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


def _exemplars(prometheus: Prometheus, expr: str, timeout: float = 30.0) -> Result:
    """``query_exemplars`` for ``expr`` until it returns some; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        found = [series for series in prometheus.query_exemplars(expr) if series.get("exemplars")]
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no exemplars for {expr} within {timeout} s")
        time.sleep(0.2)


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_prometheus_stores_the_trace_ids_of_our_spans(
    mode: str, prometheus_factory: Callable[..., Prometheus]
) -> None:
    pipeline = op.configure(
        service_name="exemplars", exporter="prometheus", prometheus_port=0, instrument_mode=mode
    )
    assert pipeline.tracer_provider is not None
    assert pipeline.meter_provider is not None
    prometheus = prometheus_factory([f"127.0.0.1:{pipeline.prometheus_port}"], scrape_interval=0.5)
    prometheus.wait_scraped()

    orders = pipeline.meter_provider.get_meter("shop").create_counter(
        "shop.orders", "{order}", "Orders taken."
    )
    queue = op.queue("emails")
    before = time.time()
    with pipeline.tracer_provider.get_tracer("shop").start_as_current_span("checkout") as user_span:
        with queue.processing():
            hook_span = trace.get_current_span().get_span_context()
        orders.add(2)
    after = time.time()
    trace_id = f"{user_span.get_span_context().trace_id:032x}"
    assert hook_span.trace_id == user_span.get_span_context().trace_id

    (bucket,) = _exemplars(prometheus, 'queue_job_duration_seconds_bucket{queue_name="emails"}')
    (exemplar,) = bucket["exemplars"]
    assert exemplar["labels"] == {"trace_id": trace_id, "span_id": f"{hook_span.span_id:016x}"}
    assert before <= float(exemplar["timestamp"]) <= after
    # The one measurement: its value is the histogram's sum, and it sits in the bucket it falls in.
    duration = float(exemplar["value"])
    assert duration == prometheus.value('queue_job_duration_seconds_sum{queue_name="emails"}')
    le = float(bucket["seriesLabels"]["le"])
    bounds = (0.0, *op.DEFAULT_DURATION_BUCKETS, float("inf"))
    assert bounds[bounds.index(le) - 1] < duration <= le
    assert bucket["seriesLabels"]["job"] == "app"
    assert bucket["seriesLabels"]["outcome"] == "success"

    (processed,) = _exemplars(prometheus, "queue_jobs_processed_total")
    assert [(e["labels"]["span_id"], float(e["value"])) for e in processed["exemplars"]] == [
        (f"{hook_span.span_id:016x}", 1.0)
    ]

    (user,) = _exemplars(prometheus, "shop_orders_total")
    assert [(e["labels"], float(e["value"])) for e in user["exemplars"]] == [
        ({"trace_id": trace_id, "span_id": f"{user_span.get_span_context().span_id:016x}"}, 2.0)
    ]
    assert user["seriesLabels"]["otel_scope_name"] == "shop"

    # A second scraper meanwhile, then more of Prometheus' own scrapes: every one showed the same
    # exemplar (none was taken by the one before), and Prometheus stored it once.
    request = urllib.request.Request(pipeline.metrics_url or "", headers={"Accept": OPENMETRICS})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert f'trace_id="{trace_id}",span_id="{hook_span.span_id:016x}"' in response.read().decode()
    scrapes = prometheus.value('count_over_time(up{job="app"}[10m])')
    prometheus.wait_for(f'count_over_time(up{{job="app"}}[10m]) >= {scrapes + 3}', lambda r: len(r) == 1)
    (again,) = _exemplars(prometheus, 'queue_job_duration_seconds_bucket{queue_name="emails"}')
    assert again["exemplars"] == [exemplar]

    (target,) = prometheus.targets_health()
    assert (target["health"], target["lastError"]) == ("up", "")


def test_promtool_accepts_the_text_format() -> None:
    pipeline = op.configure(service_name="promtool", exporter="prometheus", prometheus_port=0)
    queue = op.queue("emails")
    queue.enqueued(3)
    with queue.processing():
        pass
    with pytest.raises(ValueError, match="boom"), queue.processing():
        raise ValueError("boom")
    with urllib.request.urlopen(pipeline.metrics_url or "", timeout=10) as response:
        body = response.read()
    assert b"queue_job_duration_seconds_bucket{" in body
    assert b'error_type="ValueError"' in body
    assert promtool_check_metrics(body) == (0, "")
