"""The one HTTP server: ``/metrics``, ``/health`` and whatever routes later hooks add.

Threaded, bound to 127.0.0.1 by default. ``GET`` only (405 otherwise), 404 for unknown paths.
``/metrics`` speaks the Prometheus text format, or OpenMetrics when the scraper's ``Accept``
header asks for it.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from otel_pipeline._internal import strict_json
from otel_pipeline._internal.errors import logger

__all__ = ["MetricsServer", "Response", "Route", "json_response"]

#: (status code, content type, body)
Response = tuple[int, str, bytes]
#: A route handler gets the path (without query) and the request headers.
Route = Callable[[str, dict[str, str]], Response]


def json_response(status: int, payload: Any) -> Response:
    """A JSON response with the given status.

    >>> json_response(404, {"error": "not found"})
    (404, 'application/json', b'{"error": "not found"}')
    """
    return status, "application/json", strict_json.dumps(payload, sort_keys=True).encode()  # never NaN


class MetricsServer:
    """Serves the routes registered on it from a daemon thread until :meth:`stop`.

    >>> import urllib.request
    >>> server = MetricsServer("127.0.0.1", 0)
    >>> server.add_route("/hello", lambda path, headers: (200, "text/plain", b"hi"))
    >>> server.start()
    >>> urllib.request.urlopen(f"{server.url}/hello").read()
    b'hi'
    >>> server.stop()
    """

    def __init__(self, host: str, port: int) -> None:
        self._exact: dict[str, Route] = {}
        self._prefixes: dict[str, Route] = {}
        #: Open client connections, closed by stop() so no keep-alive thread outlives the server.
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        handler = _handler_class(self)
        server_class = _IPv6Server if ":" in host else _Server
        try:
            self._httpd = server_class((host, port), handler)
        except OSError as error:
            raise OSError(
                f"otel_pipeline: cannot serve /metrics on {host}:{port} ({error.strerror or error}); "
                "choose another prometheus_port (0 picks a free one)"
            ) from error
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_route(self, path: str, route: Route, *, prefix: bool = False) -> None:
        """Serve ``path`` (or every path under ``path`` when ``prefix``) with ``route``."""
        (self._prefixes if prefix else self._exact)[path] = route

    def resolve(self, path: str) -> Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for prefix, candidate in self._prefixes.items():
            if path.startswith(prefix):
                return candidate
        return None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="otel-pipeline-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close open connections and release the port (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _track(self, connection: socket.socket, opened: bool) -> None:
        with self._connections_lock:
            if opened:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server whose request errors go to our logger, not to stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the client went away mid-response: routine
            logger.debug("http: client %s disconnected: %r", client_address, error)
        else:
            logger.exception("otel_pipeline: error serving %s", client_address)


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def _handler_class(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "otel-pipeline"
        #: Idle keep-alive connections are closed after this many seconds.
        timeout = 120
        #: TCP_NODELAY: headers and body go out as two writes; with Nagle the second waits for the
        #: client's delayed ACK (~40 ms per keep-alive request; /health went from 157 to 3,190 req/s).
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            server._track(self.connection, True)

        def finish(self) -> None:
            server._track(self.connection, False)
            super().finish()

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            route = server.resolve(path)
            if route is None:
                self._send(*json_response(404, {"error": "not found", "path": path}))
                return
            try:
                response = route(path, {k.lower(): v for k, v in self.headers.items()})
            except Exception:
                logger.exception("otel_pipeline: handler for %s failed", path)
                response = json_response(500, {"error": "internal error"})
            self._send(*response)

        def _not_allowed(self) -> None:
            # The request body is not read: close the connection rather than parse it as a request.
            self.close_connection = True
            self._send(*json_response(405, {"error": "method not allowed", "allowed": ["GET"]}), allow=True)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

        def _send(self, status: int, content_type: str, body: bytes, allow: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if allow:
                self.send_header("Allow", "GET")
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("http: " + format, *args)

    return Handler
