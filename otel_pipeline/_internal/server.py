"""The one HTTP server: ``/metrics``, ``/health`` and whatever routes the pipeline is built with.

Bound to 127.0.0.1 by default, stdlib only, and bounded whatever the clients do:

- one selector thread accepts connections (listen backlog 1024) and reads request heads without
  blocking; a connection costs a worker only once its whole request head has arrived, so idle
  keep-alive connections and slow senders (slowloris) hold no thread;
- a fixed pool of worker threads answers complete requests; a bounded queue feeds them, and when
  it is full (or ``max_connections`` are open) the answer is ``503`` with ``Retry-After: 1``;
- a request head must arrive within ``head_timeout`` seconds, an idle keep-alive connection is
  closed after ``idle_timeout`` seconds, a response must be written within ``io_timeout``.

``GET`` and ``HEAD`` (same headers, no body); 405 for other methods, 404 for unknown paths. A
request body (``Content-Length``) is read and discarded, 413 when over ``max_body`` bytes; a
chunked body is refused with 411. ``/metrics`` speaks the Prometheus text format, or OpenMetrics
when the scraper's ``Accept`` header asks for it. A forked child closes every socket of the
parent's servers (they belong to the parent), so the parent's ``stop()`` releases the port.

A server can be given a :class:`ResponseCache` (``server.cache``; ``_internal/snapshot.py`` is
the one configure() installs): a plain ``GET``/``HEAD`` of a path the cache has a fresh response
for is answered from the selector thread itself, with bytes prepared once (no worker, no
request parsing beyond the request line, no header building). Anything else goes to a worker.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import http
import os
import queue
import re
import selectors
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import urlsplit

from otel_pipeline._internal import strict_json
from otel_pipeline._internal.errors import logger, warn_once

__all__ = ["MetricsServer", "Response", "ResponseCache", "Route", "json_response", "wire_response"]

#: (status code, content type, body)
Response = tuple[int, str, bytes]
#: A route handler gets the path (without query) and the request headers.
Route = Callable[[str, dict[str, str]], Response]

SERVER_NAME = "otel-pipeline"
#: The largest request head (request line and headers) accepted; 431 beyond.
MAX_HEAD = 65536
#: How long a closing connection is drained so the client reads the response before any reset.
_LINGER = 2.0
_ALLOWED = "GET, HEAD"
#: A request line the selector may answer from the cache (method, path), and the headers that send
#: a request to a worker all the same: a body, an expectation, an upgrade, "Connection: close".
_PLAIN_REQUEST = re.compile(rb"(GET|HEAD) (/[^ ?\r\n]*)[^ \r\n]* HTTP/1\.1\r\n")
_WORKER_HEADER = re.compile(
    rb"\n(?:content-length|transfer-encoding|expect|upgrade)[ \t]*:|\nconnection[ \t]*:[^\n]*close",
    re.IGNORECASE,
)
#: A worker waits this long for a keep-alive client's next request before handing the connection
#: back to the selector, and serves at most _BURST requests in a row that way (fairness).
_KEEP_WAIT = 0.005
_BURST = 8


def json_response(status: int, payload: Any) -> Response:
    """A JSON response with the given status.

    >>> json_response(404, {"error": "not found"})
    (404, 'application/json', b'{"error": "not found"}')
    """
    return status, "application/json", strict_json.dumps(payload, sort_keys=True).encode()  # never NaN


def wire_response(
    status: int, content_type: str, body: bytes, date: float | None = None
) -> tuple[bytes, bytes]:
    """The bytes of a keep-alive response to ``GET`` and to ``HEAD``, headers as the workers send them.

    ``date`` (Unix seconds, default now) is the ``Date`` header: for a cached response, when it was made.

    >>> get, head = wire_response(200, "text/plain", b"hi", date=0)
    >>> head.decode().splitlines()[1:4]
    ['Server: otel-pipeline', 'Date: Thu, 01 Jan 1970 00:00:00 GMT', 'Content-Type: text/plain']
    >>> get == head + b"hi"
    True
    """
    reason = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\nServer: {SERVER_NAME}\r\n"
        f"Date: {email.utils.formatdate(date, usegmt=True)}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    return head + body, head


class ResponseCache(Protocol):
    """Prepared responses the selector thread sends as they are (see ``_internal/snapshot.py``)."""

    def lookup(self, path: str, now: float) -> tuple[bytes, bytes] | None:
        """The (GET, HEAD) bytes for ``path`` if fresh at ``now`` (``time.monotonic()``), else None."""


def _raw_response(status: int, reason: str, payload: dict[str, Any], extra: str = "") -> bytes:
    body = strict_json.dumps(payload, sort_keys=True).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nServer: {SERVER_NAME}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_OVERLOADED = _raw_response(503, "Service Unavailable", {"error": "overloaded"}, "Retry-After: 1\r\n")
_HEAD_TOO_LARGE = _raw_response(431, "Request Header Fields Too Large", {"error": "request head too large"})


class _Connection:
    """A client connection: its socket, bytes read but not yet parsed, and its deadline."""

    __slots__ = ("address", "buffer", "deadline", "lingering", "output", "sock")

    def __init__(self, sock: socket.socket, address: Any, deadline: float) -> None:
        self.sock = sock
        self.address = address
        self.buffer = b""
        self.deadline = deadline
        self.lingering = False
        #: Cached response bytes the selector thread has still to send (the socket buffer was full).
        self.output: memoryview | None = None

    def head_complete(self) -> bool:
        return b"\n\r\n" in self.buffer or b"\n\n" in self.buffer


class _Input:
    """The request's ``rfile``: the bytes the selector read first, then the socket, until a deadline."""

    def __init__(self, sock: socket.socket, buffered: bytes, deadline: float) -> None:
        self._sock = sock
        self._buffer = bytearray(buffered)
        self._deadline = deadline

    def _fill(self) -> bool:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request not received in time")
        self._sock.settimeout(remaining)
        data = self._sock.recv(65536)
        self._buffer += data
        return bool(data)

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if 0 <= limit <= len(self._buffer) or not self._fill():
                return self._take(len(self._buffer) if limit < 0 else min(limit, len(self._buffer)))

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(min(size, len(self._buffer)))

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def leftover(self) -> bytes:
        """What arrived after this request (the start of a pipelined next one)."""
        return bytes(self._buffer)

    def close(self) -> None:
        return None


