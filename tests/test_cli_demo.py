from __future__ import annotations

import functools
import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

import otel_pipeline as op
from otel_pipeline import demo as demo_module
from otel_pipeline import progress as progress_module
from otel_pipeline._internal.promnames import prometheus_name
from otel_pipeline.cli import main
from otel_pipeline.config import EXPORTERS
from otel_pipeline.demo import World, cycle, run_demo
from otel_pipeline.hooks import all_metrics
from otel_pipeline.hooks.pipeline import ActiveStage, active_stages
from otel_pipeline.progress import render
from otel_pipeline.summary import schema, summary
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
        seen: set[str] = set()
        while process.poll() is None:  # scrape until the demo ends
            try:
                # The stats hook's metrics describe /stats requests (its collectors run for them).
                get(f"{base}/stats")
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


ROW = re.compile(r"│ orders-etl\s*│ (\w+)\s*│ (\d+)\s*│ ([\d.]+)/s\s*│")


def frame_rows(text: str) -> list[tuple[str, int, float]]:
    """(stage, items, rate) of each row of a drawn live view."""
    return [(stage, int(items), float(rate)) for stage, items, rate in ROW.findall(text)]


def test_the_demos_stages_count_their_items_as_they_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """At every pause of the simulated work the live view shows what the running stage did so far."""
    console = Console(width=100, color_system=None, file=io.StringIO())
    snapshots: list[list[tuple[str, float]]] = []
    frames: list[str] = []

    def sleep(seconds: float) -> None:  # the demo's only waits: no time passes, a frame is drawn
        stages = active_stages()
        snapshots.append([(stage.stage, stage.items) for stage in stages])
        with console.capture() as captured:
            console.print(render(stages))
        frames.append(captured.get())

    clock = SimpleNamespace(sleep=sleep, time=time.time, monotonic=time.monotonic)
    monkeypatch.setattr(demo_module, "time", clock)
    with Capture():
        world = World(7)
        try:
            cycle(world)
            report = summary()
        finally:
            world.close()
    stages = report["pipelines"]["orders-etl"]["stages"]
    assert report["pipelines"]["orders-etl"]["failures"] == 0
    seen: dict[str, list[float]] = {}
    for snapshot in snapshots:
        for stage, items in snapshot:
            seen.setdefault(stage, []).append(items)
    assert all(len(snapshot) <= 1 for snapshot in snapshots)  # one stage at a time
    # fetch: the API's latency, then one order after each of its 20 pauses (webhooks at the end).
    assert seen["fetch"] == [0, *range(20)]
    # process: a pause per order, each counted after its pause.
    assert seen["process"] == list(range(stages["process"]["items"]))
    # write: waiting for a connection (once, or twice after a pool timeout) and taking it, then
    # a pause per order written and per notification sent, each counted after its pause.
    written = stages["write"]["items"]
    notifications = report["queues"]["notifications"]
    assert written == notifications["enqueued"] + notifications["processed"]["success"] > 0
    assert seen["write"] in ([0, 0, *range(written)], [0, 0, 0, *range(written)])
    # Drawn, those moments show items and a rate that are not zero.
    rows = [row for frame in frames for row in frame_rows(frame)]
    for name in ("fetch", "process", "write"):
        assert any(stage == name and items > 0 and rate > 0 for stage, items, rate in rows), name


def test_the_demos_live_view_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo on a terminal: the frames its live view draws show running stages with items and rates."""
    drawn: list[list[ActiveStage]] = []

    def recording_render(stages: list[ActiveStage]) -> Any:
        drawn.append(stages)
        return render(stages)

    monkeypatch.setattr(progress_module, "render", recording_render)
    fast = functools.partial(op.live_progress, refresh_per_second=20)
    monkeypatch.setattr(op, "live_progress", fast)  # many frames, so that the test does not depend on luck
    screen = io.StringIO()
    terminal = Console(force_terminal=True, width=100, file=screen)
    run_demo(duration=2.0, port=0, console=terminal)
    moving = [stage for stages in drawn for stage in stages if stage.items > 0 and stage.elapsed > 0]
    assert len(drawn) >= 10
    # The two longer stages, at least (fetch moves for a few ms a run: the test above shows it does).
    assert {stage.stage for stage in moving} >= {"process", "write"}
    assert "orders-etl" in screen.getvalue()


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


def test_a_busy_port_exits_1_naming_the_option_to_change(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--duration", "1", "--port", str(port), "--quiet"]) == 1
    assert capsys.readouterr().err == (
        f"otel-pipeline demo: cannot serve /metrics on 127.0.0.1:{port} (Address already in use); "
        "choose another --port (0 picks a free one)\n"
    )


def test_other_os_errors_are_reported_as_they_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "summary.json").mkdir()  # the summary cannot be written there
    argv = [
        "demo",
        "--duration",
        "0.2",
        "--port",
        "0",
        "--quiet",
        "--summary",
        str(tmp_path / "summary.json"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("otel-pipeline demo: [Errno 21] Is a directory: ")
    assert "--port" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"otel-pipeline {op.__version__}\n"


def test_exporter_help_names_every_exporter(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks in the help text
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--exporter NAME[,NAME...]" in text
    assert (
        "where metrics go: prometheus (default: serve /metrics, /health, /stats, /trends), otlp (push to "
        "--otlp-endpoint), pushgateway (push to --pushgateway-url), remote_write (to --remote-write-url), "
        "console (print them), none (keep them in the process: the summary only); several joined by commas"
    ) in text
    assert all(f"{name} (" in text for name in EXPORTERS)


def banner(**options: Any) -> list[str]:
    """The lines the demo prints before it starts (its summary cut off)."""
    screen = io.StringIO()
    run_demo(duration=0.2, console=Console(file=screen, width=300, color_system=None), **options)
    return screen.getvalue().split("\n\nRun summary", 1)[0].splitlines()


def test_the_banner_names_every_endpoint() -> None:
    (page, first, second) = banner(port=0)
    match = re.fullmatch(
        r"otel-pipeline demo: metrics at (http://127\.0\.0\.1:\d+)/metrics, running for 0\.2 s", first
    )
    assert match, first
    base = match.group(1)
    assert page == f"otel-pipeline demo: live page at {base}/"
    assert second == (
        f"  also {base}/health (health checks), {base}/stats (current values as JSON), {base}/trends (rates)"
    )


@pytest.mark.parametrize(
    ("exporter", "line"),
    [
        ("none", "metrics kept in the process (exporter 'none'), the run summary at the end"),
        ("console", "metrics printed here with the spans (console exporter) every 5 s"),
    ],
)
def test_the_banner_says_where_metrics_go_without_a_server(exporter: str, line: str) -> None:
    printed = banner(exporter=exporter)
    assert printed[0] == f"otel-pipeline demo: {line}, running for 0.2 s"
    assert not any("/health" in text for text in printed)


def test_the_banner_says_where_pushes_go_beside_the_server() -> None:
    (_, first, _, third) = banner(port=0, exporter="prometheus,console")
    assert first.startswith("otel-pipeline demo: metrics at http://127.0.0.1:")
    assert third == "  and metrics printed here with the spans (console exporter) every 5 s"


def test_the_summary_file_has_the_usual_mode(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = tmp_path / "summary.json"
        assert main(["demo", "--duration", "0.2", "--port", "0", "--quiet", "--summary", str(path)]) == 0
    finally:
        os.umask(previous)
    assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(0o644)
    assert json.loads(path.read_text())["service"]["name"] == "otel-pipeline-demo"
