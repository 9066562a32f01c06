from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline.testing import Capture


def _counts(capture: Capture, pool: str) -> dict[str, float]:
    return {
        p.attributes["db.client.connection.state"]: p.value
        for p in capture.points("db.client.connection.count")
        if p.attributes["db.client.connection.pool.name"] == pool
    }


def test_counts_under_concurrent_use(capture: Capture) -> None:
    pool = op.connection_pool("postgres", max_size=10)
    attrs = {"db.client.connection.pool.name": "postgres"}
    threads_in = threading.Barrier(7)  # six workers and this test
    release = threading.Event()

    def worker() -> None:
        with pool.connection():
            threads_in.wait(timeout=10)
            release.wait(timeout=10)

    workers = [threading.Thread(target=worker) for _ in range(6)]
    for thread in workers:
        thread.start()
    threads_in.wait(timeout=10)
    assert _counts(capture, "postgres") == {"idle": 0, "used": 6}
    assert capture.value("connection_pool.utilization", attrs) == pytest.approx(0.6)
    release.set()
    for thread in workers:
        thread.join(timeout=10)
    assert _counts(capture, "postgres") == {"idle": 6, "used": 0}
    # Three more in sequence reuse idle connections: the idle count comes back to six.
    for _ in range(3):
        with pool.connection():
            assert _counts(capture, "postgres") == {"idle": 5, "used": 1}
    assert _counts(capture, "postgres") == {"idle": 6, "used": 0}
    assert capture.value("db.client.connection.use_time", attrs) == 9
    assert capture.value("db.client.connection.max", attrs) == 10
    assert capture.value("connection_pool.utilization", attrs) == 0
    assert capture.spans() == []


