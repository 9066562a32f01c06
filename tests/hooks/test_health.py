from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.trace import StatusCode

import otel_pipeline as op
from otel_pipeline.hooks import health
from otel_pipeline.testing import Capture


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown: lets hanging checks and collectors finish."""
    event = threading.Event()
    yield event
    event.set()


def _target(capture: Capture, name: str) -> tuple[int, int, float]:
    attrs = {"health.target.name": name}
    return (
        capture.value("health.target.status", attrs),
        capture.value("health.target.consecutive_failures", attrs),
        capture.value("health.target.success_rate", attrs),
    )


def _probes(capture: Capture, name: str) -> dict[str, int]:
    return {
        p.attributes["outcome"]: p.value
        for p in capture.points("health.target.probes")
        if p.attributes["health.target.name"] == name
    }


def test_target_status_follows_consecutive_failures(capture: Capture) -> None:
    target = op.health_target("ollama", unhealthy_after=3, window=4)
    assert target.status == "unknown"
    assert capture.value("health.target.status", {"health.target.name": "ollama"}) == 0
    target.success()
    assert (target.status, _target(capture, "ollama")) == ("healthy", (1, 0, 1.0))
    target.failure()
    assert (target.status, _target(capture, "ollama")) == ("degraded", (2, 1, 0.5))
    target.failure()
    target.failure()
    assert (target.status, _target(capture, "ollama")) == ("unhealthy", (3, 3, 0.25))
    target.failure()  # the window holds the last 4 results: all failures
    assert _target(capture, "ollama") == (3, 4, 0.0)
    target.success()
    assert (target.status, _target(capture, "ollama")) == ("healthy", (1, 0, 0.25))
    assert target.snapshot() == {"status": "healthy", "consecutive_failures": 0, "success_rate": 0.25}
    assert _probes(capture, "ollama") == {"success": 2, "failure": 4}


async def test_probe_block_is_a_success_unless_it_raises(capture: Capture) -> None:
    target = op.health_target("db")
    with target.probe():
        pass
    with pytest.raises(ConnectionRefusedError), target.probe():
        raise ConnectionRefusedError("connection refused")

    @target.probe()
    async def ping() -> str:
        return "pong"

    assert await ping() == "pong"
    assert _probes(capture, "db") == {"success": 2, "failure": 1}
    spans = capture.spans("health.probe db")
    assert [s.status.status_code for s in spans] == [StatusCode.UNSET, StatusCode.ERROR, StatusCode.UNSET]
    assert dict(spans[0].attributes or {}) == {"health.target.name": "db"}


def test_target_arguments_and_noop() -> None:
    assert op.health_target("t") is op.health_target("t", unhealthy_after=2)
    assert op.health_target("t").unhealthy_after == 2
    with pytest.raises(ValueError, match=r"unhealthy_after=0 is not valid; use an integer >= 1"):
        op.health_target("t", unhealthy_after=0)
    with pytest.raises(ValueError, match=r"window=True is not valid"):
        op.health_target("t", window=True)
    target = op.health_target("unconfigured")
    target.failure()
    with target.probe():
        pass
    assert target.status == "unknown"
    assert target.snapshot() == {"status": "unknown", "consecutive_failures": 0, "success_rate": None}


def test_refresh_job_records_runs(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health.refresh_jobs, "_clock", lambda: 1_000.0)
    job = op.refresh_job("catalog", interval=300)
    attrs = {"refresh.name": "catalog"}
    with job.running():
        assert capture.value("refresh.in_progress", attrs) == 1
    monkeypatch.setattr(health.refresh_jobs, "_clock", lambda: 1_100.0)
    with pytest.raises(LookupError), job.running():
        raise LookupError("upstream gone")
    assert capture.value("refresh.in_progress", attrs) == 0
    assert capture.value("refresh.interval", attrs) == 300
    assert capture.value("refresh.last_success", attrs) == 1_000.0
    assert capture.value("refresh.duration", {**attrs, "outcome": "success"}) == 1
    assert (
        capture.value("refresh.duration", {**attrs, "outcome": "failure", "error.type": "LookupError"}) == 1
    )
    assert [s.name for s in capture.spans()] == ["refresh catalog", "refresh catalog"]
    op.refresh_job("catalog", interval=60)
    assert capture.value("refresh.interval", attrs) == 60


def test_refresh_job_goes_stale_after_two_intervals(
    capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health.refresh_jobs, "_clock", lambda: 5_000.0)
    job = op.refresh_job("rates", interval=60)
    assert job.health(now=5_120.0) == (
        "healthy",
        {"kind": "refresh", "interval": 60.0, "last_success": None, "age": 120.0},
    )
    assert job.health(now=5_121.0)[0] == "degraded"  # never succeeded, started > 2 intervals ago
    with job.running():
        pass
    assert job.health(now=5_100.0) == (
        "healthy",
        {"kind": "refresh", "interval": 60.0, "last_success": 5_000.0, "age": 100.0},
    )
    assert job.health(now=5_200.0)[0] == "degraded"


def test_refresh_job_bad_interval() -> None:
    with pytest.raises(ValueError, match=r"interval=0 is not valid; use a number of seconds > 0"):
        op.refresh_job("r", interval=0)
    with pytest.raises(TypeError, match="interval must be a number, got str"):
        op.refresh_job("r", interval="60")  # type: ignore[arg-type]


def test_checks_each_status_and_their_targets(capture: Capture, release: threading.Event) -> None:
    def broken() -> bool:
        raise ConnectionError("db down")

    def hangs() -> bool:
        release.wait(30)
        return True

    checks = {
        "ok": (lambda: True, True),
        "none": (lambda: None, True),
        "false": (lambda: False, True),
        "slow-queue": (lambda: "degraded", True),
        "details": (lambda: {"status": "healthy", "lag": 3}, True),
        "broken": (broken, True),
        "optional": (broken, False),
        "weird": (lambda: 42, True),
        "hangs": (hangs, True),
    }
    for name, (function, critical) in checks.items():
        op.register_health_check(name, function, timeout=0.2 if name == "hangs" else 5, critical=critical)
    try:
        found = {name: (status, details) for name, status, details in health._check_components()}
    finally:
        for name in checks:
            op.unregister_health_check(name)
    statuses = {name: status for name, (status, _) in found.items()}
    assert statuses == {
        "ok": "healthy",
        "none": "healthy",
        "false": "unhealthy",
        "slow-queue": "degraded",
        "details": "healthy",
        "broken": "unhealthy",
        "optional": "degraded",
        "weird": "unhealthy",
        "hangs": "unhealthy",
    }
    assert found["details"][1]["lag"] == 3
    assert found["broken"][1]["error"] == "ConnectionError('db down')"
    assert found["weird"][1]["error"] == "unexpected result 42"
    assert found["hangs"][1] == {
        "kind": "check",
        "critical": True,
        "duration": None,
        "error": "no result within 0.2 s",
    }
    assert found["optional"][1]["critical"] is False
    # Every check also feeds the health target of the same name.
    assert _probes(capture, "ok") == {"success": 1}
    assert _probes(capture, "hangs") == {"failure": 1}
    assert op.health_target("slow-queue").status == "degraded"


def test_collectors_run_in_parallel_each_within_its_timeout(
    capture: Capture, release: threading.Event
) -> None:
    calls: list[str] = []

    def hangs() -> dict[str, int]:
        calls.append("hangs")
        release.wait(30)
        return {"late": 1}

    def broken() -> int:
        raise ValueError("no gpu")

    op.register_collector("cache", lambda: {"entries": 42})
    op.register_collector("hangs", hangs, timeout=0.1)
    op.register_collector("broken", broken)
    op.register_collector("gpu", lambda: 1, available=False)
    op.register_collector("maybe", lambda: 1, available=lambda: False)
    try:
        first = health.collect_stats()
        second = health.collect_stats()  # the hung run is shared, not started again
    finally:
        for name in ("cache", "hangs", "broken", "gpu", "maybe"):
            op.unregister_collector(name)
    assert calls == ["hangs"]
    for found in (first, second):
        assert {name: outcome["status"] for name, outcome in found.items()} == {
            "broken": "failure",
            "cache": "success",
            "gpu": "unavailable",
            "hangs": "timeout",
            "maybe": "unavailable",
        }
    assert first["cache"]["value"] == {"entries": 42}
    assert first["broken"]["error"] == "ValueError('no gpu')"
    assert first["hangs"] == {"status": "timeout", "duration": None, "error": "no result within 0.1 s"}
    assert first["gpu"] == {"status": "unavailable", "duration": None}
    runs = {
        (p.attributes["stats.collector.name"], p.attributes["outcome"]): p.value
        for p in capture.points("stats.collector.runs")
    }
    assert runs == {
        ("broken", "failure"): 2,
        ("cache", "success"): 2,
        ("gpu", "unavailable"): 2,
        ("hangs", "timeout"): 2,
        ("maybe", "unavailable"): 2,
    }
    assert capture.value("stats.collection.duration") == 2


def test_results_are_reused_for_ttl_seconds(capture: Capture) -> None:
    calls = {"cached": 0, "fresh": 0}

    def counter(name: str) -> int:
        calls[name] += 1
        return calls[name]

    op.register_collector("cached", lambda: counter("cached"), ttl=3600)
    op.register_collector("fresh", lambda: counter("fresh"), ttl=0)
    try:
        results = [health.collect_stats() for _ in range(3)]
    finally:
        op.unregister_collector("cached")
        op.unregister_collector("fresh")
    assert [r["cached"]["value"] for r in results] == [1, 1, 1]
    assert [r["fresh"]["value"] for r in results] == [1, 2, 3]
    assert calls == {"cached": 1, "fresh": 3}


def test_availability_function_that_raises_means_unavailable() -> None:
    def explode() -> bool:
        raise ImportError("optional dependency missing")

    op.register_collector("optional", lambda: 1, available=explode)
    try:
        assert health.collect_stats(["optional"]) == {"optional": {"status": "unavailable", "duration": None}}
    finally:
        op.unregister_collector("optional")


def test_registration_bad_arguments() -> None:
    with pytest.raises(TypeError, match="function must be a function, got int"):
        op.register_health_check("x", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"timeout=-1 is not valid; use a number of seconds > 0"):
        op.register_health_check("x", lambda: True, timeout=-1)
    with pytest.raises(ValueError, match="health check name=''"):
        op.register_health_check("", lambda: True)
    with pytest.raises(TypeError, match="available must be a bool or a function, got str"):
        op.register_collector("x", lambda: 1, available="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ttl=-1 is not valid; use a number of seconds >= 0"):
        op.register_health_check("x", lambda: True, ttl=-1)
    with pytest.raises(TypeError, match="ttl must be a number, got str"):
        op.register_collector("x", lambda: 1, ttl="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout must be a number, got NoneType"):
        op.register_collector("x", lambda: 1, timeout=None)  # type: ignore[arg-type]
    op.unregister_collector("never-registered")
    op.unregister_health_check("never-registered")
