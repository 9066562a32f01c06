"""Hypothesis fuzzing of every public record-time entry point (issue 11).

Each entry point gets arbitrary values where the application would pass one (a count, a name, a
timestamp, a status, a header, what an observer function or a collector returns): huge, negative
and non-finite numbers, bools, text, bytes, containers, and hostile objects whose ``repr``,
``str``, ``hash``, ``==``, ``bool`` or ``len`` raise. After every case:

* nothing at all has escaped a record-time entry point (a call that records on an existing hook,
  or a value otel_pipeline reads from the application); a configuration entry point (a hook's
  name, a capacity, an interval, a timeout, a function to register) raised nothing but the
  documented ``TypeError``/``ValueError``. A hostile object raises :class:`Boom`, which must never
  come out of either;
* ``/metrics`` answers 200 and parses, in both the Prometheus text format and OpenMetrics, with
  finite values only, and the sentinel series keeps its exact count;
* a collection encodes as OTLP protobuf (int64 ``as_int``, doubles), and the run summary, /stats
  and /health are strict JSON.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import queue as stdlib_queue
from collections import namedtuple
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otel_pipeline as op
from otel_pipeline.hooks.resources import ResourceSample
from tests.reliability.exports import encode_otlp, get_json, samples, scrape

SENTINEL = "fuzz-sentinel"


class Boom(Exception):
    """What hostile objects raise; it must never escape from otel_pipeline."""


#: Hostile objects raise only while armed: around the call and the checks, not while hypothesis
#: prints a failing example.
ARMED = [False]
_UNARMED: dict[str, Callable[..., Any]] = {
    "__repr__": lambda self: f"<{type(self).__name__}>",
    "__str__": lambda self: f"<{type(self).__name__}>",
    "__hash__": object.__hash__,
    "__eq__": lambda self, other: self is other,
    "__bool__": lambda self: True,
    "__len__": lambda self: 0,
    "__iter__": lambda self: iter(()),
    "__lt__": lambda self, other: NotImplemented,
    "__le__": lambda self, other: NotImplemented,
    "__gt__": lambda self, other: NotImplemented,
    "__ge__": lambda self, other: NotImplemented,
}


def _hostile_method(dunder: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any) -> Any:
        if ARMED[0]:
            raise Boom(f"hostile {dunder}")
        fallback = _UNARMED.get(dunder)
        if fallback is None:
            raise TypeError(dunder)
        return fallback(self, *args)

    return method


def _hostile(*dunders: str) -> Any:
    """An instance of a class whose given dunder methods raise :class:`Boom` (while armed)."""
    namespace: dict[str, Any] = {dunder: _hostile_method(dunder) for dunder in dunders}
    cls = type("Hostile_" + "_".join(d.strip("_") for d in dunders), (), namespace)
    return cls()


HOSTILE = [
    _hostile("__repr__"),
    _hostile("__repr__", "__str__"),
    _hostile("__hash__"),
    _hostile("__eq__", "__hash__"),
    _hostile("__bool__"),
    _hostile("__len__", "__iter__"),
    _hostile("__lt__", "__le__", "__gt__", "__ge__"),
    _hostile("__float__", "__int__", "__index__"),
    _hostile("__repr__", "__str__", "__hash__", "__eq__", "__bool__", "__len__", "__iter__"),
]

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**53 - 2, max_value=2**70),
    st.sampled_from([10**400, -(10**400), 10**5000, 2**63, 2**64, -(2**63) - 1, 2**53, 2**53 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, -0.0, 5e-324]),
    st.text(max_size=300),
    st.binary(max_size=16),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.floats()), max_size=2),
    st.sampled_from(HOSTILE),
)


# -- the entry points: each takes the fuzzed value where an application would pass one -----------


def _queue_calls() -> dict[str, Callable[[Any], Any]]:
    def q() -> op.Queue:
        return op.queue("fuzz")

    def processing(**options: Any) -> None:
        with q().processing(**options):
            pass

    return {
        "queue(name)": lambda v: op.queue(v),
        "queue(capacity)": lambda v: op.queue("fuzz", capacity=v),
        "enqueued(count)": lambda v: q().enqueued(v),
        "enqueued(priority)": lambda v: q().enqueued(1, priority=v),
        "dequeued(count)": lambda v: q().dequeued(v),
        "dequeued(enqueued_at)": lambda v: q().dequeued(enqueued_at=v),
        "processing(enqueued_at)": lambda v: processing(enqueued_at=v),
        "processing(priority)": lambda v: processing(priority=v),
        "processing(job_id)": lambda v: processing(job_id=v),
        "retried(count)": lambda v: q().retried(v),
        "retried(requeued)": lambda v: q().retried(1, requeued=v),
        "dead_lettered(count)": lambda v: q().dead_lettered(v),
        "dead_lettered(reason)": lambda v: q().dead_lettered(reason=v),
        "replayed(count)": lambda v: q().replayed(v),
        "set_capacity": lambda v: q().set_capacity(v),
        "observe_depth(returns)": lambda v: q().observe_depth(lambda: v),
        "observe_depth(function)": lambda v: q().observe_depth(v),
        "observe_dead_letter_depth(returns)": lambda v: q().observe_dead_letter_depth(lambda: v),
        "enqueued(job_type)": lambda v: q().enqueued(job_type=v),
        "enqueued(carrier)": lambda v: q().enqueued(carrier=v),
        "processing(job_type)": lambda v: processing(job_type=v),
        "processing(carrier)": lambda v: processing(carrier=v),
        "processing(carriers)": lambda v: processing(carriers=v),
        "processing(carriers items)": lambda v: processing(carriers=[v, {"traceparent": v}]),
        "dead_lettered(job_type)": lambda v: q().dead_lettered(job_type=v),
        "observe_oldest_age(returns)": lambda v: q().observe_oldest_age(lambda: v),
        "observe_oldest_age(function)": lambda v: q().observe_oldest_age(v),
        "set_system": lambda v: q().set_system(v),
    }


CacheInfo = namedtuple("CacheInfo", "hits misses maxsize currsize")


def _cache_wrapped(value: Any) -> None:

    class Fake:
        def __call__(self) -> int:
            return 1

        def cache_info(self) -> Any:
            return CacheInfo(value, value, value, value)

        def cache_clear(self) -> None:
            pass

    op.cache("fuzz-wrapped").wrap(Fake())


def _cache_calls() -> dict[str, Callable[[Any], Any]]:
    def c() -> op.Cache:
        return op.cache("fuzz")

    return {
        "cache(name)": lambda v: op.cache(v),
        "hit": lambda v: c().hit(v),
        "miss": lambda v: c().miss(v),
        "evicted": lambda v: c().evicted(v),
        "set_size(entries)": lambda v: c().set_size(entries=v),
        "set_size(bytes)": lambda v: c().set_size(bytes=v),
        "set_size(max_entries)": lambda v: c().set_size(max_entries=v),
        "observe_size(returns)": lambda v: c().observe_size(entries=lambda: v, bytes=lambda: v),
        "wrap(cache_info returns)": _cache_wrapped,
    }


def _events_actions_calls() -> dict[str, Callable[[Any], Any]]:
    def process(event_type: Any = "t", **options: Any) -> None:
        with op.events("fuzz").process(event_type, **options):
            pass

    def track(action: Any = "a", **options: Any) -> None:
        with op.actions("fuzz").track(action, **options):
            pass

    def wrap(**options: Any) -> None:
        op.actions("fuzz").wrap(lambda: 1, **options)()

    return {
        "events(source)": lambda v: op.events(v),
        "process(event_type)": lambda v: process(v),
        "process(event_id)": lambda v: process(event_id=v),
        "actions(executor)": lambda v: op.actions(v),
        "track(action)": lambda v: track(v),
        "track(timeout)": lambda v: track(timeout=v),
        "wrap(executor)": lambda v: op.actions("fuzz").wrap(v),
        "wrap(action)": lambda v: wrap(action=v),
        "wrap(timeout)": lambda v: wrap(timeout=v),
    }


def _misc_calls() -> dict[str, Callable[[Any], Any]]:
    def stage_processed(value: Any) -> None:
        with op.pipeline("fuzz") as run, run.stage("s") as stage:
            stage.processed(value)

    def named_stage(value: Any) -> None:
        with op.pipeline("fuzz") as run, run.stage(value):
            pass

    def counted(value: Any) -> None:
        class Counted(op.Stage):
            def process(self) -> None:
                pass

            def count_items(self, result: Any, args: tuple[Any, ...]) -> Any:
                return value

        with op.pipeline("fuzz"):
            Counted()()

    def recovered(value: Any) -> None:
        with op.checkpoint("fuzz").save():
            pass
        op.checkpoint("fuzz").recovered(saved_at=value)

    def instrumented(q: Any, name: Any) -> None:
        op.instrument_queue(q, name)
        op.uninstrument_queue(q)

    return {
        "dedup(name)": lambda v: op.dedup(v),
        "dedup.check(duplicate)": lambda v: op.dedup("fuzz").check(duplicate=v),
        "checkpoint(name)": lambda v: op.checkpoint(v),
        "checkpoint.recovered(saved_at)": recovered,
        "pipeline(name)": lambda v: op.pipeline(v),
        "run.stage(name)": named_stage,
        "stage(name)": lambda v: op.stage(v),
        "stage(pipeline)": lambda v: op.stage("s", pipeline=v),
        "stage.processed": stage_processed,
        "Stage.count_items returns": counted,
        "circuit_breaker(name)": lambda v: op.circuit_breaker(v),
        "record_state": lambda v: op.circuit_breaker("fuzz").record_state(v),
        "instrument_queue(queue)": lambda v: instrumented(v, "fuzz-stdlib"),
        "instrument_queue(name)": lambda v: instrumented(stdlib_queue.Queue(), v),
    }


def _pool_calls() -> dict[str, Callable[[Any], Any]]:
    def observe_idle(value: Any) -> None:
        pool = op.connection_pool("fuzz")
        with pool.waiting():
            pass
        with pool.connection():
            pass
        pool.observe(idle=lambda: value)

    return {
        "connection_pool(name)": lambda v: op.connection_pool(v),
        "connection_pool(max_size)": lambda v: op.connection_pool("fuzz", max_size=v),
        "pool.observe(idle returns)": observe_idle,
        "pool.observe(used returns)": lambda v: op.connection_pool("fuzz").observe(used=lambda: v),
        "pool.observe(pending returns)": lambda v: op.connection_pool("fuzz").observe(pending=lambda: v),
        "pool.observe(function)": lambda v: op.connection_pool("fuzz").observe(idle=v),
    }


def _health_calls() -> dict[str, Callable[[Any], Any]]:
    def target(**options: Any) -> None:
        hook = op.health_target("fuzz", **options)
        hook.success()
        hook.failure()

    return {
        "health_target(name)": lambda v: op.health_target(v),
        "health_target(unhealthy_after)": lambda v: target(unhealthy_after=v),
        "health_target(window)": lambda v: target(window=v),
        "register_health_check(returns)": lambda v: op.register_health_check("fuzz", lambda: v, ttl=0),
        "register_health_check(timeout)": lambda v: op.register_health_check(
            "fuzz-t", lambda: True, timeout=v
        ),
        "register_health_check(ttl)": lambda v: op.register_health_check("fuzz-t", lambda: True, ttl=v),
        "register_health_check(critical)": lambda v: op.register_health_check(
            "fuzz-c", lambda: True, critical=v
        ),
        "register_collector(returns)": lambda v: op.register_collector("fuzz", lambda: v, ttl=0),
        "register_collector(available)": lambda v: op.register_collector("fuzz-a", lambda: 1, available=v),
        "refresh_job(name)": lambda v: op.refresh_job(v),
        "refresh_job(interval)": lambda v: op.refresh_job("fuzz", interval=v),
    }


class _Source:
    def __init__(self, value: Any) -> None:
        self.value = value

    def sample(self) -> ResourceSample:
        return ResourceSample(
            **dict.fromkeys(("cpu_utilization", "memory_usage", "threads", "disk_read"), self.value)
        )


def _resource_calls() -> dict[str, Callable[[Any], Any]]:
    return {
        "monitor_resources(interval)": lambda v: op.monitor_resources(interval=v).stop(),
        "monitor_resources(source returns)": lambda v: op.monitor_resources(interval=3600, source=_Source(v)),
    }


def _wsgi(value: Any, where: str) -> None:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "wsgi.url_scheme": "http"}
    status: Any = "200 OK"
    route: Any = None
    if where == "status":
        status = value
    elif where == "route":
        route = lambda environ: value  # noqa: E731
    else:
        environ[where] = value

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(status, [])
        return [b"ok"]

    body = op.WSGIMiddleware(app, route=route)(environ, lambda *args: None)
    assert list(body) == [b"ok"]
    body.close()  # type: ignore[attr-defined]


def _asgi(value: Any, where: str) -> None:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    status: Any = 200
    route: Any = None
    message: Any = None
    if where == "status":
        status = value
    elif where == "route":
        route = lambda scope: value  # noqa: E731
    elif where == "message":
        message = value
    else:
        scope[where] = value
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        if message is not None:
            await send(message)
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(item: Any) -> None:
        sent.append(item)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    asyncio.run(op.ASGIMiddleware(app, route=route)(scope, receive, send))
    assert len(sent) == (3 if message is not None else 2)


def _http_calls() -> dict[str, Callable[[Any], Any]]:
    def client(method: Any = "GET", url: Any = "https://fuzz.internal/x", status: Any = 200) -> None:
        with op.http_client("fuzz").request(method, url) as req:
            req.status_code = status

    calls: dict[str, Callable[[Any], Any]] = {
        "http_client(name)": lambda v: op.http_client(v),
        "http_client.request(method)": lambda v: client(method=v),
        "http_client.request(url)": lambda v: client(url=v),
        "http_client status_code": lambda v: client(status=v),
    }
    for where in ("status", "route", "REQUEST_METHOD", "PATH_INFO", "SERVER_PROTOCOL", "HTTP_TRACEPARENT"):
        calls[f"WSGI {where}"] = functools.partial(_wsgi, where=where)
    for where in (
        "status",
        "route",
        "message",
        "headers",
        "method",
        "path",
        "scheme",
        "http_version",
        "type",
    ):
        calls[f"ASGI {where}"] = functools.partial(_asgi, where=where)
    return calls


#: Entry points that create or configure something: a bad value raises TypeError/ValueError there.
#: Every other entry point records (or reads) a value and must never raise.
CONFIGURATION = {
    "queue(name)",
    "queue(capacity)",
    "set_capacity",
    "observe_depth(function)",
    "observe_oldest_age(function)",
    "set_system",
    "cache(name)",
    "wrap(cache_info returns)",
    "events(source)",
    "actions(executor)",
    "track(timeout)",
    "wrap(executor)",
    "wrap(action)",
    "wrap(timeout)",
    "dedup(name)",
    "checkpoint(name)",
    "pipeline(name)",
    "run.stage(name)",
    "stage(name)",
    "stage(pipeline)",
    "circuit_breaker(name)",
    "instrument_queue(queue)",
    "instrument_queue(name)",
    "connection_pool(name)",
    "connection_pool(max_size)",
    "pool.observe(function)",
    "health_target(name)",
    "health_target(unhealthy_after)",
    "health_target(window)",
    "register_health_check(timeout)",
    "register_health_check(ttl)",
    "register_health_check(critical)",
    "register_collector(available)",
    "refresh_job(name)",
    "refresh_job(interval)",
    "monitor_resources(interval)",
    "http_client(name)",
}

ENTRIES: dict[str, Callable[[Any], Any]] = {
    **_queue_calls(),
    **_cache_calls(),
    **_events_actions_calls(),
    **_misc_calls(),
    **_pool_calls(),
    **_health_calls(),
    **_resource_calls(),
    **_http_calls(),
}


def _finite_points(data: Any) -> None:
    """Every collected point has a finite value (an int within int64)."""
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        assert math.isfinite(point.sum), metric.name
                    elif isinstance(value, int):
                        assert -(2**63) <= value < 2**63, metric.name
                    else:
                        assert math.isfinite(value), metric.name


def check_exports(pipeline: op.Pipeline, name: str) -> None:
    """/metrics (both formats), a collection, its OTLP encoding and the JSON documents all still work."""
    for openmetrics in (False, True):
        found = scrape(pipeline, openmetrics=openmetrics)
        assert samples(found, "queue_jobs_enqueued_total", queue_name=SENTINEL) == [1.0]
    data = pipeline.collect()
    assert data is not None
    _finite_points(data)
    assert encode_otlp(data) > 0
    json.dumps(op.summary(), allow_nan=False)
    if "health" in name or "collector" in name or "refresh" in name:
        for path in ("/stats", "/health", "/trends"):
            status, _ = get_json(pipeline, path)
            assert status in (200, 503)


@pytest.fixture(params=["core", "sdk"])
def pipeline(request: pytest.FixtureRequest) -> Iterator[op.Pipeline]:
    served = op.configure(
        service_name="fuzz", exporter="prometheus", prometheus_port=0, instrument_mode=request.param
    )
    op.queue(SENTINEL).enqueued()
    yield served
    for name in ("fuzz", "fuzz-t", "fuzz-c"):
        op.unregister_health_check(name)
    for name in ("fuzz", "fuzz-a"):
        op.unregister_collector(name)


def test_every_configuration_entry_point_is_one() -> None:
    assert set(ENTRIES) >= CONFIGURATION
    assert len(ENTRIES) - len(CONFIGURATION) == 61  # the record-time ones: a new one is decided here


@pytest.mark.parametrize("name", ENTRIES)
def test_nothing_escapes_record_time_and_exports_keep_working(pipeline: op.Pipeline, name: str) -> None:
    entry = ENTRIES[name]
    configuration = name in CONFIGURATION

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(value=VALUES)
    def case(value: Any) -> None:
        ARMED[0] = True
        try:
            message = "no error"
            try:
                entry(value)
            except (TypeError, ValueError) as error:
                if not configuration:
                    raise  # record time: nothing escapes
                message = str(error)  # configuration: the documented errors, their message built safely
            assert message
            check_exports(pipeline, name)
        finally:
            ARMED[0] = False

    case()