def test_threads_binding_at_once_share_one_set_of_counts(
    capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = op.connection_pool("raced")
    both_binding = threading.Barrier(2)
    bind = type(pool)._bind

    def slow_bind(self: op.ConnectionPool, pipeline: op.Pipeline) -> Any:
        both_binding.wait(timeout=10)  # both threads are inside _bind before either finishes
        return bind(self, pipeline)

    monkeypatch.setattr(type(pool), "_bind", slow_bind)
    release = threading.Event()
    inside = threading.Barrier(3)

    def worker() -> None:
        with pool.connection():
            inside.wait(timeout=10)
            release.wait(timeout=10)

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for thread in workers:
        thread.start()
    inside.wait(timeout=10)
    assert _counts(capture, "raced") == {"idle": 0, "used": 2}
    release.set()
    for thread in workers:
        thread.join(timeout=10)
    assert _counts(capture, "raced") == {"idle": 2, "used": 0}


def test_many_threads_leave_consistent_counts(capture: Capture) -> None:
    pool = op.connection_pool("busy", max_size=4)

    def worker() -> None:
        for _ in range(200):
            with pool.connection():
                pass

    workers = [threading.Thread(target=worker) for _ in range(8)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=30)
    counts = _counts(capture, "busy")
    assert counts["used"] == 0
    assert 1 <= counts["idle"] <= 8
    assert capture.value("db.client.connection.use_time", {"db.client.connection.pool.name": "busy"}) == 1600


def test_waiting_pending_wait_time_and_timeouts(capture: Capture) -> None:
    pool = op.connection_pool("redis")
    attrs = {"db.client.connection.pool.name": "redis"}
    with pool.waiting():
        assert capture.value("db.client.connection.pending_requests", attrs) == 1
    with pytest.raises(TimeoutError), pool.waiting():
        raise TimeoutError("pool exhausted")
    with pytest.raises(ConnectionError), pool.waiting():
        raise ConnectionError("refused")  # not a timeout: no wait time, no timeout
    pool.timeout()
    assert capture.value("db.client.connection.pending_requests", attrs) == 0
    assert capture.value("db.client.connection.timeouts", attrs) == 2
    assert capture.value("db.client.connection.wait_time", attrs) == 1
    spans = capture.spans("connection_pool.wait redis")
    assert [s.status.status_code.name for s in spans] == ["UNSET", "ERROR", "ERROR"]
    assert dict(spans[0].attributes or {}) == attrs
    # No max_size: no max and no utilization.
    assert "db.client.connection.max" not in capture.metrics()
    assert "connection_pool.utilization" not in capture.metrics()


async def test_async_and_decorator_forms(capture: Capture) -> None:
    pool = op.connection_pool("async-pool", max_size=2)
    attrs = {"db.client.connection.pool.name": "async-pool"}

    @pool.connection()
    async def query() -> int:
        await asyncio.sleep(0)
        return 1

    @pool.connection()
    def sync_query() -> int:
        return 2

    assert list(await asyncio.gather(query(), query())) == [1, 1]
    assert sync_query() == 2
    async with pool.waiting():
        pass
    assert capture.value("db.client.connection.use_time", attrs) == 3
    assert capture.value("db.client.connection.wait_time", attrs) == 1
    assert _counts(capture, "async-pool") == {"idle": 2, "used": 0}


def test_observed_pool_you_do_not_own(capture: Capture) -> None:
    state = {"idle": 3, "used": 7, "pending": 2}
    pool = op.connection_pool("sqlalchemy", max_size=10)
    pool.observe(idle=lambda: state["idle"], used=lambda: state["used"], pending=lambda: state["pending"])
    attrs = {"db.client.connection.pool.name": "sqlalchemy"}
    assert _counts(capture, "sqlalchemy") == {"idle": 3, "used": 7}
    assert capture.value("db.client.connection.pending_requests", attrs) == 2
    assert capture.value("connection_pool.utilization", attrs) == pytest.approx(0.7)
    state.update(idle=9, used=1, pending=0)
    assert _counts(capture, "sqlalchemy") == {"idle": 9, "used": 1}
    assert capture.value("connection_pool.utilization", attrs) == pytest.approx(0.1)
    pool.observe()  # stop observing: back to the counts connection() keeps
    assert _counts(capture, "sqlalchemy") == {"idle": 0, "used": 0}


def test_observed_before_configure_reports_once_configured() -> None:
    pool = op.connection_pool("early", max_size=8)
    pool.observe(idle=lambda: 5, used=lambda: 3)
    try:
        with Capture() as capture:
            assert _counts(capture, "early") == {"idle": 5, "used": 3}
            assert (
                capture.value("connection_pool.utilization", {"db.client.connection.pool.name": "early"})
                == 0.375
            )
    finally:
        pool.observe()


def test_observed_function_that_fails_is_skipped(capture: Capture, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> int:
        raise RuntimeError("driver gone")

    op.connection_pool("flaky").observe(idle=broken, used=lambda: "many")  # type: ignore[arg-type,return-value]
    op.connection_pool("steady").observe(idle=lambda: 1, used=lambda: 2)
    assert "flaky" not in {
        p.attributes["db.client.connection.pool.name"] for p in capture.points("db.client.connection.count")
    }
    assert _counts(capture, "steady") == {"idle": 1, "used": 2}
    assert "observe(idle=...) failed" in caplog.text
    assert "observe(used=...) is 'many', not a finite number >= 0; dropped" in caplog.text
    op.connection_pool("flaky").observe()
    op.connection_pool("steady").observe()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"max_size=0 is not valid; use an integer >= 1"):
        op.connection_pool("p", max_size=0)
    with pytest.raises(ValueError, match=r"max_size=2.5 is not valid"):
        op.connection_pool("p", max_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_size must be a number, got str"):
        op.connection_pool("p", max_size="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"observe\(idle=...\) needs a function returning a number, got int"):
        op.connection_pool("p").observe(idle=3)  # type: ignore[arg-type]
    assert op.connection_pool("p") is op.connection_pool("p", max_size=5)
    assert op.connection_pool("p").max_size == 5


def test_not_configured_is_a_noop() -> None:
    pool = op.connection_pool("off")
    with pool.connection(), pool.waiting():
        pool.timeout()
    assert pool._current() is None
