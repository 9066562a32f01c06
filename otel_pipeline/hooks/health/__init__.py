"""Health: targets (dependencies you probe), health checks, stats collectors and refresh jobs.

>>> import otel_pipeline as op
>>> ollama = op.health_target("ollama")
>>> ollama.success()
>>> op.register_health_check("disk", lambda: True)
>>> op.register_collector("cache", lambda: {"entries": 42})
>>> with op.refresh_job("catalog", interval=300).running():
...     pass
>>> op.unregister_health_check("disk"); op.unregister_collector("cache")

Checks run for ``/health`` requests and collectors for ``/stats`` requests, in parallel, each
within its own timeout: one that hangs or raises is reported as such and does not hold up the
others (nor a second request: a run still going is shared, not restarted). A result is reused
for ``ttl`` seconds (default 1), so a burst of requests runs each function once.

One module per job: ``targets``, ``checks``, ``collectors``, ``refresh_jobs``, and ``report``
(what /health shows of them); the probe runner the checks and collectors share is
``otel_pipeline/_internal/probes.py``. The package wires :func:`health_components` into /health
and the collectors into /stats (``otel_pipeline/_wiring.py``).
"""

from __future__ import annotations

from otel_pipeline._internal.probes import Outcome
from otel_pipeline.hooks.health.checks import check_components, register_health_check, unregister_health_check
from otel_pipeline.hooks.health.collectors import (
    collect_stats,
    collector_names,
    register_collector,
    unregister_collector,
)
from otel_pipeline.hooks.health.refresh_jobs import RefreshJob, refresh_job
from otel_pipeline.hooks.health.report import health_components
from otel_pipeline.hooks.health.targets import TARGET_STATUSES, HealthTarget, health_target

__all__ = [
    "TARGET_STATUSES",
    "HealthTarget",
    "Outcome",
    "RefreshJob",
    "collect_stats",
    "collector_names",
    "health_components",
    "health_target",
    "refresh_job",
    "register_collector",
    "register_health_check",
    "unregister_collector",
    "unregister_health_check",
]

#: The checks' components, by the name the health tests use.
_check_components = check_components
