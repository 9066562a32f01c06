from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import otel_pipeline as op
from otel_pipeline._internal import timed
from otel_pipeline.hooks import checkpoint as checkpoint_module
from otel_pipeline.hooks.checkpoint import Checkpoint
from otel_pipeline.testing import Capture
from tests.support.dropped import assert_records, key, message

BOTH = pytest.mark.parametrize("otel_capture", ["core", "sdk"], indirect=True)
NAME = {"checkpoint.name": "listener-1"}
OK = {**NAME, "outcome": "success"}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class Clock:
    """perf_counter and time.time replacements: each save lasts ``step`` seconds, at ``now``."""

    def __init__(self) -> None:
        self.perf = 100.0
        self.step = 0.02
        self.now = 1_700_000_000.0
        self._starting = True

    def perf_counter(self) -> float:
        if not self._starting:
            self.perf += self.step
        self._starting = not self._starting
        return self.perf

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(timed, "perf_counter", fake.perf_counter)
    monkeypatch.setattr(checkpoint_module, "time", fake.time)
    return fake


def bucket_counts(*values: float) -> tuple[int, ...]:
    """The bucket counts of a histogram of ``values``, each equal to one of the bucket bounds."""
    counts = [0] * (len(BUCKETS) + 1)
    for value in values:
        counts[BUCKETS.index(value)] += 1
    return tuple(counts)


@BOTH
def test_successful_saves_are_counted_timed_and_stamped(otel_capture: Capture, clock: Clock) -> None:
    cp = op.checkpoint("listener-1")
    with cp.save() as save:
        save.span_attributes = {"checkpoint.offset": 42}
    clock.step, clock.now = 0.3, 1_700_000_060.0
    with cp.save():
        pass
    assert otel_capture.value("checkpoint.saves", OK) == 2
    duration = otel_capture.point("checkpoint.save.duration", OK)
    assert duration.count == 2
    assert duration.sum == pytest.approx(0.32)
    assert (duration.min, duration.max) == (pytest.approx(0.02), pytest.approx(0.3))
    assert duration.bucket_counts == bucket_counts(0.025, 0.5)
    assert tuple(duration.explicit_bounds) == BUCKETS
    assert otel_capture.value("checkpoint.last_success.timestamp", NAME) == 1_700_000_060.0
    assert otel_capture.metric("checkpoint.last_success.timestamp").unit == "s"
    assert otel_capture.metric("checkpoint.save.duration").unit == "s"
    spans = otel_capture.spans()
    assert [s.name for s in spans] == ["checkpoint.save listener-1"] * 2
    assert dict(spans[0].attributes or {}) == {"checkpoint.name": "listener-1", "checkpoint.offset": 42}
    assert spans[0].status.status_code is StatusCode.UNSET
    assert spans[0].parent is None


@BOTH
def test_a_failed_save_is_counted_reraised_and_does_not_move_the_timestamp(
    otel_capture: Capture, clock: Clock
) -> None:
    cp = op.checkpoint("listener-1")
    with cp.save():
        pass
    clock.now += 500
    with pytest.raises(OSError, match="disk full"), cp.save():
        raise OSError("disk full")
    failure = {**NAME, "outcome": "failure", "error.type": "OSError"}
    assert otel_capture.value("checkpoint.saves", OK) == 1
    assert otel_capture.value("checkpoint.saves", failure) == 1
    assert otel_capture.point("checkpoint.save.duration", failure).bucket_counts == bucket_counts(0.025)
    assert otel_capture.value("checkpoint.last_success.timestamp", NAME) == 1_700_000_000.0
    failed = otel_capture.spans()[-1]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "OSError: disk full"
    assert dict(failed.attributes or {})["error.type"] == "OSError"
    assert [e.name for e in failed.events] == ["exception"]


@BOTH
def test_save_decorates_functions_and_coroutines(otel_capture: Capture, clock: Clock) -> None:
    cp = op.checkpoint("listener-1")

    @cp.save()
    def save_offset(offset: int) -> int:
        return offset

    @cp.save()
    async def save_offset_async(offset: int) -> int:
        await asyncio.sleep(0)
        return offset

    async def with_async() -> None:
        async with cp.save():
            await asyncio.sleep(0)
        with pytest.raises(ValueError, match="bad offset"):
            await failing()

    @cp.save()
    async def failing() -> None:
        raise ValueError("bad offset")

    assert save_offset(1) == 1
    assert asyncio.run(save_offset_async(2)) == 2
    asyncio.run(with_async())
    assert save_offset.__name__ == "save_offset"
    assert otel_capture.value("checkpoint.saves", OK) == 3
    assert (
        otel_capture.value("checkpoint.saves", {**NAME, "outcome": "failure", "error.type": "ValueError"})
        == 1
    )
    assert otel_capture.point("checkpoint.save.duration", OK).bucket_counts == bucket_counts(
        0.025, 0.025, 0.025
    )
    assert len(otel_capture.spans("checkpoint.save listener-1")) == 4


