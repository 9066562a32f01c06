from __future__ import annotations

import functools
import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline.hooks.cache import Cache
from otel_pipeline.testing import Capture
from tests.support.dropped import Key, assert_records, key, message

BOTH = pytest.mark.parametrize("otel_capture", ["core", "sdk"], indirect=True)


def attrs(name: str) -> dict[str, str]:
    return {"cache.name": name}


def named(capture: Capture, base: str) -> str:
    """A cache name per instrument mode: wrapped and observed caches stay registered on their hook."""
    return f"{base}-{capture.config.instrument_mode}"


def cache_points(capture: Capture, metric: str, name: str) -> list[Any]:
    found = capture.metrics().get(metric)
    points: list[Any] = [] if found is None else list(found.data.data_points)
    return [p for p in points if p.attributes.get("cache.name") == name]


@BOTH
def test_hits_misses_evictions_and_ratio(otel_capture: Capture) -> None:
    users = op.cache("users")
    users.hit()
    users.hit(2)
    users.miss()
    users.evicted(4)
    assert otel_capture.value("cache.hits", attrs("users")) == 3
    assert otel_capture.value("cache.misses", attrs("users")) == 1
    assert otel_capture.value("cache.evictions", attrs("users")) == 4
    assert otel_capture.value("cache.hit_ratio", attrs("users")) == 0.75
    metric = otel_capture.metric("cache.hits")
    assert (metric.unit, metric.description) == ("{hit}", "Cache lookups that found the entry.")
    assert [dict(p.attributes) for p in otel_capture.points("cache.hits")] == [attrs("users")]
    assert otel_capture.spans() == []


@BOTH
def test_ratio_is_absent_before_any_lookup(otel_capture: Capture) -> None:
    op.cache("cold").evicted()
    assert cache_points(otel_capture, "cache.evictions", "cold")[0].value == 1
    assert "cache.hit_ratio" not in otel_capture.metrics()
    op.cache("cold").miss()
    assert otel_capture.value("cache.hit_ratio", attrs("cold")) == 0.0


@BOTH
def test_set_size_reports_entries_bytes_and_limit(otel_capture: Capture) -> None:
    sized = op.cache("sized")
    sized.set_size(entries=10, bytes=4096, max_entries=1000)
    sized.set_size(entries=12)
    assert otel_capture.value("cache.entries", attrs("sized")) == 12
    assert otel_capture.value("cache.size", attrs("sized")) == 4096
    assert otel_capture.value("cache.entries.limit", attrs("sized")) == 1000
    assert otel_capture.metric("cache.size").unit == "By"


@BOTH
def test_observe_size_reads_functions_at_each_collection(otel_capture: Capture) -> None:
    store: dict[str, bytes] = {"a": b"xyz"}
    name = named(otel_capture, "blobs-observed")
    blobs = op.cache(name)
    blobs.observe_size(entries=lambda: len(store), bytes=lambda: sum(map(len, store.values())))
    assert otel_capture.value("cache.entries", attrs(name)) == 1
    assert otel_capture.value("cache.size", attrs(name)) == 3
    store["b"] = b"12345"
    assert otel_capture.value("cache.entries", attrs(name)) == 2
    assert otel_capture.value("cache.size", attrs(name)) == 8
    # The last call wins: a set value replaces the function, and a function a set value.
    blobs.set_size(entries=99)
    assert otel_capture.value("cache.entries", attrs(name)) == 99
    blobs.observe_size(entries=lambda: 7)
    assert otel_capture.value("cache.entries", attrs(name)) == 7
    blobs.set_size(entries=0, bytes=0)  # unregister the functions for the tests that follow


def test_observers_registered_before_configure_report_once_configured() -> None:
    early = op.cache("early-observed")
    early.observe_size(entries=lambda: 5)
    early.hit()  # not configured: a no-op
    with Capture() as capture:  # nothing touches the hook: it binds when the pipeline is installed
        assert capture.value("cache.entries", attrs("early-observed")) == 5
        assert "cache.hits" not in capture.metrics()
    pipeline = op.configure(service_name="early", exporter="none")
    data = pipeline.collect()
    assert data is not None
    points: list[Any] = [
        point
        for scope in data.resource_metrics[0].scope_metrics
        for metric in scope.metrics
        if metric.name == "cache.entries"
        for point in metric.data.data_points
    ]
    entries = [(dict(point.attributes), point.value) for point in points]
    assert (attrs("early-observed"), 5) in entries
    op.shutdown()
    early.set_size(entries=0)


