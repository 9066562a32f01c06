"""Hot-path overhead, side by side in one process: otel_pipeline's core vs the OTel SDK vs prometheus_client.

Every case is a zero-argument callable timed with ``timeit`` in interleaved rounds (each round
times every case once), and the best round is kept: on a shared, noisy machine the minimum is
the most repeatable estimate, and interleaving exposes all cases to the same noise.
"""

from __future__ import annotations

import contextlib
import gc
import timeit
import tracemalloc
from collections.abc import Callable
from time import perf_counter
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge
from prometheus_client import Histogram as PromHistogram

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline._internal.spec import Kind, MetricSpec
from otel_pipeline.config import DEFAULT_DURATION_BUCKETS, Config

__all__ = ["run"]

ATTRS = {"queue.name": "bench"}
OK = {"queue.name": "bench", "outcome": "success"}
BENCH_COUNTER = MetricSpec("bench.counter", Kind.COUNTER, "1", "Benchmark counter.", ("k",), "bench")
BENCH_HISTOGRAM = MetricSpec("bench.histogram", Kind.HISTOGRAM, "s", "Benchmark histogram.", ("k",), "bench")


def _time(cases: dict[str, Callable[[], Any]], number: int, rounds: int) -> dict[str, float]:
    """ns per call of each case: the best of ``rounds`` interleaved rounds of ``number`` calls."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, case in cases.items():
            gc.disable()
            try:
                elapsed = timeit.timeit(case, number=number)
            finally:
                gc.enable()
            best[name] = min(best[name], elapsed / number * 1e9)
    return {name: round(value, 1) for name, value in best.items()}


def _configure(rate: float, **options: Any) -> runtime.Runtime:
    """A fresh current pipeline, as configure() builds it (without touching the OTel globals)."""
    runtime.shutdown(timeout=5)
    config = Config.resolve({}, service_name="bench", exporter="none", trace_sample_rate=rate, **options)
    pipeline = runtime.build_pipeline(config)
    runtime.install(pipeline)
    return pipeline


def _hook() -> None:
    with op.queue("bench").processing():
        pass


#: A job's headers from an unsampled producer (W3C traceparent, flags 00).
UNSAMPLED_HEADERS = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}


def _hook_with_carrier() -> None:
    with op.queue("bench").processing(carrier=UNSAMPLED_HEADERS):
        pass


def _enqueue() -> None:
    op.queue("bench").enqueued()


def _enqueue_with_carrier() -> None:
    op.queue("bench").enqueued(carrier={})


def _sdk_case() -> Callable[[], None]:
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    meter = provider.get_meter("bench")
    in_progress = meter.create_up_down_counter("queue.jobs.in_progress", "{job}", "d")
    processed = meter.create_counter("queue.jobs.processed", "{job}", "d")
    duration = meter.create_histogram(
        "queue.job.duration", "s", "d", explicit_bucket_boundaries_advisory=list(DEFAULT_DURATION_BUCKETS)
    )

    def sdk_hook() -> None:
        in_progress.add(1, ATTRS)
        start = perf_counter()
        elapsed = perf_counter() - start
        duration.record(elapsed, OK)
        processed.add(1, OK)
        in_progress.add(-1, ATTRS)

    return sdk_hook


def _prometheus_cases() -> dict[str, Callable[[], Any]]:
    registry = CollectorRegistry()
    in_progress = PromGauge("jobs_in_progress", "d", ["queue"], registry=registry).labels("bench")
    processed = PromCounter("jobs_processed", "d", ["queue", "outcome"], registry=registry).labels(
        "bench", "ok"
    )
    duration = PromHistogram(
        "job_duration_seconds", "d", ["queue", "outcome"], registry=registry, buckets=DEFAULT_DURATION_BUCKETS
    ).labels("bench", "ok")

    def prometheus_hook() -> None:
        with in_progress.track_inprogress(), duration.time():
            pass
        processed.inc()

    def observe() -> None:
        duration.observe(0.3)

    return {
        "prometheus_client_hook": prometheus_hook,
        "prometheus_client_inc": processed.inc,
        "prometheus_client_observe": observe,
    }


def _collection(series: int) -> dict[str, float]:
    """Time to collect ``series`` histogram series through the core, and memory per series."""
    runtime.shutdown(timeout=5)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    pipeline = _configure(0.0, cardinality_limit=series + 10)
    assert pipeline.registry is not None
    instrument = pipeline.registry.instrument(BENCH_HISTOGRAM)
    bound = [instrument.bind({"k": str(i)}) for i in range(series)]
    for item in bound:
        item.record(0.1)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    timings = []
    for _ in range(5):
        start = perf_counter()
        pipeline.registry.collect(0)
        timings.append(perf_counter() - start)
    runtime.shutdown(timeout=5)
    return {"collect_ms": round(min(timings) * 1000, 3), "bytes_per_series": round(grown / series)}


def run(number: int = 20_000, rounds: int = 7) -> dict[str, Any]:
    """All overhead figures and the target ratios, as one JSON-able dict."""
    results: dict[str, Any] = {}
    # 8: not configured at all.
    runtime.shutdown(timeout=5)
    unconfigured = _time({"nullcontext": contextlib.nullcontext, "hook_unconfigured": _hook}, number, rounds)

    def baseline() -> None:
        with contextlib.nullcontext():
            pass

    unconfigured.update(_time({"nullcontext_with": baseline}, number, rounds))
    results.update(unconfigured)

    # 2-6: metrics only (spans off), core vs SDK vs prometheus_client, interleaved.
    _configure(0.0)
    pipeline = runtime.current()
    assert pipeline is not None
    assert pipeline.registry is not None
    counter = pipeline.registry.instrument(BENCH_COUNTER).bind({"k": "v"})
    histogram = pipeline.registry.instrument(BENCH_HISTOGRAM).bind({"k": "v"})

    def core_record() -> None:
        histogram.record(0.3)

    cases: dict[str, Callable[[], Any]] = {
        "hook_core": _hook,
        "hook_carrier_unsampled": _hook_with_carrier,
        "hook_sdk_direct": _sdk_case(),
        "core_counter_add": counter.add,
        "core_histogram_record": core_record,
        **_prometheus_cases(),
    }
    results.update(_time(cases, number, rounds))

    # Exemplar cost: the same record while a sampled span is open (the tracker says "maybe").
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("bench")
    from otel_pipeline._internal.exemplars import TRACKER

    with tracer.start_as_current_span("outer"):
        TRACKER.active += 1
        try:
            results.update(_time({"core_histogram_record_in_sampled_span": core_record}, number, rounds))
        finally:
            TRACKER.active -= 1

    # 7: spans at 1% and 100%.
    _configure(0.01)
    spans_1pct = _time(
        {
            "hook": _hook,
            "carrier": _hook_with_carrier,
            "enqueue": _enqueue,
            "enqueue_carrier": _enqueue_with_carrier,
        },
        number,
        rounds,
    )
    results["hook_spans_1pct"] = spans_1pct["hook"]
    # A job from an unsampled producer, and an enqueue writing the (unsampled) context: 1% roots.
    results["hook_carrier_unsampled_1pct"] = spans_1pct["carrier"]
    results["enqueue_1pct"] = spans_1pct["enqueue"]
    results["enqueue_carrier_1pct"] = spans_1pct["enqueue_carrier"]
    _configure(1.0)
    results["hook_spans_100pct"] = _time({"hook": _hook}, number // 10, rounds)["hook"]
    runtime.shutdown(timeout=5)

    # 9: collection and memory.
    results["collection_100"] = _collection(100)
    results["collection_10000"] = _collection(10_000)

    results["targets"] = _targets(results)
    return results


def _target(name: str, value: float, limit: float, higher_is_better: bool = False) -> dict[str, Any]:
    passed = value >= limit if higher_is_better else value <= limit
    return {"name": name, "value": round(value, 3), "limit": limit, "pass": passed}


def _targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _target(
            "hook: SDK time / core time (>= 20x faster)", r["hook_sdk_direct"] / r["hook_core"], 20, True
        ),
        _target(
            "hook: core time / prometheus_client time (<= 0.5)",
            r["hook_core"] / r["prometheus_client_hook"],
            0.5,
        ),
        _target(
            "counter: core / prometheus_client inc (<= 1)",
            r["core_counter_add"] / r["prometheus_client_inc"],
            1,
        ),
        _target(
            "histogram: core / prometheus_client observe (<= 1)",
            r["core_histogram_record"] / r["prometheus_client_observe"],
            1,
        ),
        _target("hook with 1% spans / metrics-only hook (<= 2)", r["hook_spans_1pct"] / r["hook_core"], 2),
        _target(
            "hook with an unsampled carrier / hook, 1% spans (<= 1.3)",
            r["hook_carrier_unsampled_1pct"] / r["hook_spans_1pct"],
            1.3,
        ),
        _target(
            "hook not configured / nullcontext (<= 3)", r["hook_unconfigured"] / r["nullcontext_with"], 3
        ),
        _target("collection of 100 series (ms, < 1)", r["collection_100"]["collect_ms"], 1),
    ]
