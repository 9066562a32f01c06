"""What a pipeline's server serves besides ``/metrics``: the sources of ``/health``, the extra routes.

Every pipeline is built with a :class:`Wiring` (``runtime.build_pipeline``). The package hands the
runtime its default one (``otel_pipeline/_wiring.py``: the hooks' health sources and the ``/stats``
routes), so nothing in ``_internal`` depends on which hook modules were imported, no route exists
because a module was imported, and a test can build a pipeline wired its own way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_pipeline._internal.runtime import Runtime
    from otel_pipeline._internal.server import MetricsServer

__all__ = ["HealthComponent", "HealthSource", "InstallCallback", "RouteInstaller", "Wiring"]

#: One component of /health: (name, status, details); status is "healthy", "degraded" or "unhealthy".
HealthComponent = tuple[str, str, dict[str, Any]]
#: Reports components for /health on the pipeline it is given.
HealthSource = Callable[["Runtime"], list[HealthComponent]]
#: Adds routes (e.g. /stats) to a new server of the pipeline it is given.
RouteInstaller = Callable[["MetricsServer", "Runtime"], None]
#: Runs when the pipeline it is given becomes the current one (hooks bind what they observe).
InstallCallback = Callable[["Runtime"], None]


@dataclass(frozen=True)
class Wiring:
    """The health sources (asked in order), route installers and install callbacks (run in order).

    >>> Wiring().health_sources, Wiring().route_installers, Wiring().on_install
    ((), (), ())
    """

    health_sources: tuple[HealthSource, ...] = ()
    route_installers: tuple[RouteInstaller, ...] = ()
    on_install: tuple[InstallCallback, ...] = ()
