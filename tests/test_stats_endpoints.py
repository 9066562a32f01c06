"""/health, /stats, /stats/{name} and /trends on the real server, and the trends arithmetic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

import otel_pipeline as op
from otel_pipeline._internal.routes import health_score
from otel_pipeline._internal.trends import Totals, Trends
from tests.support.http import request

NUMBER_POINT = {
    "type": "object",
    "required": ["attributes", "value"],
    "properties": {"attributes": {"type": "object"}, "value": {"type": "number"}},
    "additionalProperties": False,
}
HISTOGRAM_POINT = {
    "type": "object",
    "required": ["attributes", "count", "sum", "min", "max", "bounds", "buckets"],
    "properties": {
        "attributes": {"type": "object"},
        "count": {"type": "integer", "minimum": 1},
        "sum": {"type": "number"},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "bounds": {"type": "array", "items": {"type": "number"}},
        "buckets": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    },
    "additionalProperties": False,
}
ENTRY = {
    "oneOf": [
        {
            "type": "object",
            "required": ["kind", "unit", "value", "points"],
            "properties": {
                "kind": {"enum": ["counter", "updowncounter", "gauge"]},
                "unit": {"type": "string"},
                "value": {"type": "number"},
                "points": {"type": "array", "minItems": 1, "items": NUMBER_POINT},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["kind", "unit", "count", "sum", "points"],
            "properties": {
                "kind": {"const": "histogram"},
                "unit": {"type": "string"},
                "count": {"type": "integer"},
                "sum": {"type": "number"},
                "points": {"type": "array", "minItems": 1, "items": HISTOGRAM_POINT},
            },
            "additionalProperties": False,
        },
    ]
}
COLLECTOR = {
    "type": "object",
    "required": ["status", "duration"],
    "properties": {
        "status": {"enum": ["success", "failure", "timeout", "unavailable"]},
        "duration": {"type": ["number", "null"]},
        "value": {},
        "error": {"type": "string"},
    },
    "additionalProperties": False,
}
STATS_SCHEMA = {
    "type": "object",
    "required": ["service", "time", "hooks", "collectors"],
    "properties": {
        "service": {"type": "string"},
        "time": {"type": "number"},
        "hooks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "object", "additionalProperties": ENTRY},
            },
        },
        "collectors": {"type": "object", "additionalProperties": COLLECTOR},
    },
    "additionalProperties": False,
}
WINDOW_VALUES = {
    "type": "object",
    "required": ["1m", "5m", "15m"],
    "additionalProperties": {"type": ["number", "null"]},
}
TRENDS_SCHEMA = {
    "type": "object",
    "required": ["service", "time", "interval", "windows", "hooks"],
    "properties": {
        "service": {"type": "string"},
        "time": {"type": "number"},
        "interval": {"type": "number"},
        "windows": WINDOW_VALUES,
        "hooks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["rate"],
                        "properties": {"rate": WINDOW_VALUES, "mean": WINDOW_VALUES},
                        "additionalProperties": False,
                    },
                },
            },
        },
    },
    "additionalProperties": False,
}


@pytest.fixture(params=["core", "sdk"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    pipeline = op.configure(
        service_name="shop", exporter="prometheus", prometheus_port=0, instrument_mode=request.param
    )
    assert pipeline.server is not None
    yield pipeline.server.url
    op.shutdown()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def get(url: str) -> tuple[int, Any]:
    reply = request(url)
    assert reply.headers["content-type"] == "application/json"
    return reply.status, json.loads(reply.body)


def _sorted_points(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        **entry,
        "points": sorted(entry["points"], key=lambda p: json.dumps(p["attributes"], sort_keys=True)),
    }


def test_stats_groups_every_hook_by_name(url: str) -> None:
    breaker = op.circuit_breaker("ollama")
    breaker.success()
    breaker.failure()
    breaker.record_state("open")
    breaker.rejected()
    pool = op.connection_pool("pg", max_size=4)
    with pool.connection(), pool.connection():
        pass
    op.health_target("ollama").failure()
    with op.http_client("payments").request("GET", "https://pay.example/x") as req:
        req.status_code = 200
    op.queue("emails").enqueued(3)
    op.register_collector("cache", lambda: {"entries": 42})
    try:
        status, body = get(f"{url}/stats")
    finally:
        op.unregister_collector("cache")
    assert status == 200
    jsonschema.validate(body, STATS_SCHEMA)
    assert body["service"] == "shop"
    breakers = body["hooks"]["circuit_breaker"]
    assert list(breakers) == ["ollama"]
    assert _sorted_points(breakers["ollama"]["circuit_breaker.calls"]) == {
        "kind": "counter",
        "unit": "{call}",
        "value": 3,
        "points": [
            {"attributes": {"outcome": "failure"}, "value": 1},
            {"attributes": {"outcome": "rejected"}, "value": 1},
            {"attributes": {"outcome": "success"}, "value": 1},
        ],
    }
    assert breakers["ollama"]["circuit_breaker.state"] == {
        "kind": "gauge",
        "unit": "1",
        "value": 1,
        "points": [{"attributes": {}, "value": 1}],
    }
    pg = body["hooks"]["connection_pool"]["pg"]
    assert _sorted_points(pg["db.client.connection.count"]) == {
        "kind": "updowncounter",
        "unit": "{connection}",
        "value": 2,
        "points": [
            {"attributes": {"db.client.connection.state": "idle"}, "value": 2},
            {"attributes": {"db.client.connection.state": "used"}, "value": 0},
        ],
    }
    assert pg["db.client.connection.use_time"]["count"] == 2
    assert pg["db.client.connection.use_time"]["kind"] == "histogram"
    assert body["hooks"]["health"]["ollama"]["health.target.consecutive_failures"]["value"] == 1
    client = body["hooks"]["http"]["*"]["http.client.request.duration"]
    assert [p["attributes"] for p in client["points"]] == [
        {
            "http.request.method": "GET",
            "server.address": "pay.example",
            "server.port": 443,
            "http.response.status_code": 200,
        }
    ]
    assert body["hooks"]["queue"]["emails"]["queue.jobs.enqueued"]["value"] == 3
    assert body["collectors"]["cache"]["status"] == "success"
    assert body["collectors"]["cache"]["value"] == {"entries": 42}


def test_stats_of_one_hook_one_name_or_one_collector(url: str) -> None:
    op.circuit_breaker("ollama").failure()
    op.health_target("ollama").success()
    op.connection_pool("pg").timeout()
    op.register_collector("cache", lambda: 7)
    try:
        _, by_hook = get(f"{url}/stats/circuit_breaker")
        _, by_name = get(f"{url}/stats/ollama")
        _, collector = get(f"{url}/stats/cache")
        _, collectors = get(f"{url}/stats/collectors")
        missing_status, missing = get(f"{url}/stats/nothing-here")
    finally:
        op.unregister_collector("cache")
    for body in (by_hook, by_name, collector, collectors):
        jsonschema.validate(body, STATS_SCHEMA)
    assert (list(by_hook["hooks"]), list(by_hook["hooks"]["circuit_breaker"]), by_hook["collectors"]) == (
        ["circuit_breaker"],
        ["ollama"],
        {},
    )
    assert {hook: list(names) for hook, names in by_name["hooks"].items()} == {
        "circuit_breaker": ["ollama"],
        "health": ["ollama"],
    }
    assert (collector["hooks"], collector["collectors"]["cache"]["value"]) == ({}, 7)
    assert list(collectors["collectors"]) == ["cache"]
    assert missing_status == 404
    assert missing["error"] == "not found"
    assert missing == {"error": "not found", "name": "nothing-here"}  # no list of the names there are
    assert get(f"{url}/no/such/path") == (404, {"error": "not found", "path": "/no/such/path"})


def test_a_hanging_collector_does_not_hold_the_response(url: str, release: threading.Event) -> None:
    started = threading.Event()

    def hangs() -> int:
        started.set()
        release.wait(30)
        return 1

    op.register_collector("hangs", hangs, timeout=0.2)
    op.register_collector("fast", lambda: "ok")
    try:
        status, body = get(f"{url}/stats")
    finally:
        op.unregister_collector("hangs")
        op.unregister_collector("fast")
    # The response came back while the collector was still blocked inside its function.
    assert started.is_set()
    assert not release.is_set()
    assert status == 200
    assert body["collectors"]["hangs"] == {
        "status": "timeout",
        "duration": None,
        "error": "no result within 0.2 s",
    }
    assert body["collectors"]["fast"]["status"] == "success"


def test_health_healthy_with_checks_targets_and_breakers(url: str) -> None:
    op.register_health_check("db", lambda: True)
    op.circuit_breaker("search").record_state("closed")
    op.health_target("cache").success()
    try:
        status, body = get(f"{url}/health")
    finally:
        op.unregister_health_check("db")
    assert status == 200
    assert body["status"] == "healthy"
    assert body["score"] == 100
    components = body["components"]
    assert set(components) == {"exporter", "db", "circuit_breaker:search", "cache"}
    assert components["circuit_breaker:search"] == {"status": "healthy", "state": "closed"}
    assert components["cache"] == {
        "status": "healthy",
        "kind": "target",
        "consecutive_failures": 0,
        "success_rate": 1.0,
    }
    assert components["db"]["kind"] == "check"
    assert components["db"]["critical"] is True


@pytest.mark.parametrize("state", ["open", "half_open"])
def test_health_degraded_while_a_breaker_is_not_closed(url: str, state: str) -> None:
    op.circuit_breaker("search").record_state(state)
    op.circuit_breaker("ollama").record_state("closed")
    status, body = get(f"{url}/health")
    assert (status, body["status"]) == (200, "degraded")
    # Three components (exporter, two breakers), two of them healthy: 50 + floor(39 * 2/3).
    assert body["score"] == 76
    assert body["components"]["circuit_breaker:search"] == {"status": "degraded", "state": state}


def test_health_unhealthy_when_a_critical_check_fails(url: str, release: threading.Event) -> None:
    def hangs() -> bool:
        release.wait(30)
        return True

    op.register_health_check("db", lambda: False)
    op.register_health_check("slow", hangs, timeout=0.2)
    op.register_health_check("optional", lambda: False, critical=False)
    try:
        status, body = get(f"{url}/health")
    finally:
        for name in ("db", "slow", "optional"):
            op.unregister_health_check(name)
    assert (status, body["status"]) == (503, "unhealthy")
    # Four components, two unhealthy: floor(49 * (1 - 2/4)).
    assert body["score"] == 24
    assert body["components"]["slow"]["error"] == "no result within 0.2 s"
    assert body["components"]["optional"]["status"] == "degraded"


def test_health_unhealthy_target_and_stale_refresh_job(url: str) -> None:
    target = op.health_target("ollama", unhealthy_after=2)
    target.failure()
    target.failure()
    with op.refresh_job("catalog", interval=3600).running():
        pass
    status, body = get(f"{url}/health")
    assert status == 503
    assert body["components"]["ollama"] == {
        "status": "unhealthy",
        "kind": "target",
        "consecutive_failures": 2,
        "success_rate": 0.0,
    }
    refresh = body["components"]["refresh:catalog"]
    assert (refresh["status"], refresh["kind"], refresh["interval"]) == ("healthy", "refresh", 3600)


def test_trends_endpoint_and_snapshotter_lifecycle(url: str) -> None:
    op.queue("emails").enqueued(5)
    with op.connection_pool("pg").connection():
        pass
    status, body = get(f"{url}/trends")
    assert status == 200
    jsonschema.validate(body, TRENDS_SCHEMA)
    assert body["service"] == "shop"
    assert body["interval"] == 10.0
    assert set(body["hooks"]["queue"]["emails"]) == {"queue.jobs.enqueued"}
    assert set(body["hooks"]["connection_pool"]["pg"]["db.client.connection.use_time"]) == {"rate", "mean"}
    assert "otel-pipeline-trends" in {t.name for t in threading.enumerate()}
    op.shutdown()
    assert "otel-pipeline-trends" not in {t.name for t in threading.enumerate()}


def test_concurrent_scrapes_stay_correct(url: str) -> None:
    queue = op.queue("load")
    breaker = op.circuit_breaker("load")
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            queue.enqueued()
            breaker.success()

    def scrape(path: str) -> tuple[int, bytes]:
        reply = request(f"{url}{path}")
        return reply.status, reply.body

    writer = threading.Thread(target=record)
    writer.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            replies = list(pool.map(scrape, ["/metrics", "/health", "/stats", "/trends"] * 25))
    finally:
        stop.set()
        writer.join(timeout=10)
    assert [status for status, _ in replies] == [200] * 100
    for index, (_, body) in enumerate(replies):
        if index % 4 == 0:
            assert b"queue_jobs_enqueued_total" in body
        elif index % 4 == 2:
            jsonschema.validate(json.loads(body), STATS_SCHEMA)
        else:
            json.loads(body)


def test_trends_rates_and_means_over_each_window() -> None:
    now = [0.0]
    totals: Totals = {}
    trends = Trends(lambda: dict(totals), clock=lambda: now[0])
    key_count = ("queue", "emails", "queue.jobs.enqueued")
    key_time = ("queue", "emails", "queue.job.duration")
    empty = trends.report()
    assert empty["windows"] == {"1m": None, "5m": None, "15m": None}
    assert empty["hooks"] == {}
    # One snapshot every 60 s for 20 minutes: 10 jobs a minute, each taking 0.5 s.
    for minute in range(21):
        now[0] = minute * 60.0
        totals[key_count] = (10.0 * minute, None)
        totals[key_time] = (10.0 * minute, 5.0 * minute)
        trends.snapshot()
    now[0] = 20 * 60.0 + 30.0
    totals[key_count] = (205.0, None)  # 5 more jobs in the last half minute
    totals[key_time] = (205.0, 102.5)
    report = trends.report()
    assert report["windows"] == {"1m": 90.0, "5m": 330.0, "15m": 930.0}
    emails = report["hooks"]["queue"]["emails"]
    assert emails["queue.jobs.enqueued"] == {
        "rate": {"1m": 15.0 / 90.0, "5m": 55.0 / 330.0, "15m": 155.0 / 930.0}
    }
    assert emails["queue.job.duration"]["mean"] == {"1m": 0.5, "5m": 0.5, "15m": 0.5}
    # Only what the longest window needs is kept.
    assert len(trends._snapshots) == 16


def test_trends_while_younger_than_the_window() -> None:
    now = [100.0]
    totals: Totals = {("queue", "q", "queue.jobs.enqueued"): (4.0, None)}
    trends = Trends(lambda: dict(totals), clock=lambda: now[0])
    trends.snapshot()
    now[0] = 120.0
    totals[("queue", "q", "queue.jobs.enqueued")] = (14.0, None)
    totals[("queue", "q", "new.counter")] = (2.0, None)  # appeared after the snapshot: counted from 0
    totals[("queue", "q", "queue.job.duration")] = (0.0, 0.0)
    report = trends.report()
    assert report["windows"] == {"1m": 20.0, "5m": 20.0, "15m": 20.0}
    assert report["hooks"]["queue"]["q"] == {
        "new.counter": {"rate": {"1m": 0.1, "5m": 0.1, "15m": 0.1}},
        "queue.job.duration": {
            "rate": {"1m": 0.0, "5m": 0.0, "15m": 0.0},
            "mean": {"1m": None, "5m": None, "15m": None},
        },
        "queue.jobs.enqueued": {"rate": {"1m": 0.5, "5m": 0.5, "15m": 0.5}},
    }


def test_a_failing_snapshot_is_logged_and_the_thread_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def read() -> Totals:
        calls.append(1)
        raise RuntimeError("collection failed")

    trends = Trends(read, interval=3600)
    trends.start()
    assert trends.running
    trends.stop()
    trends.stop()
    assert not trends.running
    assert calls == [1]
    assert "a /trends snapshot failed" in caplog.text


@pytest.mark.parametrize(
    ("status", "statuses", "score"),
    [
        ("healthy", ["healthy", "healthy"], 100),
        ("degraded", ["healthy", "degraded"], 69),
        ("degraded", ["degraded"], 50),
        ("unhealthy", ["healthy", "healthy", "healthy", "unhealthy"], 36),
        ("unhealthy", ["unhealthy"], 0),
    ],
)
def test_health_score_formula(status: str, statuses: list[str], score: int) -> None:
    components = {str(i): {"status": s} for i, s in enumerate(statuses)}
    assert health_score(status, components) == score


def test_histogram_points_carry_their_bucket_counts(url: str) -> None:
    from otel_pipeline._internal.runtime import current

    pipeline = current()
    assert pipeline is not None
    provider = pipeline.meter_provider
    assert provider is not None
    latency = provider.get_meter("app").create_histogram(
        "app.latency", "s", explicit_bucket_boundaries_advisory=[0.1, 1.0]
    )
    for value in (0.05, 0.5, 0.7, 5.0):
        latency.record(value, {"route": "/orders"})
    status, body = get(f"{url}/stats/other")
    assert status == 200
    assert body["hooks"]["other"]["*"]["app.latency"]["points"] == [
        {
            "attributes": {"route": "/orders"},
            "count": 4,
            "sum": 6.25,
            "min": 0.05,
            "max": 5.0,
            "bounds": [0.1, 1.0],
            "buckets": [1, 2, 1],
        }
    ]
