"""A metric no hand-written panel shows gets a default panel of its kind, on the "Other metrics" board."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards import boards, generate
from dashboards.defaults import FILE_STEM, covered, default_board, default_panel, uncovered
from dashboards.model import render
from otel_pipeline._internal.spec import Kind, MetricSpec
from otel_pipeline.hooks import all_metrics
from tests.ops.test_dashboards import validation_errors

SELECTOR = 'job=~"$job", instance=~"$instance"'
COUNTER = MetricSpec("demo.items", Kind.COUNTER, "{item}", "Items.", ("demo.name", "outcome"), "demo")
BYTES = MetricSpec("demo.sent", Kind.COUNTER, "By", "Bytes sent.", (), "demo")
GAUGE = MetricSpec("demo.depth", Kind.GAUGE, "{item}", "Depth.", ("demo.name",), "demo")
UP_DOWN = MetricSpec("demo.busy", Kind.UP_DOWN_COUNTER, "{worker}", "Busy workers.", (), "demo")
HISTOGRAM = MetricSpec("other.wait", Kind.HISTOGRAM, "s", "Wait.", ("demo.name",), "other")


def test_a_counter_gets_its_rate_by_job_and_attributes() -> None:
    panel = default_panel(COUNTER)
    assert (panel.title, panel.unit) == ("demo.items", "ops")
    assert [(q.expr, q.legend, q.exemplars) for q in panel.queries] == [
        (
            f"sum by (job, demo_name, outcome) (rate(demo_items_total{{{SELECTOR}}}[$__rate_interval]))",
            "{{job}} {{demo_name}} {{outcome}}",
            False,
        )
    ]
    assert panel.description == "Items. (default panel: no dashboard shows `demo.items` yet)"
    assert default_panel(BYTES).unit == "Bps"


@pytest.mark.parametrize("spec", [GAUGE, UP_DOWN], ids=["gauge", "updowncounter"])
def test_a_gauge_or_up_down_counter_gets_its_value(spec: MetricSpec) -> None:
    panel = default_panel(spec)
    group = "by (job, demo_name)" if spec.attributes else "by (job)"
    name = "demo_depth" if spec is GAUGE else "demo_busy"
    assert panel.unit == "short"
    assert [q.expr for q in panel.queries] == [f"sum {group} ({name}{{{SELECTOR}}})"]


def test_a_histogram_gets_its_quantiles_with_exemplars_on_p99() -> None:
    panel = default_panel(HISTOGRAM)
    bucket = f"rate(other_wait_seconds_bucket{{{SELECTOR}}}[$__rate_interval])"
    assert panel.unit == "s"
    assert [(q.expr, q.legend, q.exemplars) for q in panel.queries] == [
        (
            f"histogram_quantile({q}, sum by (job, demo_name, le) ({bucket}))",
            f"p{p} {{{{job}}}} {{{{demo_name}}}}",
            e,
        )
        for q, p, e in ((0.5, 50, False), (0.95, 95, False), (0.99, 99, True))
    ]


def test_only_metrics_no_board_queries_and_not_left_off_get_one() -> None:
    hand_made = boards.all_boards()
    names = covered(hand_made)
    assert {"queue_jobs_enqueued_total", "queue_job_duration_seconds_bucket"} <= names
    queue = next(spec for spec in all_metrics() if spec.name == "queue.job.duration")
    found = uncovered([queue, COUNTER, HISTOGRAM, GAUGE], hand_made, left_off=["demo.depth"])
    assert found == [COUNTER, HISTOGRAM]


def test_the_board_has_a_row_per_hook_and_validates() -> None:
    board = default_board([HISTOGRAM, GAUGE, COUNTER])
    assert board is not None
    assert (board.file_stem, board.uid) == (FILE_STEM, "otel-pipeline-other")
    assert [(row.title, [p.title for p in row.panels]) for row in board.rows] == [
        ("demo", ["demo.depth", "demo.items"]),
        ("other", ["other.wait"]),
    ]
    assert validation_errors(render(board)) == []
    assert default_board([]) is None


def test_every_catalogue_metric_has_a_hand_written_panel_today() -> None:
    assert [board.file_stem for board in boards.all_boards()] == [make().file_stem for make in boards.BOARDS]


def test_a_new_metric_without_a_panel_is_on_the_other_board(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boards, "all_metrics", lambda: [*all_metrics(), COUNTER])
    made = boards.all_boards()
    assert made[-1].file_stem == FILE_STEM
    assert [panel.title for panel in made[-1].panels()] == ["demo.items"]
    assert len(made) == len(boards.BOARDS) + 1


def test_generate_removes_the_other_board_once_no_metric_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(generate, "DASHBOARDS_DIR", tmp_path)
    monkeypatch.setattr(generate, "RULES_DIR", tmp_path / "rules")
    leftover = tmp_path / f"{FILE_STEM}.json"
    leftover.write_text("{}\n")
    assert generate.main(["--check"]) == 1
    assert f"stale: {leftover} (run: python -m dashboards.generate)" in capsys.readouterr().err.splitlines()
    assert generate.main([]) == 0
    assert not leftover.exists()
    assert f"removed {leftover} (no longer generated)" in capsys.readouterr().out.splitlines()
    assert generate.main(["--check"]) == 0
