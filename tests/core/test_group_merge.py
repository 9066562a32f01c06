"""The worker group's merge: rules per metric kind and catalogue entry, departed members, cap, exemplars."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource

import otel_pipeline as op
import otel_pipeline.hooks
from otel_pipeline._internal.group.merge import OVERFLOW_KEY, Merger, Source, rule_of, to_metrics_data
from otel_pipeline._internal.group.snapshot import attributes_key, decode, encode
from otel_pipeline._internal.spec import Kind, MetricSpec, parse_ratio
from otel_pipeline.testing import Capture
from tests.core.support import normal_form

SCOPE = json.dumps(["otel_pipeline", "0.1.0", "", []])
BOUNDS = [0.1, 1.0]


def key(**attributes: Any) -> str:
    return attributes_key(attributes)


def number(name: str, kind: str, points: dict[str, float], time: int = 100, ex: Any = None) -> list[Any]:
    return [SCOPE, name, f"{name} test.", "1", kind, [[k, v, 10, time, ex] for k, v in points.items()]]


def histogram(
    name: str, points: dict[str, list[int]], total: float, lo: float, hi: float, **extra: Any
) -> list[Any]:
    bounds = extra.get("bounds", BOUNDS)
    exemplars = extra.get("exemplars", {})
    return [
        SCOPE,
        name,
        "h.",
        "s",
        "h",
        [[k, c, total, lo, hi, bounds, 10, 100, exemplars] for k, c in points.items()],
    ]


def source(pid: int, *metrics: list[Any], time: float = 0.0) -> Source:
    return Source(pid, decode(json.loads(json.dumps(list(metrics)))), time)


def values(merged: Any, name: str) -> dict[str, Any]:
    """{attributes key: value (numbers) or (counts, sum, min, max) (histograms)} of one merged metric."""
    for (_, metric_name), metric in merged.items():
        if metric_name == name:
            if metric.meta.kind == "h":
                return {k: (p[0], p[1], p[2], p[3]) for k, p in metric.points.items()}
            return {k: p[0] for k, p in metric.points.items()}
    return {}


A = key(**{"queue.name": "a"})
B = key(**{"queue.name": "b"})


def test_counters_sum_over_live_members_and_departed_ones() -> None:
    merger = Merger(100)
    one = source(1, number("queue.jobs.enqueued", "c", {A: 3, B: 1}))
    two = source(2, number("queue.jobs.enqueued", "c", {A: 4}))
    assert values(merger.merge([one, two]), "queue.jobs.enqueued") == {A: 7, B: 1}
    merger.fold(two.metrics)  # member 2 left: its totals stay in the group
    assert merger.departed_members == 1
    three = source(3, number("queue.jobs.enqueued", "c", {A: 1}))
    assert values(merger.merge([one, three]), "queue.jobs.enqueued") == {A: 8, B: 1}
    merger.fold(one.metrics)
    merger.fold(three.metrics)
    assert values(merger.merge([]), "queue.jobs.enqueued") == {A: 8, B: 1}


def test_histograms_add_bucket_by_bucket_with_min_and_max_of_all() -> None:
    merger = Merger(100)
    one = source(1, histogram("queue.job.duration", {A: [1, 2, 0]}, 1.5, 0.05, 0.7))
    two = source(2, histogram("queue.job.duration", {A: [0, 1, 3]}, 9.0, 0.5, 4.0))
    merger.fold(two.metrics)
    assert values(merger.merge([one]), "queue.job.duration") == {A: ([1, 3, 3], 10.5, 0.05, 4.0)}


def test_histogram_points_with_other_buckets_are_left_out() -> None:
    merger = Merger(100)
    one = source(1, histogram("queue.job.duration", {A: [1, 2, 0]}, 1.5, 0.05, 0.7))
    odd = source(2, histogram("queue.job.duration", {A: [5, 5]}, 1.0, 0.1, 0.2, bounds=[0.5]))
    assert values(merger.merge([one, odd]), "queue.job.duration") == {A: ([1, 2, 0], 1.5, 0.05, 0.7)}


def test_up_down_counters_count_live_members_only() -> None:
    merger = Merger(100)
    one = source(1, number("queue.jobs.in_progress", "u", {A: 2}))
    two = source(2, number("queue.jobs.in_progress", "u", {A: 3}))
    assert values(merger.merge([one, two]), "queue.jobs.in_progress") == {A: 5}
    merger.fold(two.metrics)  # its in-flight jobs are gone with it
    assert values(merger.merge([one]), "queue.jobs.in_progress") == {A: 2}
    assert merger.departed == {}


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("queue.depth", "u", 7),  # one broker queue seen by every worker: the latest observation
        ("checkpoint.last_success.timestamp", "g", 9),  # the most recent success of any worker
        ("health.target.success_rate", "g", 2),  # the worst view of the target
    ],
)
def test_gauges_of_one_shared_thing_are_not_summed(name: str, kind: str, expected: float) -> None:
    merger = Merger(100)
    older = source(1, number(name, kind, {A: 9}, time=100))
    newer = source(2, number(name, kind, {A: 7}, time=200))
    other = source(3, number(name, kind, {A: 2}, time=150))
    assert values(merger.merge([older, newer, other]), name) == {A: expected}


def test_per_process_metrics_keep_one_series_per_live_member() -> None:
    merger = Merger(100)
    empty = key()
    one = source(11, number("process.memory.usage", "u", {empty: 100}))
    two = source(22, number("process.memory.usage", "u", {empty: 300}))
    merged = values(merger.merge([one, two]), "process.memory.usage")
    assert merged == {key(**{"process.pid": 11}): 100, key(**{"process.pid": 22}): 300}
    merger.fold(two.metrics)
    assert values(merger.merge([one]), "process.memory.usage") == {key(**{"process.pid": 11}): 100}


def test_ratios_are_recomputed_from_the_merged_counters_not_averaged() -> None:
    merger = Merger(100)
    users = key(**{"cache.name": "users"})
    one = source(
        1,
        number("cache.hits", "c", {users: 9}),
        number("cache.misses", "c", {users: 1}),
        number("cache.hit_ratio", "g", {users: 0.9}),
    )
    two = source(2, number("cache.misses", "c", {users: 2}), number("cache.hit_ratio", "g", {users: 0.0}))
    assert values(merger.merge([one, two]), "cache.hit_ratio") == {users: 0.75}  # 9 / 12, not 0.45
    merger.fold(one.metrics)
    merger.fold(two.metrics)
    # Only departed members had the cache: the group's counters still make the ratio.
    assert values(merger.merge([]), "cache.hit_ratio") == {users: 0.75}


def test_a_ratio_term_may_select_points_by_attribute() -> None:
    pool = "db.client.connection.pool.name"
    state = "db.client.connection.state"
    merger = Merger(100)
    member = [
        number(
            "db.client.connection.count",
            "u",
            {key(**{pool: "pg", state: "used"}): 3, key(**{pool: "pg", state: "idle"}): 7},
        ),
        number("db.client.connection.max", "u", {key(**{pool: "pg"}): 10}),
        number("connection_pool.utilization", "g", {key(**{pool: "pg"}): 0.3}),
    ]
    other = [
        number("db.client.connection.count", "u", {key(**{pool: "pg", state: "used"}): 9}),
        number("db.client.connection.max", "u", {key(**{pool: "pg"}): 10}),
    ]
    merged = merger.merge([source(1, *member), source(2, *other)])
    assert values(merged, "connection_pool.utilization") == {key(**{pool: "pg"}): 0.6}  # 12 used of 20


def test_no_ratio_where_the_denominator_is_zero() -> None:
    merger = Merger(100)
    users = key(**{"cache.name": "users"})
    member = source(1, number("cache.hits", "c", {users: 0}), number("cache.hit_ratio", "g", {users: 0.5}))
    assert values(merger.merge([member]), "cache.hit_ratio") == {}


def test_the_cap_applies_to_the_merged_series_and_admitted_ones_stay() -> None:
    merger = Merger(2)
    one = source(1, number("queue.jobs.enqueued", "c", {A: 1, B: 1}))
    c = key(**{"queue.name": "c"})
    two = source(2, number("queue.jobs.enqueued", "c", {c: 5, A: 1}))
    assert values(merger.merge([one, two]), "queue.jobs.enqueued") == {A: 2, B: 1, OVERFLOW_KEY: 5}
    merger.fold(one.metrics)
    # A and B were admitted: they stay series of their own (a total never moves to the overflow).
    three = source(3, number("queue.jobs.enqueued", "c", {c: 1, B: 2}))
    assert values(merger.merge([two, three]), "queue.jobs.enqueued") == {A: 2, B: 3, OVERFLOW_KEY: 6}


def test_the_cap_on_live_metrics_is_counted_per_merge() -> None:
    merger = Merger(1)
    one = source(1, number("queue.jobs.in_progress", "u", {A: 1, B: 2}))
    assert values(merger.merge([one]), "queue.jobs.in_progress") == {A: 1, OVERFLOW_KEY: 2}
    two = source(2, number("queue.jobs.in_progress", "u", {B: 4}))
    assert values(merger.merge([two]), "queue.jobs.in_progress") == {B: 4}


def exemplar(value: float, time: int, span: int) -> list[Any]:
    return [value, time, span, span * 1000, None]


def test_exemplars_most_recent_per_bucket_and_kept_until_a_newer_one() -> None:
    merger = Merger(100)
    one = source(
        1,
        histogram(
            "queue.job.duration",
            {A: [1, 1, 0]},
            0.6,
            0.05,
            0.55,
            exemplars={"0": exemplar(0.05, 50, 1), "1": exemplar(0.55, 70, 2)},
        ),
    )
    two = source(
        2,
        histogram(
            "queue.job.duration", {A: [1, 0, 0]}, 0.07, 0.07, 0.07, exemplars={"0": exemplar(0.07, 60, 3)}
        ),
    )
    merged = merger.merge([one, two])
    point = next(iter(merged.values())).points[A]
    assert {index: raw[2] for index, raw in point[7].items()} == {0: 3, 1: 2}
    # The next snapshot of member 1 has no new exemplar: the previous ones are carried forward.
    again = source(1, histogram("queue.job.duration", {A: [2, 1, 0]}, 0.7, 0.05, 0.55))
    again.carry_exemplars(one)
    merged = merger.merge([again])
    point = next(iter(merged.values())).points[A]
    assert {index: raw[2] for index, raw in point[7].items()} == {0: 1, 1: 2}


def test_counter_exemplar_is_the_most_recent() -> None:
    merger = Merger(100)
    one = source(1, number("queue.jobs.enqueued", "c", {A: 1}, ex=exemplar(1, 80, 5)))
    two = source(2, number("queue.jobs.enqueued", "c", {A: 1}, ex=exemplar(1, 90, 6)))
    merged = merger.merge([one, two])
    assert next(iter(merged.values())).points[A][3][2] == 6
    later = source(1, number("queue.jobs.enqueued", "c", {A: 2}))
    later.carry_exemplars(one)
    assert later.metrics[(SCOPE, "queue.jobs.enqueued")].points[A][3][2] == 5


def test_the_departed_accumulator_crosses_to_the_next_hub_unchanged() -> None:
    merger = Merger(100)
    merger.fold(
        source(
            1,
            number("queue.jobs.enqueued", "c", {A: 3}),
            histogram(
                "queue.job.duration", {A: [1, 2, 0]}, 1.5, 0.05, 0.7, exemplars={"1": exemplar(0.5, 9, 4)}
            ),
            number("queue.jobs.in_progress", "u", {A: 1}),
        ).metrics
    )
    successor = Merger(100)
    successor.fold(decode(json.loads(json.dumps(merger.departed_wire()))), 0)
    merged = successor.merge([])
    assert values(merged, "queue.jobs.enqueued") == {A: 3}
    assert values(merged, "queue.job.duration") == {A: ([1, 2, 0], 1.5, 0.05, 0.7)}
    assert values(merged, "queue.jobs.in_progress") == {}
    assert successor.departed_members == 0


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_one_process_merged_alone_is_what_it_exported(mode: str) -> None:
    """A hub with no member exports exactly what a process alone would (the hooks' real data)."""
    with Capture(instrument_mode=mode) as capture:
        q = op.queue("emails")
        q.enqueued(3)
        with q.processing():
            pass
        op.cache("users").hit()
        op.cache("users").miss()
        op.dedup("events").check(duplicate=True)
        data = capture.collect()
    merged = Merger(100).merge([Source(1, decode(json.loads(json.dumps(encode(data)))), 0.0)])
    rebuilt = to_metrics_data(merged, Resource({}), 1)
    assert normal_form(rebuilt) == normal_form(data)


def test_rules_by_kind_and_declared() -> None:
    assert rule_of("app.own.counter", "c") == "sum"
    assert rule_of("app.own.histogram", "h") == "sum"
    assert rule_of("app.own.level", "u") == "live_sum"
    assert rule_of("app.own.gauge", "g") == "last"
    assert rule_of("cache.hit_ratio", "g") == "ratio:cache.hits/cache.hits+cache.misses"
    assert rule_of("process.cpu.time", "c") == "sum"
    assert rule_of("circuit_breaker.state", "g") == "per_process"


def test_a_bad_merge_rule_is_refused_where_declared() -> None:
    with pytest.raises(ValueError, match=r"merge='average' is not valid; use one of sum, live_sum"):
        MetricSpec("a.b", Kind.GAUGE, "1", "x.", merge="average")
    with pytest.raises(ValueError, match="merge='ratio' is not valid"):
        MetricSpec("a.b", Kind.GAUGE, "1", "x.", merge="ratio")
    with pytest.raises(ValueError, match="a ratio needs 'ratio:NUM/DEN'"):
        parse_ratio("ratio:a.b")
    with pytest.raises(ValueError, match="'x y' is not a metric name"):
        parse_ratio("ratio:a/x y")
    with pytest.raises(ValueError, match="'k' is not key=value"):
        parse_ratio("ratio:a{k}/b")
    assert parse_ratio("ratio:a{k=v, j = w}/b+c") == (("a", (("j", "w"), ("k", "v"))), (("b", ()), ("c", ())))
    assert MetricSpec("a.b", Kind.UP_DOWN_COUNTER, "1", "x.").merge_rule == "live_sum"
    assert MetricSpec("a.b", Kind.GAUGE, "1", "x.", merge="max").merge_rule == "max"
