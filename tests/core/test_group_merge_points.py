"""The worker group's merge of two points of one series: every field, whichever member comes first."""

from __future__ import annotations

import json
from typing import Any

import pytest

from otel_pipeline._internal.group.merge import Merger, Source
from otel_pipeline._internal.group.snapshot import attributes_key, decode

SCOPE = json.dumps(["otel_pipeline", "0.1.0", "", []])
A = attributes_key({"queue.name": "a"})


def _source(pid: int, kind: str, point: list[Any]) -> Source:
    wire = [[SCOPE, "bench.metric", "d.", "1", kind, [[A, *point]]]]
    return Source(pid, decode(json.loads(json.dumps(wire))), 0.0)


def _merged_point(sources: list[Source]) -> list[Any]:
    merged = Merger(100).merge(sources)
    return merged[(SCOPE, "bench.metric")].points[A]


# A histogram point: counts, sum, min, max, bounds, start, time, exemplars.
EARLY = [[1, 2, 0], 1.5, 0.05, 0.7, [0.1, 1.0], 10, 100, {}]
LATE = [[0, 1, 3], 9.0, 0.5, 4.0, [0.1, 1.0], 5, 200, {}]


@pytest.mark.parametrize("order", ["early first", "late first"])
def test_histogram_points_add_with_the_least_min_and_start_and_the_greatest_max_and_time(order: str) -> None:
    points = [EARLY, LATE] if order == "early first" else [LATE, EARLY]
    merged = _merged_point([_source(1, "h", points[0]), _source(2, "h", points[1])])
    assert merged[:4] == [[1, 3, 3], 10.5, 0.05, 4.0]
    assert tuple(merged[4]) == (0.1, 1.0)
    assert merged[5:] == [5, 200, {}]


@pytest.mark.parametrize("order", ["early first", "late first"])
def test_counter_points_add_with_the_least_start_and_the_greatest_time(order: str) -> None:
    exemplar: list[Any] = [1.0, 150, 7, 9, None]
    early: list[Any] = [3, 10, 100, None]
    late: list[Any] = [4, 5, 200, exemplar]
    points = [early, late] if order == "early first" else [late, early]
    merged = _merged_point([_source(1, "c", points[0]), _source(2, "c", points[1])])
    assert merged == [7, 5, 200, exemplar]
