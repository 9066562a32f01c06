"""A short-lived batch process exports its final values when it exits without calling shutdown()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

BATCH = textwrap.dedent(
    """
    import sys
    import otel_pipeline as op

    endpoint, protocol, summary_path = sys.argv[1:4]
    # An export interval far longer than the process lives: only the exit flush can deliver.
    op.configure(
        service_name="nightly-batch",
        exporter="otlp",
        otlp_endpoint=endpoint,
        otlp_protocol=protocol,
        export_interval=3600,
    )
    with op.pipeline("nightly", summary_path=summary_path) as run:
        with run.stage("fetch") as stage:
            stage.processed(42)
        with run.stage("write") as stage:
            stage.processed(40)
    print("batch done")
    # no op.shutdown(): the interpreter exits and the atexit hook must flush
    """
)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_batch_process_exports_everything_at_exit(
    otlp_receiver: OtlpReceiver, protocol: str, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    finished = subprocess.run(
        [sys.executable, "-c", BATCH, otlp_receiver.endpoint(protocol), protocol, str(summary_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "batch done\n"
    assert finished.stderr == ""
    # The exit flush happened before the process ended: everything is here already, no waiting.
    fetch = {"pipeline.name": "nightly", "pipeline.stage": "fetch"}
    assert otlp_receiver.latest_point("pipeline.stage.items", fetch).value == 42
    assert (
        otlp_receiver.latest_point("pipeline.stage.items", {**fetch, "pipeline.stage": "write"}).value == 40
    )
    run = otlp_receiver.latest_point(
        "pipeline.runs.finished", {"pipeline.name": "nightly", "outcome": "success"}
    )
    assert run.value == 1
    assert run.resource["service.name"] == "nightly-batch"
    assert {p.protocol for p in otlp_receiver.all_points()} == {protocol}
    spans = otlp_receiver.spans()
    assert sorted(s.name for s in spans) == [
        "pipeline.run nightly",
        "pipeline.stage fetch",
        "pipeline.stage write",
    ]
    (root,) = [s for s in spans if s.name == "pipeline.run nightly"]
    assert all(s.span.parent_span_id == root.span.span_id for s in spans if s is not root)
    summary = json.loads(summary_path.read_text())
    assert summary["pipelines"]["nightly"]["stages"]["fetch"]["items"] == 42
    assert summary["service"] == {"name": "nightly-batch", "version": ""}
