from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from rich.console import Console

import otel_pipeline as op
from otel_pipeline._internal import timed
from otel_pipeline._internal.spec import Kind, MetricSpec
from otel_pipeline.hooks.resources import ResourceSample
from otel_pipeline.summary import schema
from otel_pipeline.testing import Capture

BOTH = pytest.mark.parametrize("otel_capture", ["core", "sdk"], indirect=True)
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class OneSample:
    def sample(self) -> ResourceSample:
        return ResourceSample(cpu_utilization=0.25, memory_usage=50_000_000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(timed, "perf_counter", fake)
    return fake


def record(capture: Capture, name: str, value: float, attributes: dict[str, str]) -> None:
    """Record into a metric of another hook by its name, as that hook would (kind: a sum)."""
    kind = Kind.UP_DOWN_COUNTER if name.endswith("depth") or name.endswith("entries") else Kind.COUNTER
    spec = MetricSpec(name, kind, "1", "Recorded by the summary test.", tuple(attributes))
    registry = capture.pipeline.registry
    assert registry is not None
    registry.instrument(spec).bind(attributes).add(value)


def run_the_day(capture: Capture, clock: Clock) -> None:
    """A successful run, a failed one, a resource sample and other hooks' counts."""
    with op.pipeline("nightly") as run:
        with run.stage("fetch") as stage:
            clock.advance(0.5)
            stage.processed(120)
        with run.stage("process") as stage:
            clock.advance(1.5)
            stage.processed(120)
        with run.stage("write") as stage:
            clock.advance(0.25)
            stage.processed(120)

    def failing() -> None:
        with op.pipeline("nightly") as run, run.stage("fetch") as stage:
            clock.advance(0.0625)
            stage.processed(7)
            raise ConnectionError("source down")

    with pytest.raises(ConnectionError):
        failing()
    op.monitor_resources(interval=3600, source=OneSample())
    users, sessions = {"cache.name": "users"}, {"cache.name": "sessions"}
    record(capture, "cache.hits", 3, users)
    record(capture, "cache.misses", 1, users)
    record(capture, "cache.misses", 2, sessions)
    record(capture, "cache.entries", 10, sessions)
    emails = {"queue.name": "emails"}
    record(capture, "queue.jobs.enqueued", 3, {**emails, "priority": "high"})
    record(capture, "queue.jobs.enqueued", 2, {**emails, "priority": "low"})
    record(capture, "queue.jobs.processed", 3, {**emails, "outcome": "success"})
    record(capture, "queue.jobs.processed", 1, {**emails, "outcome": "failure", "error.type": "KeyError"})
    record(capture, "queue.jobs.retried", 1, emails)
    record(capture, "queue.jobs.dead_lettered", 1, {**emails, "reason": "max_attempts"})
    record(capture, "queue.depth", 1, emails)
    email = {"action.executor": "notifier", "action.name": "send_email"}
    record(capture, "actions.executed", 3, {**email, "outcome": "success"})
    record(capture, "actions.executed", 1, {**email, "outcome": "failure", "error.type": "OSError"})
    record(capture, "actions.executed", 1, {**email, "outcome": "timeout"})
    record(
        capture,
        "actions.executed",
        1,
        {"action.executor": "notifier", "action.name": "sms", "outcome": "success"},
    )


def timing(
    started: int, count: int, failures: int, total: float, mean: float, maximum: float
) -> dict[str, Any]:
    return {
        "started": started,
        "count": count,
        "failures": failures,
        "active": 0,
        "total_duration_s": total,
        "mean_duration_s": mean,
        "max_duration_s": maximum,
    }


EXPECTED: dict[str, Any] = {
    "schema_version": 1,
    "service": {"name": "test", "version": ""},
    "pipelines": {
        "nightly": {
            **timing(2, 2, 1, 2.3125, 1.15625, 2.25),
            "stages": {
                "fetch": {
                    **timing(2, 2, 1, 0.5625, 0.28125, 0.5),
                    "items": 127,
                    "items_per_second": 225.777778,
                },
                "process": {**timing(1, 1, 0, 1.5, 1.5, 1.5), "items": 120, "items_per_second": 80.0},
                "write": {**timing(1, 1, 0, 0.25, 0.25, 0.25), "items": 120, "items_per_second": 480.0},
            },
        }
    },
    "resources": {
        "peak_cpu_utilization": 0.25,
        "peak_memory_bytes": 50_000_000,
        "samples": 1,
        "interval_s": 3600,
        "running": True,
    },
    "caches": {
        "sessions": {"hits": 0, "misses": 2, "evictions": 0, "entries": 10, "hit_rate": 0.0},
        "users": {"hits": 3, "misses": 1, "evictions": 0, "entries": None, "hit_rate": 0.75},
    },
    "queues": {
        "emails": {
            "enqueued": 5,
            "dequeued": 0,
            "processed": {"failure": 1, "success": 3},
            "in_progress": 0,
            "retried": 1,
            "dead_lettered": {"max_attempts": 1},
            "replayed": 0,
            "depth": 1,
            "dead_letter_depth": None,
        }
    },
    "actions": {
        "notifier": {"send_email": {"failure": 1, "success": 3, "timeout": 1}, "sms": {"success": 1}}
    },
}


@BOTH
def test_summary_is_exact(otel_capture: Capture, clock: Clock) -> None:
    run_the_day(otel_capture, clock)
    report = op.summary()
    assert ISO_SECONDS.match(report.pop("generated_at"))
    assert report == EXPECTED


@BOTH
def test_summary_agrees_with_the_collected_metrics(otel_capture: Capture, clock: Clock) -> None:
    run_the_day(otel_capture, clock)
    fetch = op.summary()["pipelines"]["nightly"]["stages"]["fetch"]
    where = {"pipeline.name": "nightly", "pipeline.stage": "fetch"}
    assert fetch["items"] == otel_capture.value("pipeline.stage.items", where)
    assert fetch["started"] == otel_capture.value("pipeline.stages.started", where)
    durations = [
        p for p in otel_capture.points("pipeline.stage.duration") if p.attributes["pipeline.stage"] == "fetch"
    ]
    assert fetch["count"] == sum(p.count for p in durations)


def test_write_summary_writes_schema_valid_json(otel_capture: Capture, clock: Clock, tmp_path: Path) -> None:
    run_the_day(otel_capture, clock)
    path = tmp_path / "deep" / "summary.json"
    returned = op.write_summary(path)
    written = json.loads(path.read_text())
    assert written == returned
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.validate(written, schema(), cls=jsonschema.Draft202012Validator)
    written.pop("generated_at")
    assert written == EXPECTED
    assert [p.name for p in tmp_path.joinpath("deep").iterdir()] == ["summary.json"]  # no temporary left


def test_the_schema_rejects_what_is_not_a_summary(otel_capture: Capture, clock: Clock) -> None:
    run_the_day(otel_capture, clock)
    validator = jsonschema.Draft202012Validator(schema())
    good = op.summary()
    assert list(validator.iter_errors(good)) == []
    for path, bad_value in (
        (("schema_version",), 2),
        (("pipelines", "nightly", "stages", "fetch", "items"), -1),
        (("caches", "users", "hit_rate"), 1.5),
        (("generated_at",), "yesterday"),
    ):
        bad = json.loads(json.dumps(good))
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bad_value
        assert list(validator.iter_errors(bad)) != [], path
    missing = json.loads(json.dumps(good))
    del missing["pipelines"]["nightly"]["stages"]["write"]["items_per_second"]
    assert not validator.is_valid(missing)


def test_summary_when_not_configured_is_empty_and_valid() -> None:
    report = op.summary()
    assert ISO_SECONDS.match(report.pop("generated_at"))
    assert report == {
        "schema_version": 1,
        "service": None,
        "pipelines": {},
        "resources": None,
        "caches": {},
        "queues": {},
        "actions": {},
    }
    jsonschema.validate({**report, "generated_at": "2026-01-01T00:00:00Z"}, schema())


def test_a_run_in_progress_is_counted_as_active(otel_capture: Capture) -> None:
    with op.pipeline("nightly"), op.stage("fetch"):
        report = op.summary()["pipelines"]["nightly"]
        assert (report["started"], report["count"], report["active"], report["mean_duration_s"]) == (
            1,
            0,
            1,
            None,
        )
        assert report["stages"]["fetch"]["active"] == 1
        assert report["stages"]["fetch"]["items_per_second"] is None


def test_write_summary_failure_raises_to_the_caller_and_leaves_no_temporary(
    otel_capture: Capture, tmp_path: Path
) -> None:
    (tmp_path / "summary.json").mkdir()
    with pytest.raises(IsADirectoryError):
        op.write_summary(tmp_path / "summary.json")
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def cells(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if "│" in line:
            rows.append([cell.strip() for cell in line.split("│")])
    return rows


@BOTH
def test_print_summary_table(otel_capture: Capture, clock: Clock) -> None:
    run_the_day(otel_capture, clock)
    console_out = io.StringIO()
    console = Console(file=console_out, width=160, color_system=None)
    report = op.print_summary(console=console)
    assert report["pipelines"]["nightly"]["count"] == 2
    text = console_out.getvalue()
    rows = cells(text)
    assert rows[0] == ["pipeline / stage", "runs", "failed", "total", "mean", "max", "items", "items/s"]
    assert rows[1:5] == [
        ["nightly", "2", "1", "2.312", "1.156", "2.250", "", ""],
        ["fetch", "2", "1", "0.562", "0.281", "0.500", "127", "225.8"],
        ["process", "1", "0", "1.500", "1.500", "1.500", "120", "80"],
        ["write", "1", "0", "0.250", "0.250", "0.250", "120", "480"],
    ]
    assert "resources: peak CPU 25.0%, peak memory 47.7 MiB, 1 samples" in text
    assert ["users hit_rate", "0.750"] in rows
    assert ["emails processed success", "3"] in rows
    assert ["notifier send_email timeout", "1"] in rows
    assert "Run summary test (" in text
