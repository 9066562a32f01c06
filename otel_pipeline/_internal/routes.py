"""The routes every server gets: /metrics, /health and the page, then those of the pipeline's wiring.

/health asks the pipeline's health sources and the wiring's route installers add the others
(/stats, /trends: ``wiring.py``). The JSON endpoints are then served from snapshots (``snapshot.py``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from otel_pipeline._internal.errors import logger
from otel_pipeline._internal.page import install_page
from otel_pipeline._internal.server import MetricsServer, Response, json_response
from otel_pipeline._internal.snapshot import install_snapshots
from otel_pipeline._internal.validation import safe_repr

if TYPE_CHECKING:
    from otel_pipeline._internal.runtime import Runtime

__all__ = ["health_report", "health_score", "install_default_routes"]

_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}
#: Components listed in /health; past it the worst are listed and "omitted" counts the rest.
LISTED_COMPONENTS = 100


def health_report(pipeline: Runtime) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for /health: 200 when healthy or degraded, 503 when unhealthy.

    Status and score cover every component; the body lists at most :data:`LISTED_COMPONENTS`
    of them, the worst first (the exporter always), with the others counted by status.
    """
    components: dict[str, Any] = {"exporter": pipeline.export_state.component(pipeline.config.exporter)}
    for source in pipeline.wiring.health_sources:
        try:
            reported = list(source(pipeline))
        except Exception as error:  # a broken check is reported, not raised
            logger.debug("health source %r failed", source, exc_info=True)
            reported = [(getattr(source, "__name__", "health"), "unhealthy", {"error": safe_repr(error)})]
        for name, status, details in reported:
            components[name] = {"status": status, **details}
    worst = max((_RANK.get(c["status"], 2) for c in components.values()), default=0)
    status = next(name for name, rank in _RANK.items() if rank == worst)
    body: dict[str, Any] = {
        "status": status,
        "score": health_score(status, components),
        "service": pipeline.config.service_name,
        "components": components,
    }
    if len(components) > LISTED_COMPONENTS:
        body["components"], body["omitted"] = _worst(components)
    return (503 if status == "unhealthy" else 200), body


def _worst(components: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """The exporter and the worst other components, up to the limit; the rest counted by status."""
    first = {name: components[name] for name in ("exporter",) if name in components}
    # Worst first; among equals, in the order the sources reported them (sorted() is stable).
    others = sorted(
        (name for name in components if name not in first),
        key=lambda name: -_RANK.get(components[name]["status"], 2),
    )
    room = LISTED_COMPONENTS - len(first)
    omitted = {"components": len(others) - room}
    for name in others[room:]:
        status = str(components[name]["status"])
        omitted[status] = omitted.get(status, 0) + 1
    return {**first, **{name: components[name] for name in others[:room]}}, omitted


def health_score(status: str, components: dict[str, Any]) -> int:
    """0-100, in the band of the overall status; ``h``/``u``: shares of healthy/unhealthy components.

    healthy: 100; degraded: 50 + floor(39 * h), so 50-89; unhealthy: floor(49 * (1 - u)), so 0-49.
    """
    statuses = [str(c["status"]) for c in components.values()] or ["healthy"]
    healthy = statuses.count("healthy") / len(statuses)
    unhealthy = sum(_RANK.get(s, 2) == 2 for s in statuses) / len(statuses)
    if status == "healthy":
        return 100
    if status == "degraded":
        return 50 + math.floor(39 * healthy)
    return math.floor(49 * (1 - unhealthy))


def install_default_routes(server: MetricsServer, pipeline: Runtime, registry: Any) -> None:
    def metrics(path: str, headers: dict[str, str]) -> Response:
        body, content_type = registry.scrape(headers.get("accept", ""))
        return 200, content_type, body

    def health(path: str, headers: dict[str, str]) -> Response:
        status, body = health_report(pipeline)
        if pipeline.group is not None:  # every member of the worker group counts
            status, body = pipeline.group.health(status, body)
        return json_response(status, body)

    server.add_route("/metrics", metrics)
    server.add_route("/health", health)
    for installer in pipeline.wiring.route_installers:
        installer(server, pipeline)
    install_page(server, install_snapshots(server, pipeline))
