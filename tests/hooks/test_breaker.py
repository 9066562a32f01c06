from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pybreaker
import pytest

import otel_pipeline as op
from otel_pipeline.hooks import breaker as breaker_module
from otel_pipeline.testing import Capture
from tests.support.dropped import assert_records, message


@pytest.fixture(autouse=True)
def _uninstrument() -> Iterator[None]:
    """pybreaker breakers instrumented by a test do not report into later tests."""
    yield
    for breaker in list(breaker_module._INSTRUMENTED):
        op.uninstrument_pybreaker(breaker)


def _transitions(capture: Capture, name: str) -> dict[tuple[str, str], int]:
    return {
        (p.attributes["circuit_breaker.state.from"], p.attributes["circuit_breaker.state.to"]): p.value
        for p in capture.points("circuit_breaker.transitions")
        if p.attributes["circuit_breaker.name"] == name
    }


def _calls(capture: Capture, name: str) -> dict[str, int]:
    return {
        p.attributes["outcome"]: p.value
        for p in capture.points("circuit_breaker.calls")
        if p.attributes["circuit_breaker.name"] == name
    }


def test_state_gauge_transitions_and_trips(capture: Capture) -> None:
    breaker = op.circuit_breaker("ollama")
    attrs = {"circuit_breaker.name": "ollama"}
    breaker.success()
    assert capture.value("circuit_breaker.state", attrs) == 0
    breaker.record_state("open")
    assert capture.value("circuit_breaker.state", attrs) == 1
    breaker.record_state("open")  # same state again: no transition
    breaker.record_state("half-open")  # pybreaker's spelling is accepted
    assert capture.value("circuit_breaker.state", attrs) == 2
    breaker.record_state("OPEN")
    breaker.record_state("half_open")
    breaker.record_state("closed")
    assert capture.value("circuit_breaker.state", attrs) == 0
    assert _transitions(capture, "ollama") == {
        ("closed", "open"): 1,
        ("open", "half_open"): 2,
        ("half_open", "open"): 1,
        ("half_open", "closed"): 1,
    }
    assert capture.value("circuit_breaker.trips", attrs) == 2


def test_calls_by_outcome(capture: Capture) -> None:
    breaker = op.circuit_breaker("search")
    for _ in range(3):
        breaker.success()
    breaker.failure()
    breaker.failure()
    breaker.rejected()
    assert _calls(capture, "search") == {"success": 3, "failure": 2, "rejected": 1}
    assert capture.spans() == []


def test_same_name_same_hook_and_bad_arguments() -> None:
    assert op.circuit_breaker("a") is op.circuit_breaker("a")
    with pytest.raises(ValueError, match="circuit breaker name=''"):
        op.circuit_breaker("")


def test_not_configured_is_a_noop() -> None:
    breaker = op.circuit_breaker("idle")
    breaker.record_state("open")
    breaker.failure()
    assert breaker._current() is None


def test_pybreaker_listener_reports_states_successes_and_failures(capture: Capture) -> None:
    hook = op.circuit_breaker("listener")
    breaker = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=3600, listeners=[hook.pybreaker_listener()])

    def fail() -> None:
        raise ConnectionError("down")

    assert breaker.call(lambda: 42) == 42
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)  # second failure trips the breaker
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(lambda: 1)  # refused: a listener alone cannot see it
    attrs = {"circuit_breaker.name": "listener"}
    assert capture.value("circuit_breaker.state", attrs) == 1
    assert _transitions(capture, "listener") == {("closed", "open"): 1}
    assert _calls(capture, "listener") == {"success": 1, "failure": 2}


def test_instrument_pybreaker_counts_rejections_and_recovery(capture: Capture) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600, name="payments")
    hook = op.instrument_pybreaker(breaker)
    assert hook is op.circuit_breaker("payments")
    assert op.instrument_pybreaker(breaker) is hook  # twice: one listener only
    assert len(breaker.listeners) == 1

    @breaker
    def charge(ok: bool) -> str:
        if not ok:
            raise ConnectionError("refused")
        return "charged"

    with pytest.raises(pybreaker.CircuitBreakerError):
        charge(False)  # trips at once (fail_max=1)
    for _ in range(3):
        with pytest.raises(pybreaker.CircuitBreakerError):
            charge(True)
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        pass
    breaker.half_open()
    assert charge(True) == "charged"  # the trial call closes it
    assert _calls(capture, "payments") == {"failure": 1, "rejected": 4, "success": 1}
    assert _transitions(capture, "payments") == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
    }
    assert capture.value("circuit_breaker.state", {"circuit_breaker.name": "payments"}) == 0


