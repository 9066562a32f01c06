from __future__ import annotations

import asyncio
import functools
import io
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

import otel_pipeline as op
from otel_pipeline._internal import timed
from otel_pipeline.config import DEFAULT_DURATION_BUCKETS
from otel_pipeline.hooks.pipeline import ActiveStage, active_stages
from otel_pipeline.progress import LiveProgress, render
from otel_pipeline.testing import Capture
from tests.support.dropped import assert_records, message

BOTH = pytest.mark.parametrize("otel_capture", ["core", "sdk"], indirect=True)
RUN = {"pipeline.name": "nightly"}
FETCH = {**RUN, "pipeline.stage": "fetch"}


class Clock:
    """A perf_counter that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(timed, "perf_counter", fake)
    return fake


def buckets(*values: float) -> list[int]:
    """Bucket counts of the default duration buckets after recording ``values``."""
    counts = [0] * (len(DEFAULT_DURATION_BUCKETS) + 1)
    for value in values:
        counts[sum(1 for bound in DEFAULT_DURATION_BUCKETS if bound < value)] += 1
    return counts


def one_chunk(clock: Clock) -> None:
    """fetch 120 items (0.5 s), process them (1.5 s), write them (0.25 s)."""
    with op.pipeline("nightly") as run:
        with run.stage("fetch") as stage:
            clock.advance(0.5)
            stage.processed(120)
        with run.stage("process") as stage:
            stage.processed(100)
            stage.processed(20)
            clock.advance(1.5)
        with run.stage("write") as stage:
            clock.advance(0.25)
            stage.processed(120)


@BOTH
def test_one_chunk_records_exact_metrics(otel_capture: Capture, clock: Clock) -> None:
    one_chunk(clock)
    c = otel_capture
    assert c.value("pipeline.runs.started", RUN) == 1
    assert c.value("pipeline.runs.finished", {**RUN, "outcome": "success"}) == 1
    assert c.value("pipeline.runs.active", RUN) == 0
    run = c.point("pipeline.run.duration", {**RUN, "outcome": "success"})
    assert (run.count, run.sum, run.max) == (1, 2.25, 2.25)
    assert list(run.bucket_counts) == buckets(2.25)
    for stage, seconds in (("fetch", 0.5), ("process", 1.5), ("write", 0.25)):
        where = {**RUN, "pipeline.stage": stage}
        assert c.value("pipeline.stages.started", where) == 1
        assert c.value("pipeline.stages.finished", {**where, "outcome": "success"}) == 1
        assert c.value("pipeline.stages.active", where) == 0
        assert c.value("pipeline.stage.items", where) == 120
        point = c.point("pipeline.stage.duration", {**where, "outcome": "success"})
        assert (point.count, point.sum, list(point.bucket_counts)) == (1, seconds, buckets(seconds))
    assert [len(c.points(name)) for name in ("pipeline.stage.items", "pipeline.stage.duration")] == [3, 3]
    units = {name: (c.metric(name).unit, c.metric(name).description) for name in c.metrics()}
    assert units["pipeline.run.duration"] == ("s", "Duration of one pipeline run, by outcome.")
    assert units["pipeline.stage.items"] == ("{item}", "Items processed by a pipeline stage.")


@BOTH
def test_one_span_per_run_with_a_child_per_stage(otel_capture: Capture, clock: Clock) -> None:
    one_chunk(clock)
    spans = otel_capture.spans()
    assert [s.name for s in spans] == [
        "pipeline.stage fetch",
        "pipeline.stage process",
        "pipeline.stage write",
        "pipeline.run nightly",
    ]
    root = spans[-1]
    assert root.parent is None
    assert dict(root.attributes or {}) == RUN
    for span in spans[:-1]:
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        assert span.status.status_code is StatusCode.UNSET
    assert dict(spans[0].attributes or {}) == {**FETCH, "pipeline.stage.items": 120}


@BOTH
def test_failing_stage_is_recorded_and_reraised(otel_capture: Capture, clock: Clock) -> None:
    def failing_run() -> None:
        with op.pipeline("nightly") as run, run.stage("fetch") as stage:
            stage.processed(7)
            clock.advance(0.0625)
            raise ConnectionError("source down")

    with pytest.raises(ConnectionError, match="source down"):
        failing_run()
    c = otel_capture
    failure = {"outcome": "failure", "error.type": "ConnectionError"}
    assert c.value("pipeline.stages.finished", {**FETCH, **failure}) == 1
    assert c.value("pipeline.runs.finished", {**RUN, **failure}) == 1
    assert c.value("pipeline.stage.items", FETCH) == 7
    assert c.value("pipeline.stages.active", FETCH) == 0
    assert c.value("pipeline.runs.active", RUN) == 0
    point = c.point("pipeline.stage.duration", {**FETCH, **failure})
    assert (point.count, point.sum) == (1, 0.0625)
    assert [dict(p.attributes) for p in c.points("pipeline.stages.finished")] == [{**FETCH, **failure}]
    stage_span, run_span = c.spans()
    assert stage_span.status.status_code is StatusCode.ERROR
    assert stage_span.status.description == "ConnectionError: source down"
    assert run_span.status.status_code is StatusCode.ERROR
    assert dict(stage_span.attributes or {}) == {
        **FETCH,
        "pipeline.stage.items": 7,
        "error.type": "ConnectionError",
    }
    assert [e.name for e in stage_span.events] == ["exception"]


def test_a_stage_failure_handled_inside_the_run_leaves_the_run_successful(otel_capture: Capture) -> None:
    with op.pipeline("nightly") as run:
        with pytest.raises(KeyError), run.stage("fetch"):
            raise KeyError("missing")
        with run.stage("fetch") as stage:
            stage.processed(1)
    c = otel_capture
    assert c.value("pipeline.stages.started", FETCH) == 2
    assert c.value("pipeline.stages.finished", {**FETCH, "outcome": "success"}) == 1
    assert c.value("pipeline.stages.finished", {**FETCH, "outcome": "failure", "error.type": "KeyError"}) == 1
    assert c.value("pipeline.runs.finished", {**RUN, "outcome": "success"}) == 1


@BOTH
def test_decorators_for_functions_and_coroutines(otel_capture: Capture, clock: Clock) -> None:
    @op.stage("fetch")
    def fetch() -> list[int]:
        clock.advance(1.0)
        return [1, 2, 3]

    @op.pipeline("nightly")
    def nightly() -> int:
        return len(fetch())

    @op.stage("fetch")
    async def fetch_async() -> int:
        clock.advance(2.0)
        return 4

    @op.pipeline("nightly")
    async def nightly_async() -> int:
        return await fetch_async()

    assert nightly() == 3
    assert asyncio.run(nightly_async()) == 4
    c = otel_capture
    assert c.value("pipeline.runs.finished", {**RUN, "outcome": "success"}) == 2
    point = c.point("pipeline.stage.duration", {**FETCH, "outcome": "success"})
    assert (point.count, point.sum) == (2, 3.0)
    spans = c.spans()
    assert [s.name for s in spans] == ["pipeline.stage fetch", "pipeline.run nightly"] * 2
    assert spans[0].parent is not None
    assert spans[0].parent.span_id == spans[1].context.span_id
    assert spans[2].parent is not None
    assert spans[2].parent.span_id == spans[3].context.span_id


@BOTH
async def test_async_with_for_runs_and_stages(otel_capture: Capture) -> None:
    async with op.pipeline("nightly") as run, run.stage("fetch") as stage:
        await asyncio.sleep(0)
        stage.processed(5)
    assert otel_capture.value("pipeline.stage.items", FETCH) == 5
    assert otel_capture.value("pipeline.runs.finished", {**RUN, "outcome": "success"}) == 1


@BOTH
def test_stage_in_another_thread_is_a_child_of_the_run(otel_capture: Capture) -> None:
    with op.pipeline("nightly") as run:

        def work() -> None:
            with run.stage("fetch") as stage:
                stage.processed(2)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    stage_span, run_span = otel_capture.spans()
    assert stage_span.parent is not None
    assert stage_span.parent.span_id == run_span.context.span_id
    assert otel_capture.value("pipeline.stage.items", FETCH) == 2


def test_stage_outside_a_run_belongs_to_the_named_or_default_pipeline(otel_capture: Capture) -> None:
    with op.stage("fetch") as stage:
        stage.processed(3)
    with op.stage("fetch", pipeline="nightly") as stage:
        stage.processed(4)
    with op.pipeline("other"), op.stage("fetch", pipeline="nightly") as stage:
        stage.processed(5)
    assert (
        otel_capture.value("pipeline.stage.items", {"pipeline.name": "default", "pipeline.stage": "fetch"})
        == 3
    )
    assert otel_capture.value("pipeline.stage.items", FETCH) == 9
    assert [s.name for s in otel_capture.spans()] == [
        "pipeline.stage fetch",
        "pipeline.stage fetch",
        "pipeline.stage fetch",
        "pipeline.run other",
    ]


@BOTH
def test_class_based_stages_count_items_without_writing_metrics(otel_capture: Capture, clock: Clock) -> None:
    class Fetch(op.Stage):
        def process(self, query: str) -> list[str]:
            clock.advance(0.5)
            return [query] * 4

    class WriteRows(op.Stage):
        def process(self, rows: list[str]) -> None:
            clock.advance(0.25)

    class Enrich(op.Stage):
        stage_name = "enrich"
        pipeline_name = "nightly"

        async def process(self, rows: list[str]) -> str:
            return "done"

        def count_items(self, result: Any, args: tuple[Any, ...]) -> float:
            return 10

    class Broken(op.Stage):
        def process(self) -> None:
            raise ValueError("bad row")

    with op.pipeline("nightly"):
        rows = Fetch()("q")
        WriteRows()(rows)
        assert asyncio.run(Enrich()(rows)) == "done"
        with pytest.raises(ValueError, match="bad row"):
            Broken()()
    c = otel_capture
    assert c.value("pipeline.stage.items", FETCH) == 4
    assert c.value("pipeline.stage.items", {**RUN, "pipeline.stage": "write_rows"}) == 4
    assert c.value("pipeline.stage.items", {**RUN, "pipeline.stage": "enrich"}) == 10
    assert (
        c.value(
            "pipeline.stages.finished",
            {**RUN, "pipeline.stage": "broken", "outcome": "failure", "error.type": "ValueError"},
        )
        == 1
    )
    assert c.point("pipeline.stage.duration", {**FETCH, "outcome": "success"}).sum == 0.5
    assert Fetch().name == "fetch"
    assert WriteRows().name == "write_rows"


def test_count_items_default_and_faulty_override(otel_capture: Capture) -> None:
    class One(op.Stage):
        def process(self, item: int) -> int:
            return item

    class Faulty(op.Stage):
        def process(self) -> None:
            return None

        def count_items(self, result: Any, args: tuple[Any, ...]) -> float:
            raise RuntimeError("bug in the override")

    assert One()(5) == 5
    assert One().count_items("text", ("text",)) == 1
    assert One().count_items(None, ([1, 2],)) == 2
    assert Faulty()() is None  # the fault is logged once, never raised
    default = {"pipeline.name": "default"}
    assert otel_capture.value("pipeline.stage.items", {**default, "pipeline.stage": "one"}) == 1
    assert (
        otel_capture.value(
            "pipeline.stages.finished", {**default, "pipeline.stage": "faulty", "outcome": "success"}
        )
        == 1
    )


def test_active_stages_lists_the_stages_in_progress(otel_capture: Capture, clock: Clock) -> None:
    with op.pipeline("nightly") as run, run.stage("fetch") as stage:
        stage.processed(6)
        (active,) = active_stages()
        assert (active.pipeline, active.stage, active.items) == ("nightly", "fetch", 6)
        assert stage.run is run
        assert run.name == "nightly"
    assert active_stages() == []


def test_summary_path_is_written_when_the_run_ends(otel_capture: Capture, tmp_path: Path) -> None:
    path = tmp_path / "out" / "summary.json"
    with op.pipeline("nightly", summary_path=path) as run, run.stage("fetch") as stage:
        stage.processed(3)
        assert not path.exists()
    written = json.loads(path.read_text())
    assert written["pipelines"]["nightly"]["count"] == 1
    assert written["pipelines"]["nightly"]["stages"]["fetch"]["items"] == 3


def test_summary_path_failure_is_logged_not_raised(
    otel_capture: Capture, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with op.pipeline("nightly", summary_path=blocker / "summary.json"):
        pass
    assert otel_capture.value("pipeline.runs.finished", {**RUN, "outcome": "success"}) == 1
    assert "could not write the run summary" in caplog.text


def test_not_configured_everything_is_a_noop() -> None:
    with op.pipeline("nightly") as run:
        with run.stage("fetch") as stage:
            stage.processed(3)
        with op.stage("process") as other:
            other.processed(1)
    assert (stage.items, other.items) == (3, 1)
    assert run.name == "nightly"

    @op.pipeline("nightly")
    def decorated() -> str:
        return "ran"

    assert decorated() == "ran"
    assert active_stages() == []


async def test_not_configured_async_noop() -> None:
    async with op.pipeline("nightly") as run, run.stage("fetch") as stage:
        stage.processed(2)
    assert stage.items == 2


def test_decorated_before_configure_records_once_configured(clock: Clock) -> None:
    @op.pipeline("nightly")
    def nightly() -> None:
        with op.stage("fetch") as stage:
            stage.processed(1)

    nightly()
    with Capture() as capture:
        nightly()
        assert capture.value("pipeline.runs.started", RUN) == 1
        assert capture.value("pipeline.stage.items", FETCH) == 1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: op.pipeline(3), TypeError, "pipeline name must be a str, got int 3"),  # type: ignore[arg-type]
        (lambda: op.pipeline(""), ValueError, "pipeline name=''"),
        (lambda: op.pipeline("p", summary_path=1), TypeError, "summary_path must be a str or pathlib.Path"),  # type: ignore[arg-type]
        (lambda: op.stage(""), ValueError, "stage name=''"),
        (lambda: op.stage("s", pipeline=5), TypeError, "pipeline name must be a str"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_at_creation(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_bad_stage_names_raise_and_bad_counts_are_dropped_with_one_warning(
    otel_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    with op.pipeline("nightly") as run:
        with pytest.raises(ValueError, match="stage name=' '"):
            run.stage(" ")
        with run.stage("fetch") as stage:
            stage.processed(2)
            for bad, text, problem in ((-1, "-1", "negative"), (True, "True", "wrong type")):
                assert_records(
                    otel_capture,
                    caplog,
                    functools.partial(stage.processed, bad),
                    {},
                    message("pipeline stage", "fetch", f"processed(count={text})", problem),
                    "count must be a number >= 0",
                    "; nothing is recorded for this call",
                )
            assert stage.items == 2
            stage.processed(1.5)
    assert otel_capture.value("pipeline.stage.items", FETCH) == 3.5
    assert otel_capture.value("pipeline.stages.finished", {**FETCH, "outcome": "success"}) == 1


def test_a_bad_count_never_raises_when_not_configured_either(caplog: pytest.LogCaptureFixture) -> None:
    with op.pipeline("nightly") as run, run.stage("fetch") as stage:
        assert_records(
            None,
            caplog,
            lambda: stage.processed(float("nan")),
            {},
            message("pipeline stage", "fetch", "processed(count=nan)", "not finite"),
        )
        assert stage.items == 0


def scrape(url: str) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """The /metrics text and its samples: (name, labels without otel_scope_*) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = str(response.read().decode())
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope_"))
            samples[(sample.name, labels)] = sample.value
    return text, samples


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_prometheus_export_of_one_chunk(mode: str, clock: Clock) -> None:
    pipeline = op.configure(
        service_name="nightly-export", exporter="prometheus", prometheus_port=0, instrument_mode=mode
    )
    one_chunk(clock)
    assert pipeline.metrics_url is not None
    text, samples = scrape(pipeline.metrics_url)
    ok = {"outcome": "success"}
    for stage, seconds in (("fetch", 0.5), ("process", 1.5), ("write", 0.25)):
        labels = {"pipeline_name": "nightly", "pipeline_stage": stage}
        assert samples[key("pipeline_stage_items_total", **labels)] == 120
        assert samples[key("pipeline_stages_started_total", **labels)] == 1
        assert samples[key("pipeline_stages_finished_total", **labels, **ok)] == 1
        assert samples[key("pipeline_stages_active", **labels)] == 0
        assert samples[key("pipeline_stage_duration_seconds_sum", **labels, **ok)] == seconds
        assert samples[key("pipeline_stage_duration_seconds_count", **labels, **ok)] == 1
        assert samples[key("pipeline_stage_duration_seconds_bucket", **labels, **ok, le="0.1")] == 0
        assert samples[key("pipeline_stage_duration_seconds_bucket", **labels, **ok, le="2.5")] == 1
    run = {"pipeline_name": "nightly"}
    assert samples[key("pipeline_runs_started_total", **run)] == 1
    assert samples[key("pipeline_runs_finished_total", **run, **ok)] == 1
    assert samples[key("pipeline_runs_active", **run)] == 0
    assert samples[key("pipeline_run_duration_seconds_sum", **run, **ok)] == 2.25
    assert samples[key("pipeline_run_duration_seconds_bucket", **run, **ok, le="1.0")] == 0
    assert samples[key("pipeline_run_duration_seconds_bucket", **run, **ok, le="2.5")] == 1
    pipeline_samples = {k for k in samples if k[0].startswith("pipeline_")}
    assert len(pipeline_samples) == 3 * (4 + 2 + 15) + 3 + 2 + 15
    assert "# HELP pipeline_stage_items_total Items processed by a pipeline stage." in text
    assert "# TYPE pipeline_runs_active gauge" in text


