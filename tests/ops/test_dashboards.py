"""The Grafana dashboards: generated from the catalogue, committed as generated, valid against the schema."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from dashboards import generate
from dashboards.boards import NOT_ON_DASHBOARDS, all_boards
from dashboards.model import Board, render, to_json
from dashboards.promql import metric, used_metrics
from otel_pipeline._internal.promnames import prometheus_name
from otel_pipeline.hooks import all_metrics

DASHBOARDS_DIR = Path(generate.__file__).resolve().parent
SCHEMA = json.loads((DASHBOARDS_DIR / "schema" / "dashboard.jsonschema.json").read_text())
BOARDS = all_boards()
IDS = [board.file_stem for board in BOARDS]


def validation_errors(model: dict[str, Any]) -> list[str]:
    return [error.message for error in jsonschema.Draft7Validator(SCHEMA).iter_errors(model)]


def targets(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in model["panels"] for target in panel.get("targets", [])]


def test_the_expected_dashboards_exist() -> None:
    assert IDS == ["overview", "queues", "caches", "checkpoints", "pipelines", "resilience", "resources"]
    assert sorted(p.name for p in DASHBOARDS_DIR.glob("*.json")) == sorted(f"{stem}.json" for stem in IDS)


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_committed_json_is_what_the_code_generates(board: Board) -> None:
    assert (DASHBOARDS_DIR / f"{board.file_stem}.json").read_text(encoding="utf-8") == to_json(board)


def test_generate_check_passes_on_the_committed_files() -> None:
    assert generate.main(["--check"]) == 0
    assert generate.stale_files() == []


def test_generate_check_names_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    current, stale, missing = tmp_path / "current.json", tmp_path / "stale.json", tmp_path / "missing.json"
    current.write_text("{}\n")
    stale.write_text("old\n")
    monkeypatch.setattr(
        generate, "generated_files", lambda: {current: "{}\n", stale: "new\n", missing: "x\n"}
    )
    assert generate.main(["--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"stale: {stale} (run: python -m dashboards.generate)",
        f"stale: {missing} (run: python -m dashboards.generate)",
    ]
    assert stale.read_text() == "old\n"  # --check writes nothing


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_dashboard_validates_against_the_grafana_schema(board: Board) -> None:
    assert validation_errors(render(board)) == []


def test_schema_rejects_broken_dashboards() -> None:
    model = render(BOARDS[0])
    no_templating = {key: value for key, value in model.items() if key != "templating"}
    assert validation_errors(no_templating) == ["'templating' is a required property"]
    too_wide = copy.deepcopy(model)
    too_wide["panels"][1]["gridPos"]["w"] = 30
    assert len(validation_errors(too_wide)) == 1
    unknown_key = copy.deepcopy(model)
    unknown_key["templating"]["list"][0]["colour"] = "red"
    assert validation_errors(unknown_key) == [
        "Additional properties are not allowed ('colour' was unexpected)"
    ]


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_variables_and_queries_filter_by_service_and_instance(board: Board) -> None:
    model = render(board)
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance"]
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["query"] == "label_values(target_info, job)"
    assert variables["instance"]["query"] == 'label_values(target_info{job=~"$job"}, instance)'
    assert all(v.get("includeAll") for name, v in variables.items() if name != "datasource")
    for panel in model["panels"]:
        assert [t["refId"] for t in panel.get("targets", [])] == list(
            "ABCDE"[: len(panel.get("targets", []))]
        )
    for target in targets(model):
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert 'job=~"$job", instance=~"$instance"' in target["expr"], target["expr"]


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_latency_panels_show_exemplars(board: Board) -> None:
    model = render(board)
    for panel in model["panels"]:
        exprs = [t["expr"] for t in panel.get("targets", [])]
        if any(expr.startswith("histogram_quantile(") for expr in exprs):
            assert panel["fieldConfig"]["defaults"]["unit"] == "s"
            assert [t["exemplar"] for t in panel["targets"]] == [False, False, True], panel["title"]
        else:
            assert not any(t["exemplar"] for t in panel.get("targets", [])), panel["title"]


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_panel_ids_are_unique_and_layout_fits_the_grid(board: Board) -> None:
    panels = render(board)["panels"]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24


def test_uids_are_unique_and_stable() -> None:
    assert [render(board)["uid"] for board in BOARDS] == [f"otel-pipeline-{stem}" for stem in IDS]


def test_every_catalogue_metric_is_on_a_dashboard_but_those_without_data_in_a_normal_run() -> None:
    exprs = " ".join(t["expr"] for board in BOARDS for t in targets(render(board)))
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", exprs))
    shown = {
        spec.name
        for spec in all_metrics()
        if prometheus_name(spec) in names or f"{prometheus_name(spec)}_bucket" in names
    }
    catalogue = {spec.name for spec in all_metrics()}
    assert catalogue - shown == set(NOT_ON_DASHBOARDS)
    assert catalogue - set(NOT_ON_DASHBOARDS) <= used_metrics()
    assert set(NOT_ON_DASHBOARDS) <= catalogue


def test_metric_names_come_from_the_catalogue() -> None:
    assert metric("queue.jobs.enqueued") == "queue_jobs_enqueued_total"
    assert metric("queue.job.duration", "_bucket") == "queue_job_duration_seconds_bucket"
    with pytest.raises(KeyError, match=r"'queue\.jobs\.lost' is not in the metric catalogue; known: "):
        metric("queue.jobs.lost")
    with pytest.raises(
        ValueError, match=r"'queue\.jobs\.enqueued' is a counter, not a histogram: no '_bucket'"
    ):
        metric("queue.jobs.enqueued", "_bucket")
