"""exporter="pushgateway" against a real Prometheus Pushgateway, and a Prometheus scraping it.

A batch process that never calls shutdown() leaves its exact final figures in the gateway (the
same as its summary JSON), replaces the previous run's group, can delete its group, and a gateway
that is down or hangs costs the run one warning and a bounded wait, never its exit status.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import otel_pipeline as op
from tests.integration.batch_run import SERVICE, STAGES, BatchRun, run_batch, stage_figures, summary_figures
from tests.support import free_port
from tests.support.pushgateway import GatewayScraper, Pushgateway, Sample, parse_samples, silent_port

pytestmark = pytest.mark.integration


def assert_clean_exit(run: BatchRun) -> None:
    assert run.returncode == 0, run.stderr
    assert run.stdout == "batch done\n"
    assert run.stderr == ""


def test_a_batch_run_without_shutdown_leaves_its_final_figures_in_the_gateway(
    pushgateway: Pushgateway, tmp_path: Path
) -> None:
    run = run_batch(tmp_path, exporter="pushgateway", pushgateway_url=pushgateway.url)
    assert_clean_exit(run)
    # One group: job=<service.name>, no instance (so that the next run replaces this one).
    assert pushgateway.group_labels() == [{"job": SERVICE}]
    for stage, items in STAGES.items():
        assert pushgateway.value("pipeline_stage_items_total", job=SERVICE, pipeline_stage=stage) == items
    assert (
        pushgateway.value(
            "pipeline_stages_finished_total", job=SERVICE, pipeline_stage="process", outcome="failure"
        )
        == 1
    )
    assert pushgateway.value("pipeline_runs_finished_total", job=SERVICE, outcome="success") == 1
    # target_info is kept, with the resource attributes as labels (joinable on job).
    (target,) = [labels for name, labels, _ in pushgateway.samples() if name == "target_info"]
    target_labels = dict(target)
    assert (target_labels["job"], target_labels["instance"], target_labels["service_name"]) == (
        SERVICE,
        "",
        SERVICE,
    )
    assert "process_pid" in target_labels
    assert "service_instance_id" in target_labels
    # The summary JSON written next to the output and the push agree exactly.
    assert stage_figures(pushgateway.value, list(STAGES)) == summary_figures(run.summary)


def test_the_push_has_the_series_of_metrics_exactly(pushgateway: Pushgateway) -> None:
    pipeline = op.configure(
        service_name="orders",
        exporter="prometheus,pushgateway",
        prometheus_port=0,
        pushgateway_url=pushgateway.url,
        export_interval=3600,
    )
    assert pipeline.metrics_url is not None
    q = op.queue("emails")
    q.enqueued(5)
    for _ in range(3):
        with q.processing():
            pass
    op.cache("users").hit()
    with urllib.request.urlopen(pipeline.metrics_url, timeout=10) as response:
        scraped = parse_samples(response.read().decode())
    assert op.shutdown() is True
    pushed = pushgateway.samples(job="orders")
    # The gateway adds job and instance; it writes bucket bounds as Go does (le="1" for "1.0").
    assert {_normal(sample) for sample in pushed} == {_normal(sample, gateway=False) for sample in scraped}
    assert pushgateway.value("queue_jobs_enqueued_total", job="orders", queue_name="emails") == 5


def _normal(sample: Sample, *, gateway: bool = True) -> Sample:
    name, labels, value = sample
    kept = {k: v for k, v in labels if not (gateway and k in ("job", "instance"))}
    if "le" in kept:
        kept["le"] = repr(float(kept["le"]))
    return name, tuple(sorted(kept.items())), value


def test_prometheus_scraping_the_gateway_has_the_exact_counts(
    pushgateway: Pushgateway, tmp_path: Path
) -> None:
    run = run_batch(tmp_path, exporter="pushgateway", pushgateway_url=pushgateway.url)
    assert_clean_exit(run)
    with GatewayScraper([pushgateway.address], scrape_interval=0.5, job="pushgateway") as prometheus:
        for stage, items in STAGES.items():
            expr = f'pipeline_stage_items_total{{job="{SERVICE}",pipeline_stage="{stage}"}}'
            assert prometheus.value(expr) == items
        # honor_labels keeps the pushing job's name; target_info joins on it.
        joined = prometheus.wait_for(
            f'pipeline_stage_items_total{{job="{SERVICE}"}} * on(job) group_left(service_name) target_info',
            lambda result: len(result) == len(STAGES),
        )
        assert {r["metric"]["service_name"] for r in joined} == {SERVICE}


def test_grouping_labels_and_each_run_replaces_the_last(pushgateway: Pushgateway, tmp_path: Path) -> None:
    grouping = {"instance": "batch-host-1", "shard": "eu/1"}  # a "/" goes base64-encoded in the URL
    options: dict[str, Any] = {
        "exporter": "pushgateway",
        "pushgateway_url": pushgateway.url,
        "pushgateway_grouping": grouping,
    }
    assert_clean_exit(run_batch(tmp_path, **options))
    second = run_batch(tmp_path, items={"fetch": 7}, **options)
    assert_clean_exit(second)
    assert pushgateway.group_labels() == [{"job": SERVICE, **grouping}]
    fetch = [s for s in pushgateway.samples() if s[0] == "pipeline_stage_items_total"]
    assert [(dict(labels)["pipeline_stage"], dict(labels)["shard"], value) for _, labels, value in fetch] == [
        ("fetch", "eu/1", 7.0)
    ]
    assert len([s for s in pushgateway.samples() if s[0] == "target_info"]) == 1


def test_the_group_can_be_deleted_at_the_end(pushgateway: Pushgateway, tmp_path: Path) -> None:
    other = op.configure(service_name="other-job", exporter="pushgateway", pushgateway_url=pushgateway.url)
    op.queue("emails").enqueued()
    assert op.shutdown() is True
    assert other.export_state.exports == 1
    run = run_batch(
        tmp_path,
        exporter="pushgateway",
        pushgateway_url=pushgateway.url,
        env={"OTEL_PIPELINE_PUSHGATEWAY_DELETE": "true"},
    )
    assert_clean_exit(run)
    assert run.summary["pipelines"]["nightly"]["stages"]["fetch"]["items"] == 42
    # Only this run's group went; the other job's stays.
    assert pushgateway.group_labels() == [{"job": "other-job"}]


TARGETS = ["pushgateway", "remote_write"]


def _options(exporter: str, url: str) -> dict[str, Any]:
    if exporter == "pushgateway":
        return {"exporter": "pushgateway", "pushgateway_url": url}
    return {"exporter": "remote_write", "remote_write_url": f"{url}/api/v1/write"}


@pytest.mark.parametrize("exporter", TARGETS)
def test_a_target_that_is_down_costs_one_warning_and_no_time(exporter: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    # Pushes every 0.2 s for a second: several fail, one warning; the defaults otherwise.
    run = run_batch(tmp_path, linger=1.0, export_interval=0.2, **_options(exporter, url))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "batch done\n"
    (warning,) = run.stderr.splitlines()
    assert warning.startswith("pushing metrics to the ")
    assert f"at {url}" in warning
    assert "Connection refused" in warning
    assert "this is the only warning" in warning
    assert run.summary["pipelines"]["nightly"]["stages"]["fetch"]["items"] == 42
    assert run.elapsed < 1.0 + 3.0, f"the run took {run.elapsed:.1f} s"


@pytest.mark.parametrize("exporter", TARGETS)
def test_a_target_that_hangs_costs_one_warning_and_export_timeout(exporter: str, tmp_path: Path) -> None:
    with silent_port() as port:
        run = run_batch(tmp_path, export_timeout=1.0, **_options(exporter, f"http://127.0.0.1:{port}"))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "batch done\n"
    (warning,) = run.stderr.splitlines()
    assert "timed out" in warning
    assert "this is the only warning" in warning
    # export_timeout (1 s) bounds the final push; the interpreter's start and exit come on top.
    assert run.elapsed < 1.0 + 3.0, f"the run took {run.elapsed:.1f} s"


def test_shutdown_is_false_when_the_final_push_fails() -> None:
    pipeline = op.configure(
        service_name="orders", exporter="pushgateway", pushgateway_url=f"http://127.0.0.1:{free_port()}"
    )
    op.queue("emails").enqueued()
    assert op.shutdown() is False
    assert (pipeline.export_state.exports, pipeline.export_state.consecutive_failures) == (1, 1)
    assert pipeline.export_state.last_failure == "pushgateway: export FAILURE"


def test_the_demo_runs_as_a_batch_job_that_pushes(pushgateway: Pushgateway, tmp_path: Path) -> None:
    summary = tmp_path / "demo.json"
    argv = ["demo", "--exporter", "pushgateway", "--pushgateway-url", pushgateway.url]
    argv += ["--duration", "1.5", "--quiet", "--summary", str(summary), "--port", "0"]
    finished = subprocess.run(
        [sys.executable, "-m", "otel_pipeline.cli", *argv], capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    report = json.loads(summary.read_text())
    stages = report["pipelines"]["orders-etl"]["stages"]
    assert stages["fetch"]["items"] > 0
    for stage, figures in stages.items():
        items = pushgateway.value(
            "pipeline_stage_items_total", job="otel-pipeline-demo", pipeline_stage=stage
        )
        assert items == figures["items"]