def test_live_progress_draws_the_running_stages_on_a_terminal(otel_capture: Capture, clock: Clock) -> None:
    console_out = io.StringIO()
    console = Console(file=console_out, force_terminal=True, width=100, color_system=None)
    with op.live_progress(console=console) as view:
        assert view.enabled
        assert view.running
        with op.pipeline("nightly") as run, run.stage("fetch") as stage:
            stage.processed(120)
            clock.advance(2.0)
            view.refresh()
    assert not view.running
    drawn = console_out.getvalue()
    assert "running stages" in drawn
    assert "nightly" in drawn
    assert "fetch" in drawn
    view.stop()  # idempotent


def test_live_progress_is_off_when_not_a_terminal() -> None:
    console_out = io.StringIO()
    console = Console(file=console_out, width=100)
    with op.live_progress(console=console) as view:
        assert not view.enabled
        assert not view.running
        view.refresh()
    assert console_out.getvalue() == ""


def test_render_shows_items_rate_and_elapsed() -> None:
    console_out = io.StringIO()
    console = Console(file=console_out, width=100, color_system=None)
    console.print(
        render([ActiveStage("nightly", "fetch", 120, 2.0), ActiveStage("nightly", "write", 0, 0.0)])
    )
    rows = [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in console_out.getvalue().splitlines()
        if "│" in line
    ]
    assert rows == [
        ["nightly", "fetch", "120", "60.0/s", "2.0s"],
        ["nightly", "write", "0", "0.0/s", "0.0s"],
    ]
    empty_out = io.StringIO()
    empty = Console(file=empty_out, width=100, color_system=None)
    empty.print(render([]))
    assert "(none running)" in empty_out.getvalue()


def test_live_progress_refresh_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"refresh_per_second=0 is not valid; use a number > 0"):
        LiveProgress(refresh_per_second=0)
