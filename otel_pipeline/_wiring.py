"""The wiring every pipeline is built with: the hooks' /health sources and the /stats routes.

The package hands it to the runtime (``_internal/runtime.py``, ``DEFAULT_WIRING``) when it is
imported; ``_internal`` itself never imports the hooks. See ``_internal/wiring.py``.

>>> [source.__module__ for source in default_wiring().health_sources]
['otel_pipeline.hooks.breaker', 'otel_pipeline.hooks.health.report']
"""

from __future__ import annotations

from otel_pipeline._internal.stats import Collectors, stats_routes
from otel_pipeline._internal.wiring import Wiring
from otel_pipeline.hooks import breaker, health

__all__ = ["default_wiring"]


def default_wiring() -> Wiring:
    """Breakers and the health hook report to /health (in that order); /stats runs the collectors."""
    return Wiring(
        health_sources=(breaker._health, health.health_components),
        route_installers=(stats_routes(Collectors(health.collect_stats, health.collector_names)),),
    )
