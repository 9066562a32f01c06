"""A short batch pipeline run in a subprocess that exits WITHOUT calling shutdown(), and what to check.

The integration tests of the push exporters share it: the process configures from a JSON
argument (and the environment it is given), runs three stages, writes the summary JSON next to
its output, and ends; only the interpreter-exit flush can deliver its final values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["STAGES", "BatchRun", "run_batch", "stage_figures", "summary_figures"]

SERVICE = "nightly-batch"
#: Items each stage processes in the default run; "process" fails once (caught) before it succeeds.
STAGES = {"fetch": 42, "process": 41, "write": 40}

BATCH = textwrap.dedent(
    """
    import json, sys, time
    import otel_pipeline as op

    options = json.loads(sys.argv[1])
    summary_path = sys.argv[2]
    items = options.pop("items")
    linger = options.pop("linger", 0)
    # An export interval far longer than the process lives: only the exit flush can deliver.
    options.setdefault("export_interval", 3600)
    op.configure(service_name="nightly-batch", **options)
    with op.pipeline("nightly", summary_path=summary_path) as run:
        for name, count in items.items():
            if name == "process":
                try:
                    with run.stage(name) as stage:
                        stage.processed(1)
                        raise OSError("transient")
                except OSError:
                    pass
                count -= 1
            with run.stage(name) as stage:
                stage.processed(count)
    time.sleep(linger)
    print("batch done")
    # no op.shutdown(): the interpreter exits and the atexit hook must flush
    """
)


@dataclass
class BatchRun:
    """How the batch process ended and what it wrote."""

    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    summary: dict[str, Any]


def run_batch(
    tmp_path: Path,
    *,
    items: Mapping[str, int] = STAGES,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> BatchRun:
    """Run the batch in a fresh interpreter (no OTEL_* variables but ``env``); wait for it to end."""
    summary_path = tmp_path / f"summary-{time.monotonic_ns()}.json"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(env or {})
    argument = json.dumps({"items": dict(items), **options})
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-c", BATCH, argument, str(summary_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    elapsed = time.monotonic() - started
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return BatchRun(finished.returncode, finished.stdout, finished.stderr, elapsed, summary)


def summary_figures(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per stage (and ``""`` for the run): the summary's counts and total duration."""
    run = summary["pipelines"]["nightly"]
    figures = {"": run, **run["stages"]}
    keys = ("started", "count", "failures", "active", "total_duration_s")
    found = {name: {key: float(part[key]) for key in keys} for name, part in figures.items()}
    for name, part in run["stages"].items():
        found[name]["items"] = float(part["items"])
    return found


def stage_figures(value: Callable[..., float], stages: list[str]) -> dict[str, dict[str, float]]:
    """The same figures read from Prometheus series by ``value(name, **labels)`` (0 when absent).

    The summary rounds durations to microseconds; so does this.
    """

    def get(name: str, **labels: str) -> float:
        try:
            return value(name, **labels)
        except KeyError:
            return 0.0

    found: dict[str, dict[str, float]] = {}
    for stage in ["", *stages]:
        prefix = "pipeline_stage" if stage else "pipeline_run"
        labels = {"pipeline_stage": stage} if stage else {}
        plural = prefix.replace("_run", "_runs").replace("_stage", "_stages")
        labels["pipeline_name"] = "nightly"
        outcomes = ("success", "failure")
        count = sum(get(f"{prefix}_duration_seconds_count", outcome=o, **labels) for o in outcomes)
        durations = sum(get(f"{prefix}_duration_seconds_sum", outcome=o, **labels) for o in outcomes)
        found[stage] = {
            "started": get(f"{plural}_started_total", **labels),
            "count": count,
            "failures": get(f"{plural}_finished_total", outcome="failure", **labels),
            "active": get(f"{plural}_active", **labels),
            "total_duration_s": round(durations, 6),
        }
        if stage:
            found[stage]["items"] = get("pipeline_stage_items_total", **labels)
    return found
