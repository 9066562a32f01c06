"""``GET /``: the live page, a static HTML file and its script, served from the package's data.

The page reads only the public JSON endpoints (``/health``, ``/stats``, ``/trends``) from the
browser, every 2 seconds, so it shows whatever the server behind the port serves there. The
files are read once and their responses pinned in the snapshot cache (sent from the selector
thread). See docs/hooks/health.md.
"""

from __future__ import annotations

from importlib import resources

from otel_pipeline._internal.server import MetricsServer, Response, Route
from otel_pipeline._internal.snapshot import SnapshotCache

__all__ = ["ASSETS", "asset", "install_page"]

#: Path served -> (file in otel_pipeline/static, content type).
ASSETS = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
}


def asset(path: str) -> Response:
    """The response for one of :data:`ASSETS`."""
    name, content_type = ASSETS[path]
    return 200, content_type, (resources.files("otel_pipeline") / "static" / name).read_bytes()


def install_page(server: MetricsServer, cache: SnapshotCache | None = None) -> None:
    """Serve the page's files on ``server`` (and from ``cache``, prepared once)."""
    for path in ASSETS:
        response = asset(path)
        server.add_route(path, _fixed(response))
        if cache is not None:
            cache.pin(path, response)


def _fixed(response: Response) -> Route:
    def route(path: str, headers: dict[str, str]) -> Response:
        return response

    return route