def test_instrument_pybreaker_reports_a_breaker_already_open(capture: Capture) -> None:
    breaker = pybreaker.CircuitBreaker(name="legacy")
    breaker.open()
    op.instrument_pybreaker(breaker, name="legacy-renamed")
    assert capture.value("circuit_breaker.state", {"circuit_breaker.name": "legacy-renamed"}) == 1
    # The trip happened before we looked: no transition, no trip recorded.
    assert "circuit_breaker.trips" not in capture.metrics()
    assert "circuit_breaker.transitions" not in capture.metrics()


def test_breakers_instrumented_before_configure_report_in_their_state() -> None:
    breaker = pybreaker.CircuitBreaker(name="early")
    op.instrument_pybreaker(breaker)  # nothing configured yet
    breaker.open()
    with Capture() as capture:
        assert capture.value("circuit_breaker.state", {"circuit_breaker.name": "early"}) == 1
        assert "circuit_breaker.trips" not in capture.metrics()


def test_uninstrument_pybreaker(capture: Capture) -> None:
    breaker = pybreaker.CircuitBreaker(name="detached")
    op.instrument_pybreaker(breaker)
    assert breaker.call(lambda: 1) == 1
    op.uninstrument_pybreaker(breaker)
    op.uninstrument_pybreaker(breaker)  # twice: nothing more to do
    assert breaker.listeners == ()
    assert "call" not in vars(breaker)
    assert breaker not in breaker_module._INSTRUMENTED
    assert breaker.call(lambda: 2) == 2
    assert _calls(capture, "detached") == {"success": 1}


def test_instrument_pybreaker_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"needs a pybreaker\.CircuitBreaker, got str"):
        op.instrument_pybreaker("breaker")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no name; pass name="):
        op.instrument_pybreaker(pybreaker.CircuitBreaker())


@pytest.mark.contains_internal_errors
def test_a_failing_hook_never_raises_into_pybreaker(
    capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    breaker = pybreaker.CircuitBreaker(name="fragile")
    hook = op.instrument_pybreaker(breaker)

    def broken() -> None:
        raise RuntimeError("internal fault")

    monkeypatch.setattr(hook, "success", broken)
    assert breaker.call(lambda: "still works") == "still works"


def test_missing_pybreaker_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    breaker_module._listener_class.cache_clear()
    monkeypatch.setitem(sys.modules, "pybreaker", None)
    try:
        with pytest.raises(ImportError, match=r"pip install 'otel_pipeline\[pybreaker\]'"):
            op.circuit_breaker("no-extra").pybreaker_listener()
    finally:
        breaker_module._listener_class.cache_clear()


@pytest.mark.parametrize("configured", [True, False])
@pytest.mark.parametrize(
    ("state", "text", "problem"),
    [("ajar", "'ajar'", "not a state"), (1, "1", "wrong type"), (None, "None", "wrong type")],
)
def test_a_state_that_is_not_one_is_not_recorded(
    caplog: pytest.LogCaptureFixture, state: Any, text: str, problem: str, configured: bool, mode: str
) -> None:
    breaker = op.circuit_breaker("a")
    starts = message("circuit breaker", "a", f"record_state(state={text})", problem)
    said = "state must be one of 'closed', 'open', 'half_open'; the state is not recorded"
    if not configured:
        assert_records(None, caplog, lambda: breaker.record_state(state), {}, starts, said)
        return
    with Capture(instrument_mode=mode) as capture:
        breaker.record_state("open")
        assert_records(capture, caplog, lambda: breaker.record_state(state), {}, starts, said)
        assert capture.value("circuit_breaker.state", {"circuit_breaker.name": "a"}) == 1  # still open
        assert capture.value("circuit_breaker.trips", {"circuit_breaker.name": "a"}) == 1


@pytest.fixture(params=["core", "sdk"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)
