from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline.hooks.dedup import Dedup
from otel_pipeline.testing import Capture
from tests.support.dropped import assert_records, message

BOTH = pytest.mark.parametrize("otel_capture", ["core", "sdk"], indirect=True)
EVENTS = {"dedup.name": "events"}


@BOTH
def test_checks_duplicates_and_ratio(otel_capture: Capture) -> None:
    events = op.dedup("events")
    seen: set[str] = set()
    kept = []
    for key in ["a", "b", "a", "c", "a"]:
        if events.check(duplicate=key in seen):
            continue
        seen.add(key)
        kept.append(key)
    assert kept == ["a", "b", "c"]
    assert otel_capture.value("dedup.checks", EVENTS) == 5
    assert otel_capture.value("dedup.duplicates", EVENTS) == 2
    assert otel_capture.value("dedup.duplicate_ratio", EVENTS) == 0.4
    checks = otel_capture.metric("dedup.checks")
    assert (checks.unit, checks.description) == ("{check}", "Items checked for being a duplicate.")
    assert checks.data.is_monotonic  # type: ignore[union-attr]
    ratio = otel_capture.metric("dedup.duplicate_ratio")
    assert ratio.unit == "1"
    assert [dict(p.attributes) for p in otel_capture.points("dedup.duplicate_ratio")] == [EVENTS]
    assert otel_capture.spans() == []


@BOTH
def test_no_duplicates_means_ratio_zero_and_no_duplicate_point(otel_capture: Capture) -> None:
    assert op.dedup("events").check(duplicate=False) is False
    assert otel_capture.value("dedup.checks", EVENTS) == 1
    assert otel_capture.value("dedup.duplicate_ratio", EVENTS) == 0.0
    assert "dedup.duplicates" not in otel_capture.metrics()


@BOTH
def test_ratio_is_absent_before_the_first_check(otel_capture: Capture) -> None:
    op.dedup("orders").check(duplicate=True)
    assert [dict(p.attributes) for p in otel_capture.points("dedup.duplicate_ratio")] == [
        {"dedup.name": "orders"}
    ]
    assert otel_capture.value("dedup.duplicate_ratio", {"dedup.name": "orders"}) == 1.0


def test_each_pipeline_counts_from_zero() -> None:
    with Capture() as first:
        op.dedup("events").check(duplicate=True)
        assert first.value("dedup.duplicate_ratio", EVENTS) == 1.0
    with Capture() as second:
        op.dedup("events").check(duplicate=False)
        assert second.value("dedup.checks", EVENTS) == 1
        assert second.value("dedup.duplicate_ratio", EVENTS) == 0.0


def test_returning_to_a_pipeline_keeps_its_totals() -> None:
    with Capture() as outer:
        op.dedup("events").check(duplicate=True)
        with Capture():
            op.dedup("events").check(duplicate=False)
        op.dedup("events").check(duplicate=False)
        assert outer.value("dedup.checks", EVENTS) == 2
        assert outer.value("dedup.duplicate_ratio", EVENTS) == 0.5


@BOTH
def test_threads_count_exactly(otel_capture: Capture) -> None:
    events = op.dedup("events")
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for i in range(1000):
            events.check(duplicate=i % 4 == 0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert otel_capture.value("dedup.checks", EVENTS) == 8000
    assert otel_capture.value("dedup.duplicates", EVENTS) == 2000
    assert otel_capture.value("dedup.duplicate_ratio", EVENTS) == 0.25


def test_same_name_same_hook_and_noop_when_not_configured() -> None:
    assert op.dedup("events") is op.dedup("events")
    assert isinstance(op.dedup("events"), Dedup)
    assert op.dedup("events") is not op.dedup("orders")
    assert op.dedup("events").check(duplicate=True) is True  # not configured: returns, records nothing
    with Capture() as capture:
        assert "dedup.checks" not in capture.metrics()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: op.dedup(""), ValueError, "dedup name='' is not valid"),
        (lambda: op.dedup(None), TypeError, "dedup name must be a str, got NoneType None"),  # type: ignore[arg-type]
        (lambda: op.dedup("events").check(True), TypeError, "positional argument"),  # type: ignore[call-arg]
    ],
)
def test_bad_arguments_fail_early_with_clear_errors(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with Capture() as capture:
        with pytest.raises(error) as raised:
            call()
        assert message in str(raised.value)
        assert "dedup.checks" not in capture.metrics()


@pytest.mark.parametrize("configured", [True, False])
@pytest.mark.parametrize(("value", "text"), [(1, "1"), (None, "None"), ("yes", "'yes'")])
def test_a_duplicate_flag_that_is_not_a_bool_is_not_counted(
    caplog: pytest.LogCaptureFixture, value: Any, text: str, configured: bool
) -> None:
    results: list[Any] = []
    starts = message("dedup", "events", f"check(duplicate={text})", "wrong type")
    said = "duplicate must be True or False; nothing is recorded for this call"
    call = lambda: results.append(op.dedup("events").check(duplicate=value))  # noqa: E731
    if not configured:
        assert_records(None, caplog, call, {}, starts, said)
        assert results == [value, value]
        return
    with Capture() as capture:
        op.dedup("events").check(duplicate=True)
        op.dedup("events").check(duplicate=False)
        assert_records(capture, caplog, call, {}, starts, said)
        assert results == [value, value]  # what was given comes back
        assert capture.value("dedup.checks", EVENTS) == 2
        assert capture.value("dedup.duplicates", EVENTS) == 1
