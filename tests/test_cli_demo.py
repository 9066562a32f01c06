from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_pipeline._internal.catalogue import all_metrics
from otel_pipeline._internal.promnames import prometheus_name
from otel_pipeline.cli import main
from otel_pipeline.demo import World, cycle
from otel_pipeline.summary import schema
from otel_pipeline.testing import Capture
from tests.support import free_port, wait_until


def demo_process(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.Popen(
        [sys.executable, "-m", "otel_pipeline.cli", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def expected_families() -> set[str]:
    hooks_specs = [s for s in all_metrics() if not s.hook.startswith("test")]
    # The text parser names counter families without their _total suffix.
    return {prometheus_name(spec).removesuffix("_total") for spec in hooks_specs}


def test_demo_serves_every_hooks_families_and_prints_the_summary(tmp_path: Path) -> None:
    port = free_port()
    summary_path = tmp_path / "summary.json"
    process = demo_process("--duration", "3", "--port", str(port), "--summary", str(summary_path))
    base = f"http://127.0.0.1:{port}"
    try:
        health = json.loads(wait_until(lambda: get(f"{base}/health"), timeout=30, what="the demo's /health"))
        assert health["service"] == "otel-pipeline-demo"
        get(f"{base}/stats")  # a /stats request: the stats hook's metrics
        seen: set[str] = set()
        while process.poll() is None:  # scrape until the demo ends
            try:
                seen |= families(get(f"{base}/metrics"))
            except OSError:
                break  # shut down between poll() and the request
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stderr == ""
    assert stdout.startswith(
        f"otel-pipeline demo: live page at {base}/\n"  # the page's address first
        f"otel-pipeline demo: metrics at {base}/metrics, running for 3 s\n"
    )
    assert "Run summary otel-pipeline-demo" in stdout
    missing = expected_families() - seen
    assert missing == set()
    report = json.loads(summary_path.read_text())
    jsonschema.validate(report, schema())
    etl = report["pipelines"]["orders-etl"]
    assert etl["started"] == etl["count"] >= 3
    assert etl["active"] == 0
    stages = etl["stages"]
    assert stages["fetch"]["count"] == etl["count"]
    assert stages["fetch"]["failures"] == etl["failures"]
    assert stages["process"]["count"] == stages["write"]["count"] == etl["count"] - etl["failures"]
    assert stages["process"]["items"] == stages["fetch"]["items"] > 0
    assert report["resources"]["samples"] >= 3
    assert report["caches"]["customers"]["hit_rate"] is not None
    assert report["queues"]["notifications"]["dead_lettered"]["max_attempts"] >= 1
    assert set(report["actions"]) == {"notifier", "orders-api"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_demo_stops_cleanly_on_a_signal(signum: int) -> None:
    port = free_port()
    process = demo_process("--port", str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: "pipeline_runs_finished_total{" in get(url), timeout=30, what="a finished run")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stderr == ""
    assert "running until Ctrl-C" in stdout
    assert "Run summary otel-pipeline-demo" in stdout
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        get(url)  # the endpoint is gone with the process


def summary_without_timings(report: dict[str, Any]) -> dict[str, Any]:
    """The counts that depend only on the seed: no durations, no action outcomes (timeouts are timed)."""
    report = json.loads(json.dumps(report))
    for key in ("generated_at", "resources", "actions"):
        report.pop(key)
    for entry in [report["pipelines"]["orders-etl"], *report["pipelines"]["orders-etl"]["stages"].values()]:
        for key in ("total_duration_s", "mean_duration_s", "max_duration_s", "items_per_second"):
            entry.pop(key, None)
    return report


def test_the_same_seed_makes_the_same_run() -> None:
    reports = []
    for _ in range(2):
        with Capture():
            from otel_pipeline import summary

            world = World(7)
            try:
                for _ in range(10):
                    cycle(world)
                reports.append(summary_without_timings(summary()))
            finally:
                world.close()
    assert reports[0] == reports[1]
    etl = reports[0]["pipelines"]["orders-etl"]
    # cycles 6-8 are the scripted outage; the breaker opens after 3 failures and rejects 2 calls
    assert (etl["count"], etl["failures"]) == (10, 5)
    assert {name: stage["items"] for name, stage in etl["stages"].items()} == {
        "fetch": 111,
        "process": 111,
        "write": 192,
    }
    notifications = reports[0]["queues"]["notifications"]
    assert (notifications["enqueued"], notifications["retried"], notifications["replayed"]) == (98, 10, 3)
    assert notifications["dead_lettered"] == {"max_attempts": 3}
    customers = reports[0]["caches"]["customers"]
    assert (customers["hits"], customers["misses"], customers["evictions"]) == (54, 50, 10)
    with Capture() as capture:  # the hooks outlive the world: closed, it no longer reports through them
        assert "queue.depth" not in capture.metrics()
        assert "queue.utilization" not in capture.metrics()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--duration", "0"], "argument --duration: '0' is not valid; use a number of seconds > 0"),
        (["demo", "--duration", "soon"], "argument --duration: 'soon' is not a number of seconds"),
        (["demo", "--port", "70000"], "argument --port: '70000' is not valid; use a port from 0 to 65535"),
        (["demo", "--port", "http"], "argument --port: 'http' is not a port number"),
        (["demo", "--exporter", "zipkin"], "argument --exporter: invalid choice: 'zipkin'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_busy_port_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--duration", "1", "--port", str(port), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"otel-pipeline demo: otel_pipeline: cannot serve /metrics on 127.0.0.1:{port}")
