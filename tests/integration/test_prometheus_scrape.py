"""A real Prometheus scrapes the embedded /metrics endpoint; values come back through its HTTP API."""

from __future__ import annotations

import pytest

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline._internal.wiring import Wiring
from otel_pipeline.server import MetricsServer, Response
from tests.support.fixtures import PrometheusFactory
from tests.support.http import request
from tests.support.prometheus import promtool_check_metrics

pytestmark = pytest.mark.integration


def target(pipeline: op.Pipeline) -> str:
    return f"127.0.0.1:{pipeline.prometheus_port}"


def test_recorded_values_read_back_from_prometheus(prometheus_factory: PrometheusFactory) -> None:
    pipeline = op.configure(service_name="orders", service_version="2.0.0", prometheus_port=0)
    q = op.queue("emails")
    q.enqueued(7)
    for _ in range(3):
        with q.processing():
            pass
    with pytest.raises(TimeoutError), q.processing():
        raise TimeoutError
    assert pipeline.meter_provider is not None
    user = pipeline.meter_provider.get_meter("shop")
    user.create_histogram(
        "shop.order.value", "USD", "Order value.", explicit_bucket_boundaries_advisory=[10.0, 100.0]
    ).record(250.0, {"region": "eu"})
    user.create_counter("shop.orders", "{order}", "Orders placed.").add(4, {"region": "eu"})

    prometheus = prometheus_factory([target(pipeline)], scrape_interval=0.5)
    prometheus.wait_scraped()

    assert prometheus.value('queue_jobs_enqueued_total{job="app",queue_name="emails"}') == 7
    success = 'queue_name="emails",outcome="success"'
    failure = 'queue_name="emails",outcome="failure",error_type="TimeoutError"'
    assert prometheus.value(f"queue_jobs_processed_total{{{success}}}") == 3
    assert prometheus.value(f"queue_jobs_processed_total{{{failure}}}") == 1
    assert prometheus.value(f"queue_job_duration_seconds_count{{{success}}}") == 3
    assert prometheus.value(f'queue_job_duration_seconds_bucket{{{success},le="+Inf"}}') == 3
    assert prometheus.value(f'queue_job_duration_seconds_bucket{{{success},le="10.0"}}') == 3
    assert prometheus.value('queue_jobs_in_progress{queue_name="emails"}') == 0
    # The user's own instruments go through the same provider and endpoint.
    assert prometheus.value('shop_orders_total{region="eu"}') == 4
    assert prometheus.value('shop_order_value_USD_sum{region="eu"}') == 250
    assert prometheus.value('shop_order_value_USD_bucket{region="eu",le="100.0"}') == 0
    assert prometheus.value('shop_order_value_USD_bucket{region="eu",le="+Inf"}') == 1

    info = prometheus.wait_for('target_info{job="app"}', lambda r: len(r) == 1)[0]["metric"]
    assert (info["service_name"], info["service_version"]) == ("orders", "2.0.0")
    assert info["instance"] == target(pipeline)

    # A later value reaches Prometheus too: the endpoint is live, not a snapshot.
    q.enqueued(5)
    prometheus.wait_for(
        'queue_jobs_enqueued_total{queue_name="emails"}', lambda r: len(r) == 1 and r[0]["value"][1] == "12"
    )
    health = prometheus.targets_health()
    assert [(t["health"], t["lastError"]) for t in health] == [("up", "")]


def test_promtool_accepts_the_endpoint() -> None:
    # promtool 2.42 checks the Prometheus text format (it rejects OpenMetrics' "info" type, which
    # target_info uses there); the OpenMetrics output is proven by Prometheus scraping it below.
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    q = op.queue("emails")
    q.enqueued(2)
    with q.processing():
        pass
    assert pipeline.metrics_url is not None
    reply = request(pipeline.metrics_url)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    code, output = promtool_check_metrics(reply.body)
    assert (code, output) == (0, "")


def test_prometheus_scrapes_openmetrics(
    prometheus_factory: PrometheusFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Record what the scraper asks for and what /metrics answers.
    seen: list[tuple[str, str]] = []

    def spy(server: MetricsServer, pipeline: op.Pipeline) -> None:
        original = server.resolve("/metrics")
        assert original is not None

        def metrics(path: str, headers: dict[str, str]) -> Response:
            response = original(path, headers)
            seen.append((headers.get("accept", ""), response[1]))
            return response

        server.add_route("/metrics", metrics)

    monkeypatch.setattr(runtime, "DEFAULT_WIRING", Wiring(route_installers=(spy,)))
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    op.queue("emails").enqueued(1)
    prometheus = prometheus_factory([target(pipeline)], scrape_interval=0.5)
    prometheus.wait_scraped()
    assert prometheus.value('queue_jobs_enqueued_total{queue_name="emails"}') == 1
    accept, content_type = seen[0]
    assert accept.startswith("application/openmetrics-text;version=1.0.0")
    assert content_type == "application/openmetrics-text; version=1.0.0; charset=utf-8"
