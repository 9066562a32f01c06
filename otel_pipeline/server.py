"""The HTTP server that serves ``/metrics``, ``/health``, ``/stats`` and the page (public names).

The machinery lives in ``otel_pipeline/_internal/server.py``; this module keeps its public names.

>>> import urllib.request
>>> server = MetricsServer("127.0.0.1", 0)
>>> server.add_route("/hello", lambda path, headers: json_response(200, {"hello": "world"}))
>>> server.start()
>>> urllib.request.urlopen(f"{server.url}/hello").read()
b'{"hello": "world"}'
>>> server.stop()
"""

from __future__ import annotations

from otel_pipeline._internal.server import (
    MetricsServer,
    Response,
    ResponseCache,
    Route,
    json_response,
    wire_response,
)

__all__ = ["MetricsServer", "Response", "ResponseCache", "Route", "json_response", "wire_response"]
