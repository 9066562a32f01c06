"""Nothing a caller passes breaks a collection or an export (issue 11, findings 1 and 5).

Counts, sizes and timestamps given to a record-time call are checked at the call and never raise:
out of range (negative, nan, inf, past 2**53) or of the wrong type, the value is dropped with one
warning naming the hook, the call and the value. Timeouts, intervals and capacities given at hook
creation or configuration raise a ValueError naming the value. Values otel_pipeline reads itself
(observer functions, collectors, resource samples, HTTP statuses) never raise: a bad one is
dropped with one warning. At collection a point no exporter can encode
is dropped, never the collection. Every document is strict JSON.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.parser import text_string_to_metric_families

import otel_pipeline as op
from otel_pipeline._internal.exposition import render
from otel_pipeline._internal.validation import safe_repr
from otel_pipeline.hooks.resources import ResourceSample
from otel_pipeline.testing import Capture
from tests.reliability.exports import encode_otlp, get_json, samples, scrape, strict_loads
from tests.support.fixtures import otlp_receiver
from tests.support.otlp_receiver import OtlpReceiver

__all__ = ["otlp_receiver"]  # the fixture, for the integration test below

HUGE = 10**400
HUGE_TEXT = "<int of 1329 bits>"
GOOD_QUEUE = {"queue_name": "good"}


class Weird:
    """An object whose repr and str raise (and which cannot be hashed)."""

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.fixture(params=["core", "sdk"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def served(mode: str) -> op.Pipeline:
    """A pipeline serving /metrics, /stats, /trends and /health on a free port, in ``mode``."""
    return op.configure(service_name="values", exporter="prometheus", prometheus_port=0, instrument_mode=mode)


@pytest.fixture
def capture(mode: str) -> Iterator[Capture]:
    with Capture(instrument_mode=mode) as captured:
        yield captured


def record_good() -> None:
    """The series every test expects to find intact after the bad calls: exact counts."""
    op.queue("good").enqueued(3)
    op.cache("good").hit(2)
    with op.pipeline("good-run") as run, run.stage("fetch") as stage:
        stage.processed(7)


def assert_good_intact(pipeline: op.Pipeline) -> None:
    """/metrics answers and parses with the good series exact; the collection encodes as OTLP."""
    for openmetrics in (False, True):
        found = scrape(pipeline, openmetrics=openmetrics)
        assert samples(found, "queue_jobs_enqueued_total", **GOOD_QUEUE) == [3.0]
        assert samples(found, "cache_hits_total", cache_name="good") == [2.0]
        assert samples(found, "pipeline_stage_items_total", pipeline_name="good-run") == [7.0]
    assert encode_otlp(pipeline.collect()) > 0
    for path in ("/stats", "/trends", "/health"):
        status, body = get_json(pipeline, path)
        assert status == 200, body
    status, stats = get_json(pipeline, "/stats/good")
    assert stats["hooks"]["queue"]["good"]["queue.jobs.enqueued"]["value"] == 3


def _processed(value: Any) -> None:
    with op.pipeline("bad-run") as run, run.stage("fetch") as stage:
        stage.processed(value)


#: Every record-time method that takes a count, size or timestamp (finding 1).
COUNT_CALLS: dict[str, Callable[[Any], None]] = {
    "queue.enqueued": lambda v: op.queue("bad").enqueued(v),
    "queue.dequeued": lambda v: op.queue("bad").dequeued(v),
    "queue.retried": lambda v: op.queue("bad").retried(v),
    "queue.dead_lettered": lambda v: op.queue("bad").dead_lettered(v),
    "queue.replayed": lambda v: op.queue("bad").replayed(v),
    "cache.hit": lambda v: op.cache("bad").hit(v),
    "cache.miss": lambda v: op.cache("bad").miss(v),
    "cache.evicted": lambda v: op.cache("bad").evicted(v),
    "cache.set_size": lambda v: op.cache("bad").set_size(bytes=v),
    "stage.processed": _processed,
    "checkpoint.recovered": lambda v: op.checkpoint("bad").recovered(saved_at=v),
}
#: The values of finding 1: past float range, infinite, nan, past 2**53 (1e308 twice overflows), negative.
BAD_VALUES = {
    "10**400": HUGE,
    "inf": math.inf,
    "nan": math.nan,
    "1e308": 1e308,
    "2**53+1": 2**53 + 1,
    "-1": -1,
}


def dropped_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings about record-time arguments dropped (``... is not valid (<problem>): ...``)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and ") is not valid (" in r.getMessage()
    ]


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
@pytest.mark.parametrize("call", COUNT_CALLS.values(), ids=COUNT_CALLS.keys())
def test_a_bad_count_is_dropped_with_one_warning_and_every_other_series_still_exports(
    served: op.Pipeline, call: Callable[[Any], None], value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    record_good()
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        for _ in range(2):  # twice: 1e308 + 1e308 is inf
            call(value)  # never raises
    (said,) = dropped_warnings(caplog)
    assert f"={safe_repr(value)}) is not valid (" in said
    assert "must be a number >= 0 (an int or float, finite, at most 2**53 = 9007199254740992)" in said
    assert_good_intact(served)
    found = scrape(served)
    assert not [key for key in found if ("queue_name", "bad") in key[1] and key[0].startswith("queue_jobs")]
    assert not samples(found, "cache_hits_total", cache_name="bad")
    assert not samples(found, "cache_size_bytes", cache_name="bad")
    assert not samples(found, "pipeline_stage_items_total", pipeline_name="bad-run")
    assert not samples(found, "checkpoint_last_success_timestamp_seconds", checkpoint_name="bad")


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_capacity_is_configuration_and_raises(served: op.Pipeline, value: Any) -> None:
    with pytest.raises(ValueError, match=r"is not valid; use a number >= 0 \(finite, at most 2\*\*53"):
        op.queue("bad").set_capacity(value)
    with pytest.raises(ValueError, match=r"capacity=.* is not valid"):
        op.queue("bad", capacity=value)
    assert op.queue("bad").capacity is None
    assert_good_intact_after_nothing(served)


def test_the_warning_names_the_hook_the_call_and_the_value(
    served: op.Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        op.queue("bad").enqueued(HUGE)
        op.checkpoint("bad").recovered(saved_at=math.inf)
    assert dropped_warnings(caplog) == [
        f"queue 'bad': enqueued(count={HUGE_TEXT}) is not valid (too large): count must be a number >= 0 "
        "(an int or float, finite, at most 2**53 = 9007199254740992); nothing is recorded for this call "
        "(said once per queue method and problem)",
        "checkpoint 'bad': recovered(saved_at=inf) is not valid (not finite): saved_at must be a number >= 0 "
        "(an int or float, finite, at most 2**53 = 9007199254740992); the recovery is counted without it "
        "(said once per checkpoint method and problem)",
    ]
    found = scrape(served)
    assert samples(found, "checkpoint_recoveries_total", checkpoint_name="bad") == [1.0]
    assert not samples(found, "checkpoint_last_success_timestamp_seconds", checkpoint_name="bad")


def test_counts_up_to_2_53_are_kept_exactly(capture: Capture) -> None:
    op.queue("big").enqueued(2**53)
    op.queue("big").enqueued(1)
    assert capture.value("queue.jobs.enqueued", {"queue.name": "big"}) == 2**53 + 1


def test_an_integer_sum_past_int64_is_dropped_at_collection_with_one_warning(
    served: op.Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    record_good()
    for _ in range(1025):  # 1025 * 2**53 > 2**63 - 1: no exporter's as_int holds it
        op.queue("huge").enqueued(2**53)
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert_good_intact(served)
        assert_good_intact(served)
    assert not samples(scrape(served), "queue_jobs_enqueued_total", queue_name="huge")
    warnings = [r.getMessage() for r in caplog.records if "queue.jobs.enqueued" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "not a finite number within int64; the point is dropped" in warnings[0]


def test_a_users_own_instrument_with_a_bad_value_costs_that_point_only(
    served: op.Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    record_good()
    assert served.meter_provider is not None
    meter = served.meter_provider.get_meter("app")
    meter.create_counter("app.big", "1", "Too big.").add(2**64)  # finite, but no int64
    meter.create_gauge("app.level", "1", "Not a number.").set(math.nan, {"room": "a"})
    meter.create_gauge("app.level", "1", "Not a number.").set(4.5, {"room": "b"})
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert_good_intact(served)
    found = scrape(served)
    assert not samples(found, "app_big_total")
    assert samples(found, "app_level", room="b") == [4.5]
    assert not samples(found, "app_level", room="a")
    assert sum("app.big" in r.getMessage() for r in caplog.records) == 1


def test_the_renderer_skips_a_point_it_cannot_render(caplog: pytest.LogCaptureFixture) -> None:
    def point(value: Any, room: str) -> NumberDataPoint:
        return NumberDataPoint({"room": room}, 0, 1, value)

    metric = Metric(
        "jobs", "Jobs.", "1", Sum([point(HUGE, "a"), point(2, "b")], AggregationTemporality.CUMULATIVE, True)
    )
    scope = InstrumentationScope("app")
    data = MetricsData([ResourceMetrics(Resource({}), [ScopeMetrics(scope, [metric], "")], "")])
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        for openmetrics in (False, True):
            text = render(data, openmetrics=openmetrics).decode()
            values = {
                s.labels.get("room"): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name.startswith("jobs")
            }
            assert values == {"b": 2.0}
    assert [r.getMessage() for r in caplog.records] == [
        f"/metrics: jobs has a point that cannot be rendered (value {HUGE_TEXT}); such points are skipped"
    ]


# -- values read from the application's functions: dropped with one warning --------------------


def test_observed_values_out_of_range_are_dropped_with_one_warning(
    served: op.Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    record_good()
    op.connection_pool("pg", max_size=10).observe(idle=lambda: -1, used=lambda: 2)
    op.queue("observed").observe_depth(lambda: math.inf)
    op.queue("observed").observe_dead_letter_depth(lambda: 4)
    op.cache("observed").observe_size(entries=lambda: 5, bytes=lambda: HUGE)
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert_good_intact(served)
        found = scrape(served)
    counts = {
        dict(labels)["db_client_connection_state"]: value
        for (name, labels), value in found.items()
        if name == "db_client_connection_count"
    }
    assert counts == {"used": 2.0}
    assert samples(found, "queue_depth", queue_name="observed") == []
    assert samples(found, "queue_dead_letter_depth", queue_name="observed") == [4.0]
    assert samples(found, "cache_entries", cache_name="observed") == [5.0]
    assert samples(found, "cache_size_bytes", cache_name="observed") == []
    messages = [r.getMessage() for r in caplog.records]
    assert (
        messages.count("connection pool 'pg': observe(idle=...) is -1, not a finite number >= 0; dropped")
        == 1
    )
    assert sum("queue 'observed': the depth function returned inf" in m for m in messages) == 1
    assert sum(f"the bytes function returned {HUGE_TEXT}" in m for m in messages) == 1


class _FakeSource:
    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def sample(self) -> ResourceSample:
        return ResourceSample(**self.fields)


def test_a_bad_resource_sample_field_is_dropped_and_the_summary_is_strict_json(
    served: op.Pipeline, tmp_path: Path
) -> None:
    record_good()
    source = _FakeSource(
        cpu_utilization=math.nan, memory_usage=1024, threads=HUGE, disk_read=-5, disk_write=7
    )
    op.monitor_resources(interval=3600, source=source)
    assert_good_intact(served)
    found = scrape(served)
    assert samples(found, "process_memory_usage_bytes") == [1024.0]
    assert samples(found, "process_thread_count") == []
    assert samples(found, "process_cpu_utilization_ratio") == []
    assert samples(found, "process_disk_io_bytes_total") == [7.0]
    op.write_summary(tmp_path / "summary.json")
    report = strict_loads((tmp_path / "summary.json").read_text())
    assert report["resources"]["peak_cpu_utilization"] is None
    assert report["resources"]["peak_memory_bytes"] == 1024
    assert report["queues"]["good"]["enqueued"] == 3


def test_collectors_and_checks_returning_non_finite_values_give_strict_json(served: op.Pipeline) -> None:
    record_good()
    op.register_collector(
        "weird", lambda: {"nan": math.nan, "inf": math.inf, 1: {2: -math.inf}, "big": HUGE, "obj": Weird()}
    )
    op.register_health_check("lagging", lambda: {"status": "degraded", "lag": math.nan}, critical=False)
    op.register_health_check("broken", lambda: Weird(), critical=False)
    try:
        assert_good_intact(served)
        status, stats = get_json(served, "/stats")
        assert stats["collectors"]["weird"]["value"] == {
            "nan": None,
            "inf": None,
            "1": {"2": None},
            "big": None,
            "obj": "<Weird object (repr failed)>",
        }
        status, health = get_json(served, "/health")
        assert (status, health["status"]) == (200, "degraded")
        assert health["components"]["lagging"]["lag"] is None
        assert health["components"]["broken"]["error"] == "unexpected result <Weird object (repr failed)>"
    finally:
        op.unregister_collector("weird")
        op.unregister_health_check("lagging")
        op.unregister_health_check("broken")


# -- finding 5: nothing but the documented TypeError/ValueError escapes ---------------------------


@pytest.mark.parametrize("configured", [True, False])
def test_huge_timestamps_are_dropped_and_huge_timeouts_are_a_value_error(
    configured: bool, caplog: pytest.LogCaptureFixture
) -> None:
    if configured:
        op.configure(service_name="values", exporter="none")
    q = op.queue("q")
    ran = []
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        with q.processing(enqueued_at=HUGE):  # the job runs; its wait time is left out
            ran.append(1)
        q.dequeued(enqueued_at=HUGE)
    assert ran == [1]
    assert dropped_warnings(caplog) == [
        f"queue 'q': {method}(enqueued_at={HUGE_TEXT}) is not valid (too large): enqueued_at must be a "
        "number >= 0 (an int or float, finite, at most 2**53 = 9007199254740992); recorded without a wait "
        "time (said once per queue method and problem)"
        for method in ("processing", "dequeued")
    ]
    with pytest.raises(ValueError, match=f"timeout={HUGE_TEXT} is not valid; use a number of seconds > 0"):
        op.actions("a").track("send", timeout=HUGE)
    with pytest.raises(ValueError, match=f"interval={HUGE_TEXT} is not valid"):
        op.refresh_job("r", interval=HUGE)
    with pytest.raises(ValueError, match=r"interval=1e\+300 is not valid"):
        op.monitor_resources(interval=1e300)
    with pytest.raises(ValueError, match=f"timeout={HUGE_TEXT} is not valid"):
        op.register_health_check("c", lambda: True, timeout=HUGE)
    with pytest.raises(ValueError, match=f"window={HUGE_TEXT} is not valid"):
        op.health_target("t", window=HUGE)


FACTORIES: dict[str, Callable[[Any], Any]] = {
    "queue": op.queue,
    "cache": op.cache,
    "checkpoint": op.checkpoint,
    "dedup": op.dedup,
    "events": op.events,
    "actions": op.actions,
    "circuit_breaker": op.circuit_breaker,
    "connection_pool": op.connection_pool,
    "health_target": op.health_target,
    "refresh_job": op.refresh_job,
    "http_client": op.http_client,
    "pipeline": op.pipeline,
    "stage": op.stage,
}


@pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())
def test_an_unhashable_or_unprintable_name_is_a_clear_type_error(
    served: op.Pipeline, factory: Callable[[Any], Any]
) -> None:
    with pytest.raises(TypeError, match=r"name must be a str, got dict \{\}"):
        factory({})
    with pytest.raises(TypeError, match=r"name must be a str, got Weird <Weird object \(repr failed\)>"):
        factory(Weird())


def test_validation_never_raises_from_a_repr(served: op.Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    weird: Any = Weird()
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        op.queue("q").enqueued(weird)
        op.queue("q").enqueued(priority=weird)
        with op.http_client("c").request("GET", weird):
            pass
    assert [m.split(" is not valid ")[0] for m in dropped_warnings(caplog)] == [
        "queue 'q': enqueued(count=<Weird object (repr failed)>)",
        "queue 'q': enqueued(priority=<Weird object (repr failed)>)",
        "http client 'c': request(url=<Weird object (repr failed)>)",
    ]
    with pytest.raises(TypeError, match=r"timeout must be a number of seconds or None, got Weird"):
        op.actions("a").track("x", timeout=weird)  # an option, not a value to record: it raises
    assert samples(scrape(served), "queue_jobs_enqueued_total", queue_name="q", priority="_INVALID") == [1.0]
    assert_good_intact_after_nothing(served)


def assert_good_intact_after_nothing(pipeline: op.Pipeline) -> None:
    record_good()
    assert_good_intact(pipeline)


def _wsgi_app(status: Any) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


#: Status the app passes -> the code recorded (an int is taken at its word; the rest have none).
WSGI_STATUSES = {
    "int": (200, 200),
    "None": (None, None),
    "bytes": (b"200 OK", None),
    "abc": ("abc", None),
    "two digits": ("99 Low", None),
    "huge": (HUGE, None),
    "Weird": (Weird(), None),
}


@pytest.mark.parametrize(("status", "code"), WSGI_STATUSES.values(), ids=WSGI_STATUSES.keys())
def test_wsgi_a_malformed_status_passes_through_and_is_recorded_without_a_code(
    capture: Capture, status: Any, code: int | None
) -> None:
    seen: list[Any] = []
    app = op.WSGIMiddleware(_wsgi_app(status))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "wsgi.url_scheme": "http", "HTTP_TRACEPARENT": 5}
    body = app(environ, lambda s, h, exc_info=None: seen.append(s))
    assert list(body) == [b"ok"]
    body.close()  # type: ignore[attr-defined]
    assert seen == [status]  # the server gets exactly what the app sent, to refuse as it sees fit
    (point,) = capture.points("http.server.request.duration")
    expected: dict[str, Any] = {"http.request.method": "GET", "url.scheme": "http"}
    if code is not None:
        expected["http.response.status_code"] = code
    assert dict(point.attributes) == expected
    assert point.count == 1


ASGI_HEADERS = {
    "str pairs": [("traceparent", "x")],
    "short pair": [(b"a",)],
    "not iterable": 5,
    "ints": [1, 2],
    "int value": [(b"x-a", 10**9)],
    "Weird": Weird(),
}
ASGI_STATUSES = {"abc": "abc", "None": None, "huge": HUGE, "99": 99, "float nan": math.nan, "Weird": Weird()}


@pytest.mark.parametrize("status", ASGI_STATUSES.values(), ids=ASGI_STATUSES.keys())
@pytest.mark.parametrize("headers", ASGI_HEADERS.values(), ids=ASGI_HEADERS.keys())
def test_asgi_malformed_headers_and_status_never_raise(capture: Capture, headers: Any, status: Any) -> None:
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        await send("not a mapping")

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    scope = {"type": "http", "method": "GET", "path": "/x", "scheme": "http", "headers": headers}
    asyncio.run(op.ASGIMiddleware(app)(scope, receive, send))
    assert len(sent) == 3
    (point,) = capture.points("http.server.request.duration")
    assert dict(point.attributes) == {"http.request.method": "GET", "url.scheme": "http"}
    assert point.count == 1


def test_http_client_status_out_of_range_is_recorded_without_it(capture: Capture) -> None:
    client = op.http_client("pay")
    for status in (HUGE, -1, 1000, True, "200"):
        with client.request("GET", "https://pay.internal/x") as req:
            req.status_code = status
    with client.request("GET", "http://[::1/broken"):
        pass
    points = {
        frozenset(dict(p.attributes).items()): p.count for p in capture.points("http.client.request.duration")
    }
    assert points == {
        frozenset(
            {"http.request.method": "GET", "server.address": "pay.internal", "server.port": 443}.items()
        ): 5,
        frozenset({"http.request.method": "GET", "server.address": ""}.items()): 1,
    }
    assert encode_otlp(capture.collect()) > 0


# -- a real OTLP export still succeeds ---------------------------------------------------------


@pytest.mark.integration
def test_a_real_otlp_export_succeeds_after_every_bad_value(otlp_receiver: OtlpReceiver, mode: str) -> None:
    pipeline = op.configure(
        service_name="values",
        exporter="otlp",
        otlp_endpoint=otlp_receiver.grpc_endpoint,
        export_interval=60,
        export_timeout=5.0,
        instrument_mode=mode,
    )
    record_good()
    for call in COUNT_CALLS.values():
        for value in BAD_VALUES.values():
            call(value)  # dropped, never raised
    for _ in range(1025):
        op.queue("huge").enqueued(2**53)
    op.connection_pool("pg").observe(idle=lambda: -1, used=lambda: 2)
    assert pipeline.meter_provider is not None
    pipeline.meter_provider.get_meter("app").create_counter("app.big").add(2**64)
    assert pipeline.meter_provider.force_flush(timeout_millis=10_000)
    assert pipeline.export_state.consecutive_failures == 0
    assert pipeline.export_state.last_success is not None
    assert otlp_receiver.latest_point("queue.jobs.enqueued", {"queue.name": "good"}).value == 3
    assert otlp_receiver.latest_point("cache.hits", {"cache.name": "good"}).value == 2
    assert (
        otlp_receiver.latest_point(
            "db.client.connection.count",
            {"db.client.connection.pool.name": "pg", "db.client.connection.state": "used"},
        ).value
        == 2
    )
    assert not otlp_receiver.points("queue.jobs.enqueued", {"queue.name": "huge"})
    assert not otlp_receiver.points("app.big")
    assert not otlp_receiver.points(
        "db.client.connection.count",
        {"db.client.connection.pool.name": "pg", "db.client.connection.state": "idle"},
    )
    assert op.shutdown() is True


# -- the shared helpers, at their edges -----------------------------------------------------------


class _BadMapping(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("no items")


def test_jsonable_makes_anything_strict_json() -> None:
    from otel_pipeline._internal.strict_json import MAX_DEPTH, dumps, jsonable

    class Text(str):
        pass

    nested: list[Any] = []
    deepest = nested
    for _ in range(MAX_DEPTH + 5):
        deepest.append([])
        deepest = deepest[0]
    document = {
        None: 1,
        True: 2,
        1.5: 3,
        math.nan: 4,
        (1, 2): 5,
        Text("sub"): Text("value"),
        "set": {7},
        "bytes": b"\x00",
        "bad": _BadMapping(a=1),
        "nested": nested,
        "weird": Weird(),
        "sub-int": type("Big", (int,), {})(2**2000),
    }
    converted = jsonable(document)
    # None and nan both become the key "null": the later one wins, as with any duplicate key.
    assert {k: v for k, v in converted.items() if k not in ("bad", "nested")} == {
        "true": 2,
        "1.5": 3,
        "null": 4,
        "(1, 2)": 5,
        "sub": "value",
        "set": [7],
        "bytes": "b'\\x00'",
        "weird": "<Weird object (repr failed)>",
        "sub-int": None,
    }
    assert converted["bad"] == "{'a': 1}"
    text = dumps(document)
    assert strict_loads(text)["nested"] is not None
    assert type(converted["sub"]) is str


def test_the_checks_at_their_edges() -> None:
    from otel_pipeline._internal.validation import (
        MAX_SECONDS,
        check_count,
        check_flag,
        check_seconds,
        countable,
        exportable,
        finite,
        is_amount,
        observed,
        safe_repr,
    )

    big_int = type("BigInt", (int,), {})
    odd_float = type("OddFloat", (float,), {})
    assert finite(big_int(3))
    assert not finite(big_int(2**1100))
    assert not finite(odd_float("nan"))
    assert exportable(big_int(2**62))
    assert not exportable(big_int(2**64))
    assert not exportable(True)
    assert check_count("count", big_int(3)) == 3
    assert is_amount(2**53)
    assert not is_amount("1")
    assert countable(0.0)
    assert not countable(None)
    assert check_seconds("ttl", 0, zero=True) == 0.0
    assert check_seconds("t", MAX_SECONDS) == MAX_SECONDS
    with pytest.raises(ValueError, match=r"ttl=-1 is not valid; use a number of seconds >= 0"):
        check_seconds("ttl", -1, zero=True)
    with pytest.raises(TypeError, match="t must be a number of seconds, got str '1'"):
        check_seconds("t", "1")
    assert check_flag("f", False) is False
    assert observed("h", "n", "what", -5, minimum=None) == -5
    assert observed("h", "n", "what", math.nan, minimum=None) is None
    assert len(safe_repr("x" * 10_000)) == 200
    with pytest.raises(ValueError, match=r"name='xxx.*\.\.\. is not valid"):
        op.queue("x" * 300)


class _Hook:
    kind = "test hook"
    name = "h"


class _Hostile(int):
    """An int whose own arithmetic, comparisons and text raise: only int's own are used."""

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("no <")

    def __le__(self, other: object) -> bool:
        raise RuntimeError("no <=")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


