"""Every public record-time entry point, in one table shared by the reliability suites.

:data:`ENTRIES` maps a name to a call that takes one value where an application would pass one
(a count, a name, a timestamp, what an observer function returns...). The fuzz suite
(``test_fuzz_record_time.py``) calls each with arbitrary values; the fault-injection suite
(``test_fault_injection.py``) calls each record-time one with :func:`benign_value` while the
package's internals fail. :data:`CONFIGURATION` names the entry points that create or configure
something (a bad value raises ``TypeError``/``ValueError`` there); every other one records.
A new entry point is added here once, and both suites cover it.
"""

from __future__ import annotations

import asyncio
import functools
import queue as stdlib_queue
from collections import namedtuple
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import otel_pipeline as op
from otel_pipeline.hooks.resources import ResourceSample

__all__ = ["CONFIGURATION", "ENTRIES", "RECORD_TIME", "benign_value"]


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
    close = getattr(body, "close", None)  # what a WSGI server does: the app's own list has none
    if close is not None:
        close()


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


def _instrumented_executor(name: Any) -> None:
    pool = ThreadPoolExecutor(1)
    try:
        op.instrument_executor(pool, name)
        op.uninstrument_executor(pool)
    finally:
        pool.shutdown()


def _monitored_loop(**options: Any) -> None:
    async def main() -> None:
        op.monitor_event_loop(**options).stop()

    asyncio.run(main())


def _framework_calls() -> dict[str, Callable[[Any], Any]]:
    return {
        "instrument_executor(executor)": lambda v: op.instrument_executor(v, "fuzz-executor"),
        "instrument_executor(name)": _instrumented_executor,
        "monitor_event_loop(loop)": lambda v: _monitored_loop(loop=v),
        "monitor_event_loop(interval)": lambda v: _monitored_loop(interval=v),
        "monitor_event_loop(name)": lambda v: _monitored_loop(name=v),
    }


#: Entry points that create or configure something: a bad value raises TypeError/ValueError there.
#: Every other entry point records (or reads) a value and must never raise.
CONFIGURATION = {
    "instrument_executor(executor)",
    "instrument_executor(name)",
    "monitor_event_loop(loop)",
    "monitor_event_loop(interval)",
    "monitor_event_loop(name)",
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
    **_framework_calls(),
}

#: The record-time entry points: they never raise, whatever they are given.
RECORD_TIME = [name for name in ENTRIES if name not in CONFIGURATION]

#: Values an application would pass to the entry points that do not take a count of 1.
_BENIGN: dict[str, Any] = {
    "enqueued(priority)": 1,
    "dequeued(enqueued_at)": None,
    "processing(enqueued_at)": None,
    "processing(job_id)": "j-1",
    "retried(requeued)": True,
    "dead_lettered(reason)": "poison",
    "enqueued(job_type)": "email",
    "enqueued(carrier)": {},
    "processing(job_type)": "email",
    "processing(carrier)": {},
    "processing(carriers)": [{}],
    "processing(carriers items)": {},
    "dead_lettered(job_type)": "email",
    "process(event_type)": "order.created",
    "process(event_id)": "e-1",
    "track(action)": "send",
    "stage.processed": 1,
    "record_state": "open",
    "dedup.check(duplicate)": True,
    "checkpoint.recovered(saved_at)": None,
    "http_client.request(method)": "GET",
    "http_client.request(url)": "https://api.internal/x",
    "http_client status_code": 200,
    "WSGI status": "200 OK",
    "WSGI route": "/x",
    "WSGI REQUEST_METHOD": "GET",
    "WSGI PATH_INFO": "/x",
    "WSGI SERVER_PROTOCOL": "HTTP/1.1",
    "WSGI HTTP_TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "ASGI status": 200,
    "ASGI route": "/x",
    "ASGI message": {"type": "http.response.trailers"},
    "ASGI headers": [],
    "ASGI method": "GET",
    "ASGI path": "/x",
    "ASGI scheme": "http",
    "ASGI http_version": "1.1",
    "ASGI type": "http",
}


def benign_value(name: str) -> Any:
    """What an application would typically pass to the entry point ``name`` (1 unless said otherwise)."""
    return _BENIGN.get(name, 1)
