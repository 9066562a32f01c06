"""Record-time calls given a bad argument: what they record, and the one warning that says so.

A record-time call never raises: a bad argument is dropped with one warning (to the
``otel_pipeline`` logger) per hook kind, method, argument and kind of problem. These helpers let
a test state exactly what such a call records, as a change to a table of every collected point.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from otel_pipeline.testing import Capture

__all__ = ["Key", "assert_records", "key", "message", "table", "warnings"]

#: A point: its metric's name and its attributes.
Key = tuple[str, frozenset[tuple[str, Any]]]


def key(metric: str, **attributes: Any) -> Key:
    """The :data:`Key` of ``metric``'s point with these attributes (dots spelled ``__``)."""
    return metric, frozenset((name.replace("__", "."), value) for name, value in attributes.items())


def table(capture: Capture) -> dict[Key, float]:
    """Every point collected now: a counter's or gauge's value, a histogram's count; zeros left out.

    Zeros are left out so that both instrument modes agree (the core exports a pre-bound series
    at 0, the SDK only once something is recorded).
    """
    found: dict[Key, float] = {}
    for metric in capture.metrics().values():
        points: list[Any] = list(metric.data.data_points)
        for point in points:
            value = point.count if hasattr(point, "bucket_counts") else point.value
            if value:
                found[(metric.name, frozenset(dict(point.attributes or {}).items()))] = value
    return found


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings the ``otel_pipeline`` logger gave, in order."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "otel_pipeline" and record.levelno == logging.WARNING
    ]


def message(kind: str, name: str, call: str, problem: str) -> str:
    """How a dropped argument's warning starts: ``queue 'q': enqueued(count=-1) is not valid (negative)``"""
    return f"{kind} {name!r}: {call} is not valid ({problem}): "


def assert_records(
    capture: Capture | None,
    caplog: pytest.LogCaptureFixture,
    call: Callable[[], Any],
    changes: Mapping[Key, float],
    starts: str,
    *contains: str,
    per_call: bool = True,
) -> None:
    """Calling ``call`` twice raises nothing, changes the points by ``changes`` and warns once.

    ``changes`` is what each call adds (``per_call``), else what both calls make together (a
    size set twice). The one warning starts with ``starts`` and contains each of ``contains``.
    Without a capture (nothing configured) only the warning is checked.
    """
    before = {} if capture is None else table(capture)
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        caplog.clear()
        call()
        call()  # the same mistake again: no second warning
    said = warnings(caplog)
    assert len(said) == 1, said
    assert said[0].startswith(starts), said[0]
    for text in contains:
        assert text in said[0], said[0]
    if capture is not None:
        expected = dict(before)
        for point, change in changes.items():
            expected[point] = expected.get(point, 0) + (2 if per_call else 1) * change
        assert table(capture) == {point: value for point, value in expected.items() if value}
