"""The wiring every pipeline is built with: the hooks' /health sources and the /stats routes.

The package hands it to the runtime (``_internal/runtime.py``, ``DEFAULT_WIRING``) when it is
imported; ``_internal`` itself never imports the hooks. See ``_internal/wiring.py``.

>>> [source.__module__ for source in default_wiring().health_sources]
['otel_pipeline._internal.hook', 'otel_pipeline.hooks.health.report']
"""

from __future__ import annotations

from otel_pipeline._internal.hook import bind_at_install, hook_health
from otel_pipeline._internal.stats import Collectors, stats_routes
from otel_pipeline._internal.wiring import Wiring
from otel_pipeline.hooks import health
from otel_pipeline.summary import keep_final_at_shutdown

__all__ = ["default_wiring"]


def default_wiring() -> Wiring:
    """Hooks that report (breakers), then the health hook, give /health; /stats runs the collectors.

    At install, the run summary starts watching the pipeline and hooks bind what they observe.
    """
    return Wiring(
        health_sources=(hook_health, health.health_components),
        route_installers=(stats_routes(Collectors(health.collect_stats, health.collector_names)),),
        on_install=(keep_final_at_shutdown, bind_at_install),
    )