class _Text(str):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_the_record_time_checks_at_their_edges(caplog: pytest.LogCaptureFixture) -> None:
    from otel_pipeline._internal.validation import INVALID, MAX_AMOUNT, amount, flag, identifier, label

    hook = _Hook()
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert amount(hook, "m", "count", 0) == 0
        assert amount(hook, "m", "count", MAX_AMOUNT) == MAX_AMOUNT
        assert amount(hook, "m", "count", 0.5) == 0.5
        exact = amount(hook, "m", "count", _Hostile(7))
        assert (exact, type(exact)) == (7, int)
        odd = amount(hook, "m", "count", type("F", (float,), {})(2.5))
        assert (odd, type(odd)) == (2.5, float)
        assert amount(hook, "m", "count", -0.0) == 0.0
        assert amount(hook, "m", "count", _Hostile(-1)) is None
        assert amount(hook, "m", "count", -math.inf) is None
        assert label(hook, "m", "reason", "ok") == "ok"
        assert label(hook, "m", "reason", "x" * 255) == "x" * 255
        assert label(hook, "m", "priority", 7, ints=True) == "7"
        assert label(hook, "m", "priority", _Hostile(3), ints=True) == "3"
        assert label(hook, "m", "priority", _Text("low")) == "low"
        assert type(label(hook, "m", "priority", _Text("low"))) is str
        assert label(hook, "m", "priority", 10**255, ints=True) == INVALID
        assert label(hook, "m", "priority", 10**254, ints=True) == "1" + "0" * 254
        assert label(hook, "m", "reason", 7) == INVALID  # ints only where allowed
        assert label(hook, "m", "reason", "   ") == INVALID
        assert identifier(hook, "m", "id", _Hostile(5)) == "5"
        assert identifier(hook, "m", "id", _Text("j-1")) == "j-1"
        assert identifier(hook, "m", "id", 10**5000) is None
        assert identifier(hook, "m", "id", False) is None
        assert flag(hook, "m", "f", True, "") is True
        assert flag(hook, "m", "f", 0, "") is None
    said = [r.getMessage().split(": ", 1)[1].split(" is not valid ")[0] for r in caplog.records]
    assert said == [
        "m(count=<_Hostile object (repr failed)>)",  # negative
        "m(count=-inf)",  # not finite
        "m(priority=<int of 848 bits>)",  # empty or too long
        "m(reason=7)",  # wrong type
        "m(reason='   ')",  # empty or too long: a problem of its own
        "m(id=<int of 16610 bits>)",  # too large
        "m(id=False)",  # wrong type
        "m(f=0)",
    ]