@BOTH
def test_a_failing_size_function_is_skipped_and_logged_once(
    otel_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> float:
        raise OSError("disk gone")

    def not_a_number() -> Any:
        return "lots"

    name = named(otel_capture, "broken-size")
    op.cache(name).observe_size(entries=broken, bytes=not_a_number)
    op.cache(named(otel_capture, "fine-size")).set_size(entries=3)
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert otel_capture.value("cache.entries", attrs(named(otel_capture, "fine-size"))) == 3
        otel_capture.collect()
    assert cache_points(otel_capture, "cache.entries", name) == []
    assert cache_points(otel_capture, "cache.size", name) == []
    assert [r.getMessage() for r in caplog.records] == [
        f"cache {name!r}: the entries function raised; skipped",
        f"cache {name!r}: the bytes function returned 'lots', not a number >= 0; skipped",
    ]
    op.cache(name).set_size(entries=0, bytes=0)


CALLS: dict[int, list[int]] = {}


def make_lru(maxsize: int | None = 2) -> functools._lru_cache_wrapper[int]:
    """An lru_cache'd square; ``CALLS[id(it)]`` lists the arguments it really computed."""
    calls: list[int] = []

    @functools.lru_cache(maxsize=maxsize)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    CALLS[id(square)] = calls
    return square


@BOTH
def test_wrap_counts_lru_cache_lookups_entries_and_limit(otel_capture: Capture) -> None:
    original = make_lru(maxsize=2)
    square = op.cache(named(otel_capture, "squares")).wrap(original)
    assert [square(2), square(2), square(3), square(4), square(2)] == [4, 4, 9, 16, 4]
    # 2 miss, 2 hit, 3 miss, 4 miss (evicts 2), 2 miss
    assert tuple(original.cache_info()) == (1, 4, 2, 2)  # hits, misses, max, size
    assert otel_capture.value("cache.hits", attrs(named(otel_capture, "squares"))) == 1
    assert otel_capture.value("cache.misses", attrs(named(otel_capture, "squares"))) == 4
    assert otel_capture.value("cache.hit_ratio", attrs(named(otel_capture, "squares"))) == 0.2
    assert otel_capture.value("cache.entries", attrs(named(otel_capture, "squares"))) == 2
    assert otel_capture.value("cache.entries.limit", attrs(named(otel_capture, "squares"))) == 2
    # Counters are cumulative: a second collection adds only what happened since.
    square(4)
    assert otel_capture.value("cache.hits", attrs(named(otel_capture, "squares"))) == 2
    assert otel_capture.value("cache.misses", attrs(named(otel_capture, "squares"))) == 4


def test_wrap_is_transparent() -> None:
    original = make_lru(maxsize=None)
    square = op.cache("transparent").wrap(original)
    assert square.__wrapped__ is original
    assert square.__name__ == "square"
    assert square.cache_info == original.cache_info
    assert square.cache_parameters() == {"maxsize": None, "typed": False}
    assert square(5) == 25
    assert square(5) == 25
    assert CALLS[id(original)] == [5]
    square.cache_clear()
    assert original.cache_info().currsize == 0
    assert square(5) == 25
    assert CALLS[id(original)] == [5, 5]

    @op.cache("transparent-raise").wrap
    @functools.lru_cache
    def fails(x: int) -> int:
        raise KeyError(x)

    with pytest.raises(KeyError):
        fails(1)


@BOTH
def test_wrap_cache_clear_keeps_counts_exact(otel_capture: Capture) -> None:
    original = make_lru(maxsize=None)
    square = op.cache(named(otel_capture, "cleared")).wrap(original)
    square(1)
    square(1)
    square.cache_clear()
    square(1)
    square(1)
    square(1)
    assert otel_capture.value("cache.hits", attrs(named(otel_capture, "cleared"))) == 3
    assert otel_capture.value("cache.misses", attrs(named(otel_capture, "cleared"))) == 2
    # Cleared behind our back (on the original): its counts restart and are taken from zero.
    original.cache_clear()
    square(1)
    assert otel_capture.value("cache.hits", attrs(named(otel_capture, "cleared"))) == 3
    assert otel_capture.value("cache.misses", attrs(named(otel_capture, "cleared"))) == 3
    assert otel_capture.value("cache.entries", attrs(named(otel_capture, "cleared"))) == 1
    assert (
        cache_points(otel_capture, "cache.entries.limit", named(otel_capture, "cleared")) == []
    )  # unbounded


def test_wrap_counts_from_when_the_pipeline_is_bound() -> None:
    original = make_lru(maxsize=8)
    square = op.cache("wrapped-early").wrap(original)
    square(1)
    square(1)  # not configured: not counted
    with Capture() as capture:
        square(1)
        square(2)
        assert capture.value("cache.hits", attrs("wrapped-early")) == 1
        assert capture.value("cache.misses", attrs("wrapped-early")) == 1
        assert capture.value("cache.entries", attrs("wrapped-early")) == 2
    square.cache_clear()  # not configured: clears all the same
    assert original.cache_info().currsize == 0


@BOTH
def test_two_wrapped_functions_add_up(otel_capture: Capture) -> None:
    first = op.cache(named(otel_capture, "shared")).wrap(make_lru(maxsize=4))
    second = op.cache(named(otel_capture, "shared")).wrap(make_lru(maxsize=6))
    first(1)
    first(1)
    second(1)
    assert otel_capture.value("cache.hits", attrs(named(otel_capture, "shared"))) == 1
    assert otel_capture.value("cache.misses", attrs(named(otel_capture, "shared"))) == 2
    assert otel_capture.value("cache.entries", attrs(named(otel_capture, "shared"))) == 2
    assert otel_capture.value("cache.entries.limit", attrs(named(otel_capture, "shared"))) == 10


@BOTH
def test_threads_count_exactly(otel_capture: Capture) -> None:
    original = make_lru(maxsize=64)
    square = op.cache(named(otel_capture, "threaded-wrap")).wrap(original)
    manual = op.cache(named(otel_capture, "threaded-manual"))
    barrier = threading.Barrier(8)

    def work(offset: int) -> None:
        barrier.wait()
        for i in range(500):
            square((i + offset) % 100)
            manual.hit()
            if i % 5 == 0:
                manual.miss()
            if i % 100 == 0:
                otel_capture.collect()  # collections racing with lookups lose nothing

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    info = original.cache_info()
    assert info.hits + info.misses == 4000
    assert otel_capture.value("cache.hits", attrs(named(otel_capture, "threaded-wrap"))) == info.hits
    assert otel_capture.value("cache.misses", attrs(named(otel_capture, "threaded-wrap"))) == info.misses
    assert otel_capture.value("cache.hits", attrs(named(otel_capture, "threaded-manual"))) == 4000
    assert otel_capture.value("cache.misses", attrs(named(otel_capture, "threaded-manual"))) == 800
    assert otel_capture.value("cache.hit_ratio", attrs(named(otel_capture, "threaded-manual"))) == 4000 / 4800


def test_same_name_same_hook_and_noop_when_not_configured() -> None:
    assert op.cache("users") is op.cache("users")
    assert isinstance(op.cache("users"), Cache)
    assert op.cache("users") is not op.cache("orders")
    op.cache("users").hit()
    op.cache("users").miss(3)
    op.cache("users").evicted()
    op.cache("users").set_size(entries=1)
    with Capture() as capture:
        assert "cache.hits" not in capture.metrics()
        assert "cache.misses" not in capture.metrics()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: op.cache(""), ValueError, "cache name=''"),
        (lambda: op.cache(3), TypeError, "cache name must be a str, got int 3"),  # type: ignore[arg-type]
        (lambda: op.cache("c").observe_size(), ValueError, "give at least one of"),
        (
            lambda: op.cache("c").observe_size(entries=5),  # type: ignore[arg-type]
            TypeError,
            "observe_size(entries=...) needs a function returning a number, got int 5",
        ),
        (
            lambda: op.cache("c").wrap(len),
            TypeError,
            "cache.wrap() needs a function with cache_info() and cache_clear(), such as functools.lru_cache",
        ),
    ],
)
def test_bad_arguments_fail_early_with_clear_errors(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


C = {"cache.name": "c"}
_NOTHING = "; nothing is recorded for this call"
#: Record-time calls with a bad argument: the call, what it changes (after both calls), the warning.
DROPPED: dict[str, tuple[Callable[[Cache], Any], dict[Key, float], str, str, str]] = {
    "hit(-1)": (lambda c: c.hit(-1), {}, "hit(count=-1)", "negative", _NOTHING),
    "miss('2')": (lambda c: c.miss("2"), {}, "miss(count='2')", "wrong type", _NOTHING),  # type: ignore[arg-type]
    "evicted(True)": (lambda c: c.evicted(True), {}, "evicted(count=True)", "wrong type", _NOTHING),
    "hit(inf)": (lambda c: c.hit(float("inf")), {}, "hit(count=inf)", "not finite", _NOTHING),  # type: ignore[arg-type]
    "miss(10**400)": (lambda c: c.miss(10**400), {}, "miss(count=<int of 1329 bits>)", "too large", _NOTHING),
    "set_size(bytes=-5)": (
        lambda c: c.set_size(bytes=-5),
        {},
        "set_size(bytes=-5)",
        "negative",
        "; that size is not set",
    ),
    "set_size(entries=nan, bytes=7)": (
        lambda c: c.set_size(entries=float("nan"), bytes=7),
        {key("cache.size", cache__name="c"): 7 - 100},  # bytes set, entries kept
        "set_size(entries=nan)",
        "not finite",
        "; that size is not set",
    ),
    "set_size(max_entries='10')": (
        lambda c: c.set_size(max_entries="10"),  # type: ignore[arg-type]
        {},
        "set_size(max_entries='10')",
        "wrong type",
        "; that size is not set",
    ),
}


@pytest.mark.parametrize("row", DROPPED.values(), ids=DROPPED.keys())
def test_a_bad_argument_at_record_time_is_dropped_with_one_warning(
    capture: Capture, caplog: pytest.LogCaptureFixture, row: Any
) -> None:
    call, changes, text, problem, outcome = row
    c = op.cache("c")
    c.hit(2)
    c.miss(1)
    c.set_size(entries=4, bytes=100)
    assert_records(
        capture,
        caplog,
        lambda: call(c),
        changes,
        message("cache", "c", text, problem),
        outcome,
        per_call=False,
    )
    c.hit()  # and the cache goes on recording
    assert capture.value("cache.hits", C) == 3
    assert capture.value("cache.entries", C) == 4


@pytest.mark.parametrize("row", DROPPED.values(), ids=DROPPED.keys())
def test_a_bad_argument_never_raises_when_not_configured_either(
    caplog: pytest.LogCaptureFixture, row: Any
) -> None:
    call, _, text, problem, outcome = row
    assert_records(
        None, caplog, lambda: call(op.cache("c")), {}, message("cache", "c", text, problem), outcome
    )


def test_set_size_with_nothing_given_changes_nothing(capture: Capture) -> None:
    op.cache("c").set_size(entries=3)
    op.cache("c").set_size()
    op.cache("c").set_size(entries=None, bytes=None)
    assert capture.value("cache.entries", C) == 3
    assert "cache.size" not in capture.metrics()


def test_wrap_refuses_a_cache_info_without_the_counts() -> None:
    class Odd:
        def __call__(self) -> None:
            return None

        def cache_info(self) -> dict[str, int]:
            return {"hits": 0}

        def cache_clear(self) -> None:
            return None

    with pytest.raises(TypeError, match=r"cache_info\(\) returned \{'hits': 0\}, which has no 'hits'"):
        op.cache("odd").wrap(Odd())


def test_a_wrapped_cache_that_is_dropped_stops_being_reported() -> None:
    with Capture() as capture:
        square = op.cache("dropped").wrap(make_lru(maxsize=4))
        square(1)
        assert capture.value("cache.entries", attrs("dropped")) == 1
        del square
        gc.collect()
        assert cache_points(capture, "cache.entries", "dropped") == []
        assert op.cache("dropped")._sources == []
        assert capture.value("cache.misses", attrs("dropped")) == 1


def test_a_float_count_takes_the_slow_check_and_is_counted(capture: Capture) -> None:
    c = op.cache("c")
    c.hit(2.0)  # type: ignore[arg-type]
    c.miss(0.5)  # type: ignore[arg-type]
    c.evicted(3.0)  # type: ignore[arg-type]
    assert capture.value("cache.hits", C) == 2
    assert capture.value("cache.misses", C) == 0.5
    assert capture.value("cache.evictions", C) == 3
