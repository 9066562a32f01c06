"""Distinct hook names keep memory and collection time bounded (hook_name_limit).

Per hook kind, 200,000 distinct names (``op.queue(f"user-{i}")`` and the like), each used once:
the first ``hook_name_limit`` names keep hooks and exact counts of their own, every later name
is recorded on the one overflow hook (named ``otel.metric.overflow``) whose series carry the
exact total, one warning names the kind, and the memory allocated past the limit does not grow
with the names. The figures (memory, collection time) are printed; benchmarks/names.py
measures RSS and HTTP scrape times of the same uses.
"""

from __future__ import annotations

import gc
import logging
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline._internal.hook import DEFAULT_NAME_LIMIT, OVERFLOW_NAME, Hook, get_hook, hooks_of
from otel_pipeline._internal.routes import LISTED_COMPONENTS, health_report
from otel_pipeline._internal.stats import LISTED_NAMES, stats_document
from otel_pipeline.config import Config
from otel_pipeline.hooks.actions import Actions
from otel_pipeline.hooks.breaker import CircuitBreaker
from otel_pipeline.hooks.cache import Cache
from otel_pipeline.hooks.checkpoint import Checkpoint
from otel_pipeline.hooks.dedup import Dedup
from otel_pipeline.hooks.events import Events
from otel_pipeline.hooks.health import HealthTarget, RefreshJob
from otel_pipeline.hooks.http import HttpClient
from otel_pipeline.hooks.pipeline import PipelineHook
from otel_pipeline.hooks.pool import ConnectionPool
from otel_pipeline.hooks.queue import Queue
from otel_pipeline.testing import Capture

NAMES = 200_000
#: Memory allocated past the limit, from 10,000 names to 200,000: it must not grow with names.
PAST_LIMIT_BYTES = 1 * 2**20
#: What 200,000 names may allocate in all (the target is +150 MB; see docs/operations.md).
TOTAL_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Kind:
    """One hook kind: how to use it under a name, and the point each use adds 1 to."""

    hook: type[Hook]
    use: Callable[[str], None]
    metric: str
    #: The point's attributes for a name (None: the name is not a metric attribute).
    attributes: Callable[[str], dict[str, Any]] | None


def _stage(name: str) -> None:
    with op.stage(name, pipeline="nightly"):
        pass


def _pipeline(name: str) -> None:
    with op.pipeline(name):
        pass


def _pool(name: str) -> None:
    op.connection_pool(name).timeout()


def _events(name: str) -> None:
    with op.events(name).process("created"):
        pass


def _actions(name: str) -> None:
    with op.actions(name).track("send"):
        pass


def _refresh(name: str) -> None:
    with op.refresh_job(name).running():
        pass


def _http(name: str) -> None:
    with op.http_client(name).request("GET", "http://example.invalid/") as request:
        request.status_code = 200


def _save(name: str) -> None:
    op.checkpoint(name).recovered()


def _check(name: str) -> None:
    op.dedup(name).check(duplicate=False)


KINDS = {
    "queue": Kind(
        Queue, lambda n: op.queue(n).enqueued(), "queue.jobs.enqueued", lambda n: {"queue.name": n}
    ),
    "cache": Kind(Cache, lambda n: op.cache(n).hit(), "cache.hits", lambda n: {"cache.name": n}),
    "dedup": Kind(Dedup, _check, "dedup.checks", lambda n: {"dedup.name": n}),
    "checkpoint": Kind(Checkpoint, _save, "checkpoint.recoveries", lambda n: {"checkpoint.name": n}),
    "pipeline": Kind(PipelineHook, _pipeline, "pipeline.runs.started", lambda n: {"pipeline.name": n}),
    "stage": Kind(
        PipelineHook,
        _stage,
        "pipeline.stages.started",
        lambda n: {"pipeline.name": "nightly", "pipeline.stage": n},
    ),
    "circuit breaker": Kind(
        CircuitBreaker,
        lambda n: op.circuit_breaker(n).failure(),
        "circuit_breaker.calls",
        lambda n: {"circuit_breaker.name": n, "outcome": "failure"},
    ),
    "connection pool": Kind(
        ConnectionPool,
        _pool,
        "db.client.connection.timeouts",
        lambda n: {"db.client.connection.pool.name": n},
    ),
    "events": Kind(
        Events,
        _events,
        "events.processed",
        lambda n: {"event.source": n, "event.type": "created", "outcome": "success"},
    ),
    "actions": Kind(
        Actions,
        _actions,
        "actions.executed",
        lambda n: {"action.executor": n, "action.name": "send", "outcome": "success"},
    ),
    "health target": Kind(
        HealthTarget,
        lambda n: op.health_target(n).failure(),
        "health.target.probes",
        lambda n: {"health.target.name": n, "outcome": "failure"},
    ),
    "refresh job": Kind(
        RefreshJob, _refresh, "refresh.duration", lambda n: {"refresh.name": n, "outcome": "success"}
    ),
    "http client": Kind(HttpClient, _http, "http.client.request.duration", None),
}


