"""What ``/health`` reports of the health hook's registered checks (run now).

Targets with results and refresh jobs report through the hook base (their ``_health``), with
the other hooks that report (breakers): ``_internal/hook.py``'s ``hook_health``.

>>> from otel_pipeline.testing import Capture
>>> import otel_pipeline as op
>>> with Capture() as capture:
...     op.register_health_check("db", lambda: False, ttl=0)
...     [(name, status) for name, status, _ in health_components(capture.pipeline)]
...     op.unregister_health_check("db")
[('db', 'unhealthy')]
"""

from __future__ import annotations

from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.wiring import HealthComponent
from otel_pipeline.hooks.health.checks import check_components

__all__ = ["health_components"]


def health_components(pipeline: Runtime) -> list[HealthComponent]:
    """/health: the registered checks, run now (after the hooks' components: a check wins a name)."""
    return check_components()
