"""The error boundary (``_internal/boundary.py``): logged once per site, strict mode raises."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import otel_pipeline as op
from otel_pipeline._internal import boundary, registry
from otel_pipeline._internal.boundary import InternalError, application_error, contained, internal_error
from otel_pipeline.testing import Capture

pytestmark = pytest.mark.contains_internal_errors  # strict mode is set by each test itself


@pytest.fixture(autouse=True)
def lenient() -> Iterator[None]:
    previous = boundary.set_strict(False)
    yield
    boundary.set_strict(previous)


def _fault(site: str) -> None:
    try:
        raise KeyError("internal")
    except Exception as exc:
        internal_error(site, exc)


def test_a_fault_is_logged_once_per_site_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="otel_pipeline")
    for _ in range(3):
        _fault("queue.enqueued")
    _fault("cache.hit")
    levels = [
        (r.levelno, r.getMessage(), type(r.exc_info[1]) if r.exc_info else None) for r in caplog.records
    ]
    assert levels == [
        (logging.ERROR, "internal error in queue.enqueued; it is ignored", KeyError),
        (logging.DEBUG, "internal error in queue.enqueued; it is ignored", KeyError),
        (logging.DEBUG, "internal error in queue.enqueued; it is ignored", KeyError),
        (logging.ERROR, "internal error in cache.hit; it is ignored", KeyError),
    ]
    assert boundary.take_faults() == []  # not strict: nothing recorded


def test_strict_mode_raises_from_the_fault_and_records_it() -> None:
    boundary.set_strict(True)
    with pytest.raises(InternalError) as caught:
        _fault("queue.enqueued")
    assert isinstance(caught.value.__cause__, KeyError)
    assert caught.value.site == "queue.enqueued"
    faults = boundary.take_faults()
    assert [(site, type(fault)) for site, fault in faults] == [("queue.enqueued", KeyError)]
    assert boundary.take_faults() == []


def test_an_inner_boundarys_raise_is_not_wrapped_twice() -> None:
    boundary.set_strict(True)

    @contained("outer")
    def outer() -> None:
        _fault("inner")

    with pytest.raises(InternalError) as caught:
        outer()
    assert caught.value.site == "inner"
    assert [site for site, _ in boundary.take_faults()] == ["inner"]


def test_the_environment_variable_decides_when_nothing_is_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    boundary.set_strict(None)
    monkeypatch.setenv(boundary.STRICT_ENV, "0")
    assert not boundary.strict()
    _fault("site")
    for value in ("1", "true", " Yes ", "on"):
        monkeypatch.setenv(boundary.STRICT_ENV, value)
        assert boundary.strict()
    monkeypatch.delenv(boundary.STRICT_ENV)
    assert not boundary.strict()
    assert boundary.set_strict(True) is None
    assert boundary.strict()


def test_contained_returns_its_default() -> None:
    @contained("cold", default="off")
    def broken() -> str:
        raise RuntimeError("internal")

    assert broken() == "off"


def test_the_applications_faults_are_never_strict(caplog: pytest.LogCaptureFixture) -> None:
    boundary.set_strict(True)
    for _ in range(2):
        try:
            raise ValueError("the application's")
        except ValueError as exc:
            application_error("observer", exc, "an observer raised; skipped")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert boundary.take_faults() == []


def test_a_strict_capture_raises_a_fault_swallowed_at_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(value: object) -> bool:
        raise RuntimeError("internal")

    # The raise is at the capture's end: the SDK catches the callback's and logs it.
    with pytest.raises(InternalError) as caught, Capture(strict_internal_errors=True) as capture:  # noqa: PT012
        op.queue("jobs").observe_depth(lambda: 3)
        monkeypatch.setattr(registry, "exportable", broken)
        capture.collect()
        monkeypatch.undo()
    assert caught.value.site == "callback:queue.depth"
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert not boundary.strict()  # the capture put the previous setting back


def test_a_strict_capture_lets_the_applications_own_exception_through() -> None:
    with Capture(strict_internal_errors=True) as capture:
        with pytest.raises(KeyError), op.queue("jobs").processing():
            raise KeyError("the application's")
        failed = {"queue.name": "jobs", "outcome": "failure", "error.type": "KeyError"}
        assert capture.value("queue.jobs.processed", failed) == 1


@pytest.mark.parametrize("otel_capture", [{"strict_internal_errors": True}], indirect=True)
def test_the_fixture_takes_the_option(otel_capture: Capture) -> None:
    assert otel_capture.strict_internal_errors
    assert boundary.strict()