def test_a_decorator_made_before_configure_records_once_configured(clock: Clock) -> None:
    @op.checkpoint("early").save()
    def save() -> None:
        return None

    save()  # not configured: nothing recorded, nothing raised
    with Capture() as capture:
        save()
        assert capture.value("checkpoint.saves", {"checkpoint.name": "early", "outcome": "success"}) == 1


@BOTH
def test_save_spans_are_children_of_the_current_span(otel_capture: Capture, clock: Clock) -> None:
    tracer = otel_capture.pipeline.tracer_provider.get_tracer("test")  # type: ignore[union-attr]
    with tracer.start_as_current_span("batch") as parent, op.checkpoint("listener-1").save():
        pass
    saved = otel_capture.spans("checkpoint.save listener-1")[0]
    assert saved.parent is not None
    assert saved.parent.span_id == parent.get_span_context().span_id


@BOTH
def test_recoveries(otel_capture: Capture) -> None:
    cp = op.checkpoint("listener-1")
    cp.recovered()
    assert otel_capture.value("checkpoint.recoveries", NAME) == 1
    assert "checkpoint.last_success.timestamp" not in otel_capture.metrics()
    cp.recovered(saved_at=1_600_000_000.5)
    assert otel_capture.value("checkpoint.recoveries", NAME) == 2
    assert otel_capture.value("checkpoint.last_success.timestamp", NAME) == 1_600_000_000.5
    assert otel_capture.metric("checkpoint.recoveries").unit == "{recovery}"


@BOTH
def test_threads_count_exactly(otel_capture: Capture) -> None:
    cp = op.checkpoint("listener-1")
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        for i in range(200):
            try:
                with cp.save():
                    if i % 10 == 0:
                        raise KeyError(i)
            except KeyError:
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert otel_capture.value("checkpoint.saves", OK) == 720
    assert (
        otel_capture.value("checkpoint.saves", {**NAME, "outcome": "failure", "error.type": "KeyError"}) == 80
    )
    assert otel_capture.point("checkpoint.save.duration", OK).count == 720


def test_same_name_same_hook_and_noop_when_not_configured() -> None:
    assert op.checkpoint("listener-1") is op.checkpoint("listener-1")
    assert isinstance(op.checkpoint("listener-1"), Checkpoint)
    with pytest.raises(RuntimeError, match="still raised"), op.checkpoint("listener-1").save():
        raise RuntimeError("still raised")
    op.checkpoint("listener-1").recovered(saved_at=5)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: op.checkpoint(""), ValueError, "checkpoint name='' is not valid"),
        (lambda: op.checkpoint(b"x"), TypeError, "checkpoint name must be a str, got bytes b'x'"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_fail_early_with_clear_errors(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


#: recovered(saved_at=...) values that are not a time: the recovery is counted, the time left as it is.
BAD_SAVED_AT = {
    "-1": (-1, "-1", "negative"),
    "str": ("yesterday", "'yesterday'", "wrong type"),
    "huge": (10**400, "<int of 1329 bits>", "too large"),
    "nan": (float("nan"), "nan", "not finite"),
}


@pytest.mark.parametrize("configured", [True, False])
@pytest.mark.parametrize("bad", BAD_SAVED_AT.values(), ids=BAD_SAVED_AT.keys())
def test_a_bad_saved_at_is_left_out_and_the_recovery_counted(
    caplog: pytest.LogCaptureFixture, bad: Any, configured: bool, mode: str
) -> None:
    value, text, problem = bad
    cp = op.checkpoint("c")
    if not configured:
        assert_records(
            None,
            caplog,
            lambda: cp.recovered(saved_at=value),
            {},
            message("checkpoint", "c", f"recovered(saved_at={text})", problem),
        )
        return
    with Capture(instrument_mode=mode) as capture:
        cp.recovered(saved_at=1_700_000_000.0)
        assert_records(
            capture,
            caplog,
            lambda: cp.recovered(saved_at=value),
            {key("checkpoint.recoveries", checkpoint__name="c"): 1},
            message("checkpoint", "c", f"recovered(saved_at={text})", problem),
            "saved_at must be a number >= 0",
            "; the recovery is counted without it",
        )
        assert capture.value("checkpoint.last_success.timestamp", {"checkpoint.name": "c"}) == 1_700_000_000.0


@pytest.fixture(params=["core", "sdk"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)