def test_a_bad_point_of_any_kind_is_dropped_from_what_the_sdk_collected() -> None:
    from opentelemetry.sdk.metrics.export import Gauge, Histogram, HistogramDataPoint

    from otel_pipeline._internal.merge import _exportable

    def histogram(total: float, room: str) -> HistogramDataPoint:
        return HistogramDataPoint({"room": room}, 0, 1, 1, total, (1, 0), (1.0,), total, total)

    cumulative = AggregationTemporality.CUMULATIVE
    metrics = [
        Metric("h", "", "s", Histogram([histogram(math.inf, "a"), histogram(0.5, "b")], cumulative)),
        Metric("g", "", "1", Gauge([NumberDataPoint({"room": "a"}, 0, 1, math.nan)])),
        Metric("ok", "", "1", Gauge([NumberDataPoint({}, 0, 1, 2)])),
    ]
    scope = InstrumentationScope("app")
    data = MetricsData([ResourceMetrics(Resource({}), [ScopeMetrics(scope, metrics, "")], "")])
    kept = _exportable(data)
    assert kept is not None
    (scope_metrics,) = kept.resource_metrics[0].scope_metrics
    assert {
        m.name: [dict(p.attributes or {}) for p in m.data.data_points] for m in scope_metrics.metrics
    } == {
        "h": [{"room": "b"}],
        "ok": [{}],
    }
    assert encode_otlp(kept) > 0
    clean = MetricsData([ResourceMetrics(Resource({}), [ScopeMetrics(scope, metrics[2:], "")], "")])
    assert _exportable(clean) is clean


def test_the_renderer_skips_a_histogram_or_labels_it_cannot_render(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.metrics.export import Histogram, HistogramDataPoint

    def histogram(total: Any, attributes: dict[str, Any]) -> HistogramDataPoint:
        return HistogramDataPoint(attributes, 0, 1, 1, total, (1, 0), (1.0,), 0.5, 0.5)

    cumulative = AggregationTemporality.CUMULATIVE
    points = [histogram(HUGE, {"room": "a"}), histogram(0.5, {"room": "b"}), histogram(0.5, {"n": 10**5000})]
    metric = Metric("wait", "Wait.", "s", Histogram(points, cumulative))
    data = MetricsData(
        [ResourceMetrics(Resource({}), [ScopeMetrics(InstrumentationScope("app"), [metric], "")], "")]
    )
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        text = render(data).decode()
    counts = [
        (s.labels.get("room"), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "wait_seconds_count"
    ]
    assert counts == [("b", 1.0)]
    assert len(caplog.records) == 1
