"""/metrics scrape time: our ScrapeReader vs the stock PrometheusMetricReader, on identical data.

Both readers sit on one MeterProvider, so they collect the very same series: a third counters,
a third up-down counters (gauges on /metrics), a third histograms with the default duration
buckets, each with two attributes; a few measurements are made inside a sampled span so the
OpenMetrics output has exemplars to write. Two things are timed, in interleaved rounds (best
round kept, as in ``benchmarks.overhead``):

* ``scrape``: what one /metrics request costs, collection included (stock: prometheus_client's
  ``generate_latest`` on the reader's registry; ours: ``ScrapeReader.scrape``);
* ``render``: turning one already-collected ``MetricsData`` into bytes, nothing else (this one
  holds the exemplars, which only the first collection after the measurements gets).

python -m benchmarks.scrape [--series 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any, cast

from opentelemetry.exporter.prometheus import PrometheusMetricReader, _CustomCollector
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics_exposition

from otel_pipeline._internal.exposition import ScrapeReader, render
from otel_pipeline.config import DEFAULT_DURATION_BUCKETS

__all__ = ["run"]

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
_om_generate = cast("Callable[[CollectorRegistry], bytes]", openmetrics_exposition.generate_latest)


def _record(provider: MeterProvider, series: int) -> None:
    meter = provider.get_meter("bench", "1.0")
    counter = meter.create_counter("bench.jobs.processed", "{job}", "Jobs processed.")
    gauge = meter.create_up_down_counter("bench.jobs.in_progress", "{job}", "Jobs in progress.")
    histogram = meter.create_histogram(
        "bench.job.duration",
        "s",
        "Time spent on one job.",
        explicit_bucket_boundaries_advisory=list(DEFAULT_DURATION_BUCKETS),
    )
    tracer = TracerProvider().get_tracer("bench")
    for index in range(series):
        attributes = {"queue.name": f"queue-{index // 3}", "outcome": "success"}
        kind = index % 3
        if kind == 0:
            counter.add(index + 1, attributes)
        elif kind == 1:
            gauge.add(index % 7 - 3, attributes)
        else:
            histogram.record((index % 1000) / 100.0, attributes)
    with tracer.start_as_current_span("sampled"):
        for index in range(min(series, 300)):
            attributes = {"queue.name": f"queue-{index // 3}", "outcome": "success"}
            if index % 3 == 0:
                counter.add(1, attributes)
            elif index % 3 == 2:
                histogram.record(0.02, attributes)


def _stock_render(data: MetricsData, openmetrics: bool) -> bytes:
    collector = _CustomCollector()
    collector.add_metrics_data(data)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return _om_generate(registry) if openmetrics else generate_latest(registry)


def _best_ns(cases: dict[str, Callable[[], bytes]], rounds: int) -> dict[str, int]:
    best = dict.fromkeys(cases, 1 << 62)
    for _ in range(rounds):
        for name, case in cases.items():
            gc.collect()
            gc.disable()
            try:
                start = perf_counter_ns()
                case()
                best[name] = min(best[name], perf_counter_ns() - start)
            finally:
                gc.enable()
    return best


def _ratio(stock: int, ours: int) -> float:
    return round(stock / ours, 2) if ours else float("inf")


def run(series: int = 10_000, rounds: int = 3) -> dict[str, Any]:
    """ns per scrape of both exporters on the same ``series`` series, with their ratio (stock / ours)."""
    registry = CollectorRegistry(auto_describe=False)
    stock_reader = PrometheusMetricReader(registry=registry)
    ours = ScrapeReader()
    snapshot = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"service.name": "bench"}),
        metric_readers=[stock_reader, ours, snapshot],
        shutdown_on_exit=False,
    )
    try:
        _record(provider, series)
        data = snapshot.get_metrics_data()
        assert data is not None
        # Exemplars are taken by the first collection after the measurements: scrape OpenMetrics first.
        openmetrics = ours.scrape(OPENMETRICS)[0]
        text = ours.scrape("")[0]
        cases: dict[str, Callable[[], bytes]] = {
            "scrape_text_stock": lambda: generate_latest(registry),
            "scrape_text_ours": lambda: ours.scrape("")[0],
            "scrape_openmetrics_stock": lambda: _om_generate(registry),
            "scrape_openmetrics_ours": lambda: ours.scrape(OPENMETRICS)[0],
            "render_text_stock": lambda: _stock_render(data, False),
            "render_text_ours": lambda: render(data),
            "render_openmetrics_stock": lambda: _stock_render(data, True),
            "render_openmetrics_ours": lambda: render(data, openmetrics=True),
        }
        ns = _best_ns(cases, rounds)
        return {
            "series": series,
            "rounds": rounds,
            "ns_per_scrape": ns,
            "speedup": {
                "scrape_text": _ratio(ns["scrape_text_stock"], ns["scrape_text_ours"]),
                "scrape_openmetrics": _ratio(ns["scrape_openmetrics_stock"], ns["scrape_openmetrics_ours"]),
                "render_text": _ratio(ns["render_text_stock"], ns["render_text_ours"]),
                "render_openmetrics": _ratio(ns["render_openmetrics_stock"], ns["render_openmetrics_ours"]),
            },
            "bytes": {"text": len(text), "openmetrics": len(openmetrics)},
            "exemplars_in_openmetrics": openmetrics.count(b" # {trace_id="),
            "text_identical_to_stock": generate_latest(registry) == ours.scrape("")[0],
        }
    finally:
        provider.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.series, args.rounds), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