def _values(capture: Capture, metric: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    """Every point of ``metric``: its attributes (sorted items) -> value (histograms: count)."""
    found = {}
    for point in capture.points(metric):
        value = point.count if hasattr(point, "bucket_counts") else point.value
        found[tuple(sorted(dict(point.attributes).items()))] = value
    return found


def _key(attributes: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(attributes.items()))


def _hook_count(kind: Kind, label: str) -> int:
    """Hooks of the kind, or for stages, the stage operations the pipeline "nightly" keeps."""
    if label == "stage":
        bound = get_hook(PipelineHook, "nightly")._current()
        assert bound is not None
        return len(bound._stages)
    return len(hooks_of(kind.hook))


@pytest.mark.parametrize("label", list(KINDS))
def test_200k_names_share_one_overflow_hook_with_exact_counts(
    label: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    kind = KINDS[label]
    limit = DEFAULT_NAME_LIMIT
    # Unsampled spans: what is measured is the hooks' own state, not span export.
    with Capture(trace_sample_rate=0.0) as capture, caplog.at_level(logging.WARNING, "otel_pipeline"):
        kind.use("warm-up")  # module-level state (instruments, callbacks) made before measuring
        gc.collect()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            for index in range(10_000):
                kind.use(f"user-{index}")
            gc.collect()
            at_10k = tracemalloc.get_traced_memory()[0]
            for index in range(10_000, NAMES):
                kind.use(f"user-{index}")
            gc.collect()
            at_200k = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        started = time.perf_counter()
        values = _values(capture, kind.metric)
        collection = time.perf_counter() - started

        # Names under the limit (the warm-up is one) keep their own hook and exact counts.
        own = [f"user-{index}" for index in range(limit - 1)]
        assert op.queue("user-1") is op.queue("user-1")
        assert _hook_count(kind, label) == limit + 1
        if kind.attributes is None:  # the name is not on the metric: every use counted once
            assert sum(values.values()) == NAMES + 1
        else:
            expected = {_key(kind.attributes(name)): 1 for name in ["warm-up", *own]}
            expected[_key(kind.attributes(OVERFLOW_NAME))] = NAMES - len(own)
            assert values == expected
        warnings = [r.getMessage() for r in caplog.records if "hook_name_limit" in r.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].startswith("pipeline stage hooks" if label == "stage" else f"{label} hooks")
        assert (
            f"(the latest: 'user-{limit - 4}', 'user-{limit - 3}', 'user-{limit - 2}', 'user-{limit - 1}')"
            in (warnings[0])
        )
    with capsys.disabled():
        print(
            f"\n{label}: {NAMES:,} names: {(at_200k - start) / 2**20:.1f} MiB allocated "
            f"({(at_200k - at_10k) / 2**10:.0f} KiB past 10,000 names); collection {collection:.3f} s"
        )
    assert at_200k - at_10k < PAST_LIMIT_BYTES
    assert at_200k - start < TOTAL_BYTES


@pytest.mark.parametrize("label", ["queue", "cache", "stage", "circuit breaker", "events"])
def test_the_limit_in_sdk_mode(label: str) -> None:
    kind = KINDS[label]
    assert kind.attributes is not None
    with Capture(instrument_mode="sdk", hook_name_limit=20, trace_sample_rate=0.0) as capture:
        for index in range(500):
            kind.use(f"user-{index}")
        expected = {_key(kind.attributes(f"user-{index}")): 1 for index in range(20)}
        expected[_key(kind.attributes(OVERFLOW_NAME))] = 480
        assert _values(capture, kind.metric) == expected


def test_the_limit_is_per_kind_and_configurable() -> None:
    with Capture(hook_name_limit=3) as capture:
        queues = [op.queue(f"q{index}") for index in range(5)]
        caches = [op.cache(f"c{index}") for index in range(3)]
        assert [q.name for q in queues] == ["q0", "q1", "q2", OVERFLOW_NAME, OVERFLOW_NAME]
        assert queues[3] is queues[4] is op.queue("q99") is op.queue(OVERFLOW_NAME)
        assert [c.name for c in caches] == ["c0", "c1", "c2"]  # the queues' limit is theirs
        for q in queues:
            q.enqueued(2)
        assert capture.value("queue.jobs.enqueued", {"queue.name": OVERFLOW_NAME}) == 4
        assert capture.value("queue.jobs.enqueued", {"queue.name": "q2"}) == 2
        # A bad name is refused before the limit is looked at.
        with pytest.raises(ValueError, match="queue name"):
            op.queue("")


def test_names_made_before_configure_count_against_the_default() -> None:
    first = [op.queue(f"early-{index}") for index in range(DEFAULT_NAME_LIMIT + 2)]
    assert first[-1] is first[-2]
    assert first[-1].name == OVERFLOW_NAME
    assert first[-3].name == f"early-{DEFAULT_NAME_LIMIT - 1}"
    assert Config().hook_name_limit == DEFAULT_NAME_LIMIT


def test_stage_names_are_capped_across_the_pipelines_of_one_configured_pipeline() -> None:
    with Capture(hook_name_limit=4) as capture:
        for pipeline in ("a", "b"):
            with op.pipeline(pipeline) as run:
                for index in range(3):
                    with run.stage(f"s{index}") as stage:
                        stage.processed(1)
        started = _values(capture, "pipeline.stages.started")
        assert started == {
            _key({"pipeline.name": "a", "pipeline.stage": "s0"}): 1,
            _key({"pipeline.name": "a", "pipeline.stage": "s1"}): 1,
            _key({"pipeline.name": "a", "pipeline.stage": "s2"}): 1,
            _key({"pipeline.name": "b", "pipeline.stage": "s0"}): 1,
            _key({"pipeline.name": "b", "pipeline.stage": OVERFLOW_NAME}): 2,
        }
        assert (
            capture.value("pipeline.stage.items", {"pipeline.name": "b", "pipeline.stage": OVERFLOW_NAME})
            == 2
        )


def test_hook_name_limit_option_and_variable() -> None:
    assert Config.resolve({"OTEL_PIPELINE_HOOK_NAME_LIMIT": "50"}).hook_name_limit == 50
    assert Config.resolve({"OTEL_PIPELINE_HOOK_NAME_LIMIT": "50"}, hook_name_limit=7).hook_name_limit == 7
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValueError, match=r"hook_name_limit=.* use a whole number of at least 1"):
            Config.resolve({}, hook_name_limit=bad)
    with pytest.raises(ValueError, match="OTEL_PIPELINE_HOOK_NAME_LIMIT"):
        Config.resolve({"OTEL_PIPELINE_HOOK_NAME_LIMIT": "many"})
    with pytest.raises(ValueError, match=r"set by the environment variable OTEL_PIPELINE_HOOK_NAME_LIMIT"):
        Config.resolve({"OTEL_PIPELINE_HOOK_NAME_LIMIT": "0"})
    pipeline = op.configure(exporter="none", hook_name_limit=2)
    assert pipeline.config.hook_name_limit == 2
    assert [op.dedup(name).name for name in "xyz"] == ["x", "y", OVERFLOW_NAME]


def test_health_body_lists_the_worst_components_and_counts_the_rest() -> None:
    with Capture() as capture:
        for index in range(NAMES):
            op.circuit_breaker(f"breaker-{index}").record_state("open" if index % 2 else "closed")
            target = op.health_target(f"target-{index}")
            if index % 3 == 0:
                target.failure()
            else:
                target.success()
        started = time.perf_counter()
        status, body = health_report(capture.pipeline)
        elapsed = time.perf_counter() - started
    limit = DEFAULT_NAME_LIMIT
    # Breakers 0..999 (half open), targets 0..999 (every third failed, 3 failures in a row
    # never: one each, so degraded), and the two overflow hooks, last recorded open and success.
    breakers_open = limit // 2 + 1
    targets_failed = len(range(0, limit, 3))
    degraded = breakers_open + targets_failed
    healthy = 2 * (limit + 1) - degraded
    assert (status, body["status"]) == (200, "degraded")
    assert len(body["components"]) == LISTED_COMPONENTS
    assert "exporter" in body["components"]
    assert [c["status"] for name, c in body["components"].items() if name != "exporter"] == ["degraded"] * (
        LISTED_COMPONENTS - 1
    )
    assert body["omitted"] == {
        "components": 2 * (limit + 1) + 1 - LISTED_COMPONENTS,
        "degraded": degraded - (LISTED_COMPONENTS - 1),
        "healthy": healthy,
    }
    assert body["score"] == 50 + (39 * (healthy + 1)) // (2 * (limit + 1) + 1)
    print(f"\n/health with {NAMES:,} breaker and target names: {elapsed:.3f} s")


def test_stats_lists_a_bounded_number_of_names_per_hook() -> None:
    with Capture(hook_name_limit=300) as capture:
        for index in range(1000):
            op.queue(f"q{index}").enqueued()
        omitted: dict[str, int] = {}
        document = stats_document(capture.collect(), omitted)
        assert sorted(document["queue"]) == sorted(
            [f"q{index}" for index in range(LISTED_NAMES)] + [OVERFLOW_NAME]
        )
        assert omitted == {"queue": 300 - LISTED_NAMES}
        assert document["queue"][OVERFLOW_NAME]["queue.jobs.enqueued"]["value"] == 700
        # A name asked for is always there.
        named = stats_document(capture.collect(), {}, "q299")
        assert named["queue"]["q299"]["queue.jobs.enqueued"]["value"] == 1