class _Output:
    """The request's ``wfile``: every response must be written within a deadline (slow readers)."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._deadline = time.monotonic() + timeout

    def write(self, data: bytes) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("response not written in time")
        self._sock.settimeout(remaining)
        self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        return None


class MetricsServer:
    """Serves the routes registered on it from its own threads until :meth:`stop`.

    >>> import urllib.request
    >>> server = MetricsServer("127.0.0.1", 0)
    >>> server.add_route("/hello", lambda path, headers: (200, "text/plain", b"hi"))
    >>> server.start()
    >>> urllib.request.urlopen(f"{server.url}/hello").read()
    b'hi'
    >>> server.stop()
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        workers: int = 8,
        queue_size: int = 64,
        max_connections: int = 512,
        head_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        io_timeout: float = 30.0,
        max_body: int = 65536,
        backlog: int = 1024,
        listener: socket.socket | None = None,
    ) -> None:
        self._exact: dict[str, Route] = {}
        self._prefixes: dict[str, Route] = {}
        self.workers = workers
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.io_timeout = io_timeout
        self.max_body = max_body
        #: Fresh prepared responses, answered from the selector thread (None: every request to a worker).
        self.cache: ResponseCache | None = None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            # create_server sets SO_REUSEADDR: the port can be served again at once after stop().
            # A listening socket handed over by another process (a worker group's hub) is served as is.
            self._listener = listener or socket.create_server((host, port), family=family, backlog=backlog)
        except OSError as error:
            raise OSError(
                f"otel_pipeline: cannot serve /metrics on {host}:{port} "
                f"({os.strerror(error.errno) if error.errno else error}); "
                "choose another prometheus_port (0 picks a free one)"
            ) from error
        self._listener.setblocking(False)
        self._address = self._listener.getsockname()
        #: Every accepted socket still open, whoever holds it: stop() and a forked child close them.
        self._open: set[socket.socket] = set()
        #: Guards _open and accept(): a fork waits for it, so no accepted socket escapes the child.
        self._lock = threading.Lock()
        self._work: queue.Queue[_Connection | None] = queue.Queue(queue_size)
        #: Keep-alive connections the workers hand back to the selector, and closing ones to drain.
        self._returns: deque[_Connection] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._stopped = False
        #: Set in a forked child: the sockets were the parent's and are closed; nothing to stop.
        self._abandoned = False
        _SERVERS.add(self)

    @property
    def host(self) -> str:
        return str(self._address[0])

    @property
    def port(self) -> int:
        return int(self._address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Client connections open right now (idle, reading, being answered or closing)."""
        with self._lock:
            return len(self._open)

    def listening_socket(self) -> socket.socket:
        """A duplicate of the listening socket: handed to another process, it keeps the port open."""
        return self._listener.dup()

    def add_route(self, path: str, route: Route, *, prefix: bool = False) -> None:
        """Serve ``path`` (or every path under ``path`` when ``prefix``) with ``route``."""
        (self._prefixes if prefix else self._exact)[path] = route

    def route(self, path: str, *, prefix: bool = False) -> Route | None:
        """The route added for ``path`` (as a prefix when ``prefix``), if any."""
        return (self._prefixes if prefix else self._exact).get(path)

    def resolve(self, path: str) -> Route | None:
        route = self._exact.get(path)
        if route is not None:
            return route
        for prefix, candidate in self._prefixes.items():
            if path.startswith(prefix):
                return candidate
        return None

    def start(self) -> None:
        """Start the selector thread and the worker pool."""
        if self._threads or self._stopped:
            return
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._threads.append(threading.Thread(target=self._loop, name="otel-pipeline-http", daemon=True))
        for index in range(self.workers):
            self._threads.append(
                threading.Thread(target=self._work_loop, name=f"otel-pipeline-http-{index}", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop serving, close open connections and release the port (idempotent)."""
        with self._lock:
            if self._stopped or self._abandoned:
                return
            self._stopped = self._stopping = True
        _SERVERS.discard(self)
        if self._threads:
            self._wake()
            self._threads[0].join(timeout=5)  # the selector closes what it holds
            with self._lock:
                held = list(self._open)
            for sock in held:  # by workers or waiting for one: unblock them
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(queue.Empty):
                while True:
                    waiting = self._work.get_nowait()
                    if waiting is not None:
                        self._close(waiting)
            for _ in self._threads[1:]:
                self._work.put(None)
            for thread in self._threads[1:]:
                thread.join(timeout=5)
            self._threads = []
        with self._lock:
            left = list(self._open)
            self._open.clear()
        for sock in left:
            sock.close()
        for resource in (self._listener, self._wake_r, self._wake_w, self._selector):
            resource.close()

    # -- the selector thread ------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _loop(self) -> None:
        held: dict[socket.socket, _Connection] = {}
        next_sweep = 0.0
        try:
            while not self._stopping:
                events = self._selector.select(timeout=0.25)
                now = time.monotonic()
                for key, _ in events:
                    if key.data is not None:
                        if key.data.output is None:
                            self._readable(held, key.data, now)
                        else:
                            self._writable(held, key.data, now)
                    elif key.fileobj is self._listener:
                        self._accept(held, now)
                    else:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                while self._returns:
                    self._hold(held, self._returns.popleft())
                now = time.monotonic()
                if now >= next_sweep:  # expire idle, slow and lingering connections
                    next_sweep = now + 0.25
                    for connection in [c for c in held.values() if c.deadline <= now]:
                        self._release(held, connection)
                        self._close(connection)
        except Exception:
            logger.exception("http server loop failed; /metrics is no longer served")
        finally:
            for connection in list(held.values()):
                self._release(held, connection)
                self._close(connection)
            while self._returns:
                self._close(self._returns.popleft())

    def _accept(self, held: dict[socket.socket, _Connection], now: float) -> None:
        while True:
            try:
                with self._lock:
                    sock, address = self._listener.accept()
                    self._open.add(sock)
                    count = len(self._open)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    warn_once("http-accept", "http: cannot accept connections: %s", error)
                    time.sleep(0.05)  # out of file descriptors: let some close, do not spin
                return
            sock.setblocking(False)
            connection = _Connection(sock, address, now + self.head_timeout)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if count > self.max_connections:
                self._refuse(held, connection, _OVERLOADED)
            else:
                self._hold(held, connection)

    def _hold(self, held: dict[socket.socket, _Connection], connection: _Connection) -> None:
        """Watch a connection for its next request (or, lingering, for the client's close)."""
        if self._stopping:
            self._close(connection)
            return
        held[connection.sock] = connection
        try:
            self._selector.register(connection.sock, selectors.EVENT_READ, connection)
        except (OSError, ValueError):
            del held[connection.sock]
            self._close(connection)
            return
        if not connection.lingering and connection.buffer:  # pipelined requests already read
            self._advance(held, connection, time.monotonic())

    def _release(self, held: dict[socket.socket, _Connection], connection: _Connection) -> None:
        held.pop(connection.sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(connection.sock)

    def _readable(self, held: dict[socket.socket, _Connection], connection: _Connection, now: float) -> None:
        try:
            data = connection.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._release(held, connection)
            self._close(connection)
            return
        if connection.lingering:
            return  # drained and dropped: the response is sent, the connection closing
        if not connection.buffer:  # a request starts: its head has head_timeout to arrive
            connection.deadline = min(connection.deadline, now + self.head_timeout)
        connection.buffer += data
        self._advance(held, connection, now)

    def _advance(self, held: dict[socket.socket, _Connection], connection: _Connection, now: float) -> None:
        """Answer what is buffered: cached responses here, a request of another kind by a worker."""
        if self.cache is not None and self._answer_cached(held, connection, now):
            return
        if connection.head_complete():
            self._release(held, connection)
            self._dispatch(held, connection)
        elif len(connection.buffer) > MAX_HEAD:
            self._release(held, connection)
            self._refuse(held, connection, _HEAD_TOO_LARGE)

    def _answer_cached(
        self, held: dict[socket.socket, _Connection], connection: _Connection, now: float
    ) -> bool:
        """Send the cached responses of the requests at the start of the buffer, if any.

        The connection is held by the selector (watched for reading). Without blocking: what
        the socket does not take now is sent when it is writable (the connection is then
        watched for writing only, and must drain within ``io_timeout``). True when nothing is
        left for a worker to answer.
        """
        replies = []
        while reply := self._cached_reply(connection.buffer, now):
            replies.append(reply[0])
            connection.buffer = connection.buffer[reply[1] :]
        if not replies:
            return False
        data = replies[0] if len(replies) == 1 else b"".join(replies)
        try:
            sent = connection.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # the client went away
            self._release(held, connection)
            self._close(connection)
            return True
        if sent < len(data):
            connection.output = memoryview(data)[sent:]
            connection.deadline = now + self.io_timeout
            self._selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
            return True
        if not connection.buffer:
            connection.deadline = now + self.idle_timeout
            return True
        connection.deadline = now + self.head_timeout
        # A pipelined request of another kind is for a worker; otherwise wait for the next one.
        return not connection.head_complete()

    def _writable(self, held: dict[socket.socket, _Connection], connection: _Connection, now: float) -> None:
        output = connection.output
        assert output is not None
        try:
            sent = connection.sock.send(output)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._release(held, connection)
            self._close(connection)
            return
        if sent < len(output):
            connection.output = output[sent:]
            return
        connection.output = None
        connection.deadline = now + (self.head_timeout if connection.buffer else self.idle_timeout)
        self._selector.modify(connection.sock, selectors.EVENT_READ, connection)
        if connection.buffer:  # requests that came pipelined with the ones just answered
            self._advance(held, connection, now)

    def _cached_reply(self, buffer: bytes, now: float) -> tuple[bytes, int] | None:
        """(response, request length) when the buffer starts with a request the cache answers.

        Only the plain case: ``GET`` or ``HEAD``, HTTP/1.1, an origin-form target, no body, no
        ``Connection: close``, ``Expect`` or ``Upgrade``: everything else is the workers' job.
        """
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or self.cache is None:
            return None
        line = _PLAIN_REQUEST.match(buffer, 0, end + 2)
        if line is None or _WORKER_HEADER.search(buffer, line.end() - 1, end + 2) is not None:
            return None
        reply = self.cache.lookup(line[2].decode("latin-1"), now)
        if reply is None:
            return None
        return reply[line[1] == b"HEAD"], end + 4

    def _dispatch(self, held: dict[socket.socket, _Connection], connection: _Connection) -> None:
        try:
            self._work.put_nowait(connection)
        except queue.Full:
            self._refuse(held, connection, _OVERLOADED)

    def _refuse(
        self, held: dict[socket.socket, _Connection], connection: _Connection, response: bytes
    ) -> None:
        """Answer from the selector thread without blocking (a fresh socket's buffer takes it), close."""
        with contextlib.suppress(OSError):
            connection.sock.send(response)
        self._linger(connection)
        self._hold(held, connection)

    def _linger(self, connection: _Connection) -> None:
        # Closing with unread input would reset the connection, and a reset can destroy the
        # response before the client reads it: send FIN, drain for a moment, then close.
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_WR)
        connection.lingering = True
        connection.buffer = b""
        connection.deadline = time.monotonic() + _LINGER

    def _close(self, connection: _Connection) -> None:
        with self._lock:
            self._open.discard(connection.sock)
        connection.sock.close()

    # -- the workers --------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            connection = self._work.get()
            if connection is None:
                return
            try:
                self._serve(connection)
            except Exception:
                self._close(connection)
                self._handle_error(connection.address)

    def _serve(self, connection: _Connection) -> None:
        for _ in range(_BURST):
            head = connection.buffer
            request = _Input(connection.sock, head, time.monotonic() + self.head_timeout)
            handler = _Handler(connection.sock, connection.address, self, request)
            if handler.close_connection:
                self._linger(connection)
                break
            connection.buffer = request.leftover()
            connection.deadline = time.monotonic() + self.idle_timeout
            # A request the cache answers now (its snapshot was just taken): the client's next
            # ones are the selector thread's, so that workers do not contend with it for the GIL.
            if self.cache is not None and self._cached_reply(head, time.monotonic()) is not None:
                break
            if not self._next_request_now(connection):
                break
        connection.sock.setblocking(False)
        self._returns.append(connection)
        self._wake()

    def _next_request_now(self, connection: _Connection) -> bool:
        """Whether the connection's next request is already here (or within a few milliseconds).

        A busy keep-alive client (a load test, a scraper of several endpoints) then stays with its
        worker, without the round trip through the selector thread; anything slower goes back.
        """
        while not connection.head_complete():
            try:
                connection.sock.settimeout(_KEEP_WAIT)
                data = connection.sock.recv(65536)
            except OSError:  # the timeout, or an error the selector will see again
                return False
            if not data or len(connection.buffer) + len(data) > MAX_HEAD:
                connection.buffer += data
                return False
            connection.buffer += data
        return not self._stopping

    def _handle_error(self, client_address: Any) -> None:
        """Log an error serving a client: at debug level when the client went away (routine)."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("http: client %s disconnected: %r", client_address, error)
        else:
            logger.exception("error serving %s", client_address)

    # -- fork ---------------------------------------------------------------------------------

    def _abandon(self) -> None:
        """In a forked child: close (never shut down: they are shared) every socket of the parent's server."""
        self._lock = threading.Lock()
        self._abandoned = self._stopping = True
        self._threads = []
        for sock in [*self._open, self._listener, self._wake_r, self._wake_w]:
            with contextlib.suppress(OSError):
                sock.close()
        self._open.clear()
        self._returns.clear()
        with contextlib.suppress(OSError):
            self._selector.close()


class _Handler(BaseHTTPRequestHandler):
    """Answers exactly one request whose head has arrived; the server decides what comes next."""

    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    sys_version = ""
    _headers_buffer: list[bytes]

    def __init__(self, sock: socket.socket, address: Any, server: MetricsServer, request: _Input) -> None:
        self._input = request
        self._metrics_server = server
        super().__init__(sock, address, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = self._input  # type: ignore[assignment]
        self.wfile = _Output(self.request, self._metrics_server.io_timeout)  # type: ignore[assignment]

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def finish(self) -> None:
        return None

    def version_string(self) -> str:
        return SERVER_NAME  # no Python version: nothing for a scanner to match

    def do_GET(self) -> None:
        if not self._body_read():
            return
        path = urlsplit(self.path).path
        route = self._metrics_server.resolve(path)
        if route is None:
            self._send(*json_response(404, {"error": "not found", "path": path}))
            return
        try:
            response = route(path, {k.lower(): v for k, v in self.headers.items()})
        except Exception:
            logger.exception("handler for %s failed", path)
            response = json_response(500, {"error": "internal error"})
        self._send(*response)

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        if self._body_read():
            self.close_connection = True
            self._send(*json_response(405, {"error": "method not allowed", "allowed": ["GET", "HEAD"]}))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _body_read(self) -> bool:
        """Read and drop the request's body, so it is never parsed as the next request."""
        if self.headers.get("Transfer-Encoding"):
            self._refuse(411, {"error": "a request body needs Content-Length"})
            return False
        raw = self.headers.get("Content-Length")
        if raw is None:
            return True
        if not raw.strip().isdigit():
            self._refuse(400, {"error": "bad Content-Length"})
            return False
        length = int(raw)
        if length > self._metrics_server.max_body:
            self._refuse(413, {"error": "request body too large", "max_bytes": self._metrics_server.max_body})
            return False
        if len(self._input.read(length)) < length:
            self.close_connection = True  # the client went away mid-body
            return False
        return True

    def _refuse(self, status: int, payload: dict[str, Any]) -> None:
        self.close_connection = True
        self._send(*json_response(status, payload))

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 405:
            self.send_header("Allow", _ALLOWED)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Head and body in one write: one segment on the wire for small responses.
        self._headers_buffer.append(b"\r\n")
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)


#: Every server not yet stopped, for the fork handlers.
_SERVERS: weakref.WeakSet[MetricsServer] = weakref.WeakSet()
_forking: list[MetricsServer] = []


def _before_fork() -> None:
    # Hold every server's lock across fork(): no socket is between accept() and _open then.
    _forking[:] = list(_SERVERS)
    for server in _forking:
        server._lock.acquire()


def _after_fork_in_parent() -> None:
    for server in _forking:
        server._lock.release()
    _forking.clear()


def _after_fork_in_child() -> None:
    for server in list(_SERVERS):
        server._abandon()
    _forking.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
