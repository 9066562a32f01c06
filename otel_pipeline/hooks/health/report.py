"""What ``/health`` reports of the health hook: its checks (run now), targets with results, refresh jobs.

>>> from otel_pipeline.testing import Capture
>>> import otel_pipeline as op
>>> with Capture() as capture:
...     op.health_target("db").failure()
...     [(name, status) for name, status, _ in health_components(capture.pipeline) if name == "db"]
[('db', 'degraded')]
"""

from __future__ import annotations

from typing import Any

from otel_pipeline._internal.hook import Hook, hooks_of
from otel_pipeline._internal.runtime import STATE, Pipeline
from otel_pipeline._internal.wiring import HealthComponent
from otel_pipeline.hooks.health.checks import check_components
from otel_pipeline.hooks.health.refresh_jobs import RefreshJob
from otel_pipeline.hooks.health.targets import HealthTarget

__all__ = ["health_components"]


def _bound_here(hook: Hook, pipeline: Pipeline) -> Any:
    """The hook's series when it has recorded on ``pipeline`` (the current one), else None."""
    if STATE.pipeline is not pipeline or hook._generation != STATE.generation:
        return None
    return hook._bound


def health_components(pipeline: Pipeline) -> list[HealthComponent]:
    """/health: checks (run now), targets with results, and refresh jobs, on this pipeline."""
    found = check_components()
    checks = {name for name, _, _ in found}
    for target in hooks_of(HealthTarget):
        if target.name in checks or _bound_here(target, pipeline) is None:
            continue
        snapshot = target.snapshot()
        status = snapshot.pop("status")
        if status != "unknown":
            found.append((target.name, status, {"kind": "target", **snapshot}))
    for job in hooks_of(RefreshJob):
        if _bound_here(job, pipeline) is not None:
            status, details = job.health()
            found.append((f"refresh:{job.name}", status, details))
    return found
