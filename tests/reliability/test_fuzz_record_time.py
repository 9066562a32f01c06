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

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otel_pipeline as op
from tests.reliability.entry_points import CONFIGURATION, ENTRIES
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
