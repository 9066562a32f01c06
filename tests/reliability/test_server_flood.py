"""The server under a connection flood, overload, slow clients and odd requests stays bounded and serves."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

import otel_pipeline as op
from otel_pipeline.server import MetricsServer
from tests.support import wait_until
from tests.support.http import request

#: A normal client's own socket timeout: the old server (backlog 5, a thread per connection)
#: left clients waiting in connect for a second or more during a flood of this size.
CLIENT_TIMEOUT = 5.0


def http_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("otel-pipeline-http")]


def raw(port: int, data: bytes, timeout: float = CLIENT_TIMEOUT) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def configured() -> MetricsServer:
    pipeline = op.configure(service_name="flood", prometheus_port=0)
    assert pipeline.server is not None
    op.queue("emails").enqueued(3)
    server: MetricsServer = pipeline.server
    return server


def test_a_normal_client_is_served_during_a_flood_with_bounded_threads(configured: MetricsServer) -> None:
    server = configured
    port = server.port
    idle: list[socket.socket] = []
    slow: list[socket.socket] = []
    try:
        for _ in range(250):  # connect and say nothing
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT))
        for index in range(200):  # slowloris: a request head that never ends
            sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
            sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow-{index}: ".encode())
            slow.append(sock)
        wait_until(lambda: server.open_connections == 450, timeout=30, what="450 open connections")
        for sock in slow:
            sock.sendall(b"a")  # still trickling
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
        try:
            for _ in range(3):
                connection.request("GET", "/metrics")
                response = connection.getresponse()
                body = response.read().decode()
                assert response.status == 200
                assert 'queue_jobs_enqueued_total{otel_scope_name="otel_pipeline"' in body
        finally:
            connection.close()
        # The selector thread and the fixed pool, however many connections are open.
        assert len(http_threads()) == 1 + server.workers == 9
    finally:
        for sock in idle + slow:
            sock.close()
    wait_until(lambda: server.open_connections == 0, timeout=30, what="the flood's connections to close")


def test_slow_and_idle_clients_are_closed_after_their_timeouts() -> None:
    server = MetricsServer("127.0.0.1", 0, head_timeout=0.5, idle_timeout=0.5)
    server.add_route("/x", lambda path, headers: (200, "text/plain", b"x"))
    server.start()
    try:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT)
        slow.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n")  # never finished
        kept = http.client.HTTPConnection("127.0.0.1", server.port, timeout=CLIENT_TIMEOUT)
        kept.request("GET", "/x")
        assert kept.getresponse().read() == b"x"
        assert slow.recv(100) == b""  # closed by the server, not by our socket timeout
        assert kept.sock is not None
        assert kept.sock.recv(100) == b""  # the idle keep-alive connection too
        slow.close()
        kept.close()
    finally:
        server.stop()


def test_overload_is_answered_503_with_retry_after() -> None:
    release = threading.Event()
    entered = threading.Event()

    def blocking(path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        entered.set()
        release.wait(30)
        return 200, "text/plain", b"done"

    server = MetricsServer("127.0.0.1", 0, workers=1, queue_size=1)
    server.add_route("/block", blocking)
    server.start()
    results: list[int] = []

    def client() -> None:
        results.append(status_of(raw(server.port, b"GET /block HTTP/1.1\r\nConnection: close\r\n\r\n", 30)))

    try:
        first = threading.Thread(target=client)
        first.start()
        assert entered.wait(30)  # the only worker is busy
        second = threading.Thread(target=client)
        second.start()
        wait_until(lambda: server._work.qsize() == 1, timeout=30, what="the queue to fill")
        refused = raw(server.port, b"GET /block HTTP/1.1\r\n\r\n")
        head, _, body = refused.partition(b"\r\n\r\n")
        head += b"\r\n"
        assert status_of(refused) == 503
        assert b"\r\nRetry-After: 1\r\n" in head
        assert b"\r\nConnection: close\r\n" in head
        assert json.loads(body) == {"error": "overloaded"}
        release.set()
        first.join(30)
        second.join(30)
        assert results == [200, 200]
    finally:
        release.set()
        server.stop()


def test_connections_past_the_limit_are_answered_503() -> None:
    server = MetricsServer("127.0.0.1", 0, max_connections=3)
    server.add_route("/x", lambda path, headers: (200, "text/plain", b"x"))
    server.start()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT) for _ in range(3)]
    try:
        wait_until(lambda: server.open_connections == 3, timeout=30, what="3 open connections")
        assert status_of(raw(server.port, b"GET /x HTTP/1.1\r\n\r\n")) == 503
        idle.pop().close()
        wait_until(lambda: server.open_connections == 2, timeout=30, what="a connection to close")
        assert request(f"{server.url}/x").status == 200
    finally:
        for sock in idle:
            sock.close()
        server.stop()


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1", 0, max_body=100)
    server.add_route("/x", lambda path, headers: (200, "text/plain", b"x-body"))
    server.start()
    yield server
    server.stop()


def test_a_get_body_is_read_and_dropped_not_parsed_as_a_request(server: MetricsServer) -> None:
    # The body looks like a request: the old server answered it as a second one.
    body = b"GET /x HTTP/1.1\r\n\r\n"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=CLIENT_TIMEOUT)
    try:
        connection.request("GET", "/x", body=body, headers={"Content-Length": str(len(body))})
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"x-body")
        connection.request("GET", "/nothing")  # the same connection goes on with the next request
        response = connection.getresponse()
        missing = {"error": "not found", "path": "/nothing"}
        assert (response.status, json.loads(response.read())) == (404, missing)
        assert connection.sock is not None
        connection.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # and nothing else was answered
            connection.sock.recv(100)
    finally:
        connection.close()


def test_pipelined_requests_are_each_answered_once(server: MetricsServer) -> None:
    pipelined = b"GET /x HTTP/1.1\r\n\r\nHEAD /x HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nConnection: close\r\n\r\n"
    replies = raw(server.port, pipelined)
    assert replies.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert replies.count(b"x-body") == 2


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /x HTTP/1.1\r\nContent-Length: 101\r\n\r\n" + b"a" * 101, 413),
        (b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
        (b"GET /x HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ],
)
def test_bodies_too_big_chunked_or_malformed_are_refused_and_closed(
    server: MetricsServer, request_bytes: bytes, status: int
) -> None:
    reply = raw(server.port, request_bytes)
    assert status_of(reply) == status
    assert b"\r\nConnection: close\r\n" in reply.partition(b"\r\n\r\n")[0] + b"\r\n"


def test_head_answers_the_get_headers_without_a_body(configured: MetricsServer) -> None:
    get = request(f"{configured.url}/metrics")
    head = request(f"{configured.url}/metrics", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.body))
    assert request(f"{configured.url}/nothing", method="HEAD").status == 404


def test_the_server_header_names_no_version(configured: MetricsServer) -> None:
    for path in ("/metrics", "/nothing"):
        assert request(f"{configured.url}{path}").headers["server"] == "otel-pipeline"
    assert request(f"{configured.url}/metrics", method="POST").headers["server"] == "otel-pipeline"


def test_a_stats_404_does_not_list_the_names_there_are(configured: MetricsServer) -> None:
    op.cache("users").hit()
    reply = request(f"{configured.url}/stats/nothing-here")
    assert (reply.status, json.loads(reply.body)) == (404, {"error": "not found", "name": "nothing-here"})
    assert b"users" not in reply.body
    assert b"emails" not in reply.body
