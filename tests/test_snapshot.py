"""The snapshot cache of /health, /stats, /stats/{name}, /trends, and the selector's answers from it."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

import otel_pipeline as op
from otel_pipeline._internal import snapshot
from otel_pipeline._internal.snapshot import SnapshotCache
from otel_pipeline.server import MetricsServer, Response, Route
from tests.support import wait_until
from tests.support.http import request

TIMEOUT = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting_route(calls: list[str]) -> Route:
    def route(path: str, headers: dict[str, str]) -> Response:
        calls.append(path)
        return 200, "application/json", json.dumps({"path": path, "call": len(calls)}).encode()

    return route


# -- the cache itself --------------------------------------------------------------------------


def test_a_snapshot_is_served_for_max_age_seconds_then_computed_again() -> None:
    clock = Clock()
    cache = SnapshotCache(max_age=1.0, clock=clock)
    calls: list[str] = []
    route = cache.wrap(counting_route(calls))
    assert route("/stats", {}) == (200, "application/json", b'{"path": "/stats", "call": 1}')
    get, head = cache.lookup("/stats", clock.now) or (b"", b"")
    assert get == head + b'{"path": "/stats", "call": 1}'
    assert head.startswith(b"HTTP/1.1 200 OK\r\nServer: otel-pipeline\r\nDate: ")
    assert b"\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n" in head
    clock.now += 1.0  # exactly max_age old: still fresh
    assert route("/stats", {})[2] == b'{"path": "/stats", "call": 1}'
    assert cache.lookup("/stats", clock.now) is not None
    assert cache.lookup("/stats", clock.now + 0.001) is None  # the server's view: stale past max_age
    clock.now += 0.001
    assert route("/stats", {})[2] == b'{"path": "/stats", "call": 2}'
    assert (calls, cache.computed) == (["/stats", "/stats"], 2)
    assert route("/trends", {})[2] == b'{"path": "/trends", "call": 3}'  # per path
    assert (len(cache), cache.size) == (2, 29 + 30)


def test_max_age_zero_computes_every_time() -> None:
    clock = Clock()
    cache = SnapshotCache(max_age=0.0, clock=clock)
    calls: list[str] = []
    route = cache.wrap(counting_route(calls))
    clock.now += 0.5
    route("/x", {})
    clock.now += 0.5
    route("/x", {})
    assert cache.computed == 2
    assert cache.lookup("/x", clock.now + 0.1) is None


def test_concurrent_requests_for_a_stale_path_share_one_computation() -> None:
    cache = SnapshotCache(max_age=60.0)
    release = threading.Event()
    started = threading.Event()
    calls: list[int] = []

    def slow(path: str, headers: dict[str, str]) -> Response:
        calls.append(1)
        started.set()
        assert release.wait(TIMEOUT)
        return 200, "text/plain", f"computed {len(calls)}".encode()

    route = cache.wrap(slow)
    results: list[bytes] = []
    lock = threading.Lock()

    def reader() -> None:
        body = route("/stats", {})[2]
        with lock:
            results.append(body)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    threads[0].start()
    assert started.wait(TIMEOUT)
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: sum(t.is_alive() for t in threads) == 16, timeout=TIMEOUT, what="16 waiting readers")
    release.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert results == [b"computed 1"] * 16
    assert (calls, cache.computed) == ([1], 1)


def test_a_failed_computation_is_not_kept_and_the_next_request_computes() -> None:
    cache = SnapshotCache(max_age=60.0)
    attempts: list[int] = []

    def flaky(path: str, headers: dict[str, str]) -> Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("collection failed")
        return 200, "text/plain", b"ok"

    route = cache.wrap(flaky)
    with pytest.raises(RuntimeError, match="collection failed"):
        route("/health", {})
    assert (len(cache), cache.lookup("/health", 0.0), cache._computing) == (0, None, {})
    assert route("/health", {})[2] == b"ok"
    assert len(attempts) == 2


def test_the_cache_is_bounded_in_paths_and_bytes_oldest_first() -> None:
    clock = Clock()
    cache = SnapshotCache(max_age=60.0, max_entries=3, max_bytes=25, clock=clock)
    route = cache.wrap(lambda path, headers: (404, "application/json", path.encode().ljust(10)))
    for name in ("a", "b", "c", "d"):
        route(f"/stats/{name}", {})
    assert list(cache._snapshots) == ["/stats/c", "/stats/d"]  # 3 paths, but 25 bytes hold 2 bodies
    assert cache.size == 20
    assert set(cache._computing) <= {"/stats/c", "/stats/d"}
    route("/stats/c", {})  # fresh: served, not moved
    clock.now += 61
    route("/stats/c", {})  # recomputed: now the newest
    route("/stats/e", {})
    assert list(cache._snapshots) == ["/stats/c", "/stats/e"]


def test_close_drops_every_snapshot_and_keeps_no_more() -> None:
    cache = SnapshotCache(max_age=60.0)
    calls: list[str] = []
    route = cache.wrap(counting_route(calls))
    cache.pin("/", (200, "text/html", b"<html></html>"))
    route("/stats", {})
    cache.close()
    assert (len(cache), cache.size, cache.lookup("/stats", 0.0)) == (0, 0, None)
    assert route("/stats", {})[2] == b'{"path": "/stats", "call": 2}'
    assert route("/stats", {})[2] == b'{"path": "/stats", "call": 3}'  # computed each time now
    assert len(cache) == 0
    pinned = cache.lookup("/", 0.0)
    assert pinned is not None
    assert pinned[0].endswith(b"\r\n\r\n<html></html>")


def test_pinned_responses_never_go_stale_and_head_has_no_body() -> None:
    cache = SnapshotCache(max_age=0.0)
    cache.pin("/page.js", (200, "text/javascript", b"go()"))
    get, head = cache.lookup("/page.js", 1e12) or (b"", b"")
    assert get == head + b"go()"
    assert head.endswith(b"Content-Type: text/javascript\r\nContent-Length: 4\r\n\r\n")


# -- configure(): the endpoints served from snapshots ------------------------------------------


@pytest.fixture
def long_lived(monkeypatch: pytest.MonkeyPatch) -> tuple[MetricsServer, SnapshotCache]:
    """A configured server whose snapshots live a minute: staleness shows without timing."""
    monkeypatch.setattr(snapshot, "MAX_AGE", 60.0)
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    assert pipeline.server is not None
    cache = pipeline.server.cache
    assert isinstance(cache, SnapshotCache)
    return pipeline.server, cache


def stats_value(url: str, name: str = "emails") -> int:
    body = json.loads(request(f"{url}/stats").body)
    return int(body["hooks"]["queue"][name]["queue.jobs.enqueued"]["value"])


def test_readers_see_the_snapshot_until_it_is_max_age_old(
    long_lived: tuple[MetricsServer, SnapshotCache],
) -> None:
    server, cache = long_lived
    queue = op.queue("emails")
    queue.enqueued(3)
    assert stats_value(server.url) == 3
    queue.enqueued(4)
    assert stats_value(server.url) == 3  # the snapshot, not yet a minute old
    assert (
        json.loads(request(f"{server.url}/stats/emails").body)["hooks"]["queue"]["emails"][
            "queue.jobs.enqueued"
        ]["value"]
        == 7
    )  # another path: its own snapshot, taken now
    cache.max_age = 0.0
    assert stats_value(server.url) == 7
    assert {"/stats", "/stats/emails"} <= set(cache._snapshots)


def test_head_and_get_from_the_snapshot_agree(long_lived: tuple[MetricsServer, SnapshotCache]) -> None:
    server, cache = long_lived
    op.queue("emails").enqueued(1)
    for path in ("/health", "/stats", "/stats/emails", "/trends", "/"):
        get = request(f"{server.url}{path}")
        head = request(f"{server.url}{path}", method="HEAD")
        assert (get.status, head.status, head.body) == (200, 200, b"")
        for header in ("content-type", "content-length", "server", "date"):
            assert head.headers[header] == get.headers[header], (path, header)
        assert head.headers["content-length"] == str(len(get.body))
    assert cache.computed == 4  # each JSON path once: HEAD came from the same snapshot


def test_a_worker_answers_the_same_bytes_as_the_selector(
    long_lived: tuple[MetricsServer, SnapshotCache],
) -> None:
    server, _ = long_lived
    op.queue("emails").enqueued(1)
    fast = request(f"{server.url}/stats")
    # A body (even empty) sends the request to a worker, which answers from the same snapshot.
    slow = request(f"{server.url}/stats", headers={"Content-Length": "0"}, method="GET")
    assert (slow.status, slow.body) == (fast.status, fast.body)
    assert {k: slow.headers[k] for k in ("content-type", "content-length", "server")} == {
        k: fast.headers[k] for k in ("content-type", "content-length", "server")
    }


def test_registering_a_check_or_collector_shows_at_once(
    long_lived: tuple[MetricsServer, SnapshotCache],
) -> None:
    server, _ = long_lived
    assert request(f"{server.url}/health").status == 200
    op.register_health_check("database", lambda: False)
    try:
        reply = request(f"{server.url}/health")
        assert (reply.status, json.loads(reply.body)["components"]["database"]["status"]) == (
            503,
            "unhealthy",
        )
    finally:
        op.unregister_health_check("database")
    assert request(f"{server.url}/health").status == 200
    op.register_collector("jobs", lambda: {"pending": 5})
    try:
        assert json.loads(request(f"{server.url}/stats").body)["collectors"]["jobs"]["value"] == {
            "pending": 5
        }
    finally:
        op.unregister_collector("jobs")
    assert "jobs" not in json.loads(request(f"{server.url}/stats").body)["collectors"]


def test_shutdown_closes_the_cache(long_lived: tuple[MetricsServer, SnapshotCache]) -> None:
    server, cache = long_lived
    op.queue("emails").enqueued(2)
    assert stats_value(server.url) == 2
    assert len(cache) == 1
    op.shutdown()
    assert (len(cache), cache.lookup("/stats", 0.0)) == (0, None)


# -- the selector's answers ----------------------------------------------------------------------


def read_responses(sock: socket.socket, methods: list[str]) -> list[tuple[bytes, bytes]]:
    """(head, body) of each response to pipelined requests of these methods, in order."""
    buffer = b""
    replies = []

    def more() -> bytes:
        chunk = sock.recv(1 << 20)
        assert chunk, "the server closed the connection"
        return chunk

    for method in methods:
        while b"\r\n\r\n" not in buffer:
            buffer += more()
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        found = re.search(rb"\r\nContent-Length: (\d+)", head)
        assert found is not None
        length = 0 if method == "HEAD" else int(found[1])
        while len(buffer) < length:
            buffer += more()
        replies.append((head, buffer[:length]))
        buffer = buffer[length:]
    assert buffer == b""
    return replies


def until_closed(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def cached_server() -> Iterator[tuple[MetricsServer, SnapshotCache, threading.Event, threading.Event]]:
    """One worker, held by /block until ``release`` is set; /x and /big are cached."""
    server = MetricsServer("127.0.0.1", 0, workers=1, io_timeout=1.0)
    cache = SnapshotCache(max_age=60.0)
    server.cache = cache
    release = threading.Event()
    entered = threading.Event()

    def block(path: str, headers: dict[str, str]) -> Response:
        entered.set()
        release.wait(TIMEOUT)
        return 200, "text/plain", b"unblocked"

    server.add_route("/block", block)
    server.add_route("/x", cache.wrap(lambda path, headers: (200, "text/plain", b"x-body")))
    server.add_route("/big", cache.wrap(lambda path, headers: (200, "text/plain", b"b" * 8_000_000)))
    server.start()
    yield server, cache, entered, release
    release.set()
    server.stop()


Fixture = tuple[MetricsServer, SnapshotCache, threading.Event, threading.Event]


def test_cached_answers_need_no_worker(cached_server: Fixture) -> None:
    server, cache, entered, release = cached_server
    assert request(f"{server.url}/x").body == b"x-body"  # computed by the worker, then cached
    blocked = threading.Thread(
        target=until_closed, args=(server.port, b"GET /block HTTP/1.1\r\nConnection: close\r\n\r\n")
    )
    blocked.start()
    try:
        assert entered.wait(TIMEOUT)
        # The only worker is busy: these are answered by the selector thread, pipelined, in order.
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(
                b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x?q=1 HTTP/1.1\r\n\r\n"
                b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
            )
            replies = read_responses(sock, ["GET", "HEAD", "GET"])
            assert [body for _, body in replies] == [b"x-body", b"", b"x-body"]
            assert all(head.startswith(b"HTTP/1.1 200 OK\r\n") for head, _ in replies)
            sock.sendall(b"GET /x HTTP/1.1\r\n\r\n")  # the connection stays open for more
            assert read_responses(sock, ["GET"])[0][1] == b"x-body"
    finally:
        release.set()
        blocked.join(TIMEOUT)
    assert cache.computed == 1


@pytest.mark.parametrize(
    "head",
    [
        b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: a\r\nCONNECTION:Close\r\n\r\n",
        b"GET /x HTTP/1.0\r\n\r\n",
    ],
)
def test_requests_that_ask_to_close_go_to_a_worker_which_closes(cached_server: Fixture, head: bytes) -> None:
    server, cache, _, _ = cached_server
    assert request(f"{server.url}/x").body == b"x-body"
    reply = until_closed(server.port, head)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\nx-body")
    assert b"\r\nConnection: close\r\n" in reply
    assert cache.computed == 1


def test_a_request_with_a_body_goes_to_a_worker(cached_server: Fixture) -> None:
    server, _, entered, release = cached_server
    assert request(f"{server.url}/x").body == b"x-body"
    blocked = threading.Thread(
        target=until_closed, args=(server.port, b"GET /block HTTP/1.1\r\nConnection: close\r\n\r\n")
    )
    blocked.start()
    try:
        assert entered.wait(TIMEOUT)
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab")
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):  # queued for the busy worker, not answered here
                sock.recv(100)
            release.set()
            sock.settimeout(TIMEOUT)
            assert read_responses(sock, ["GET"])[0][1] == b"x-body"
    finally:
        release.set()
        blocked.join(TIMEOUT)


def test_a_large_cached_body_drains_without_holding_the_selector(cached_server: Fixture) -> None:
    server, cache, _, _ = cached_server
    assert len(request(f"{server.url}/big").body) == 8_000_000
    assert request(f"{server.url}/x").body == b"x-body"
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    try:
        slow.sendall(b"GET /big HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
        assert slow.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
        # The selector has more to send to `slow` and goes on answering others meanwhile.
        for _ in range(3):
            assert request(f"{server.url}/x").body == b"x-body"
        big = cache.lookup("/big", time.monotonic())
        assert big is not None
        rest = len(big[0]) - 4096
        received = b""
        while len(received) < rest:
            received += slow.recv(1 << 20)
        assert received[:rest].endswith(b"b" * 1000)
        slow.settimeout(TIMEOUT)
        pipelined = received[rest:]
        while not pipelined.endswith(b"x-body"):
            pipelined += slow.recv(65536)
        assert pipelined.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        slow.close()


def test_a_client_that_does_not_read_a_cached_body_is_closed_after_io_timeout(cached_server: Fixture) -> None:
    server, _, _, _ = cached_server
    assert len(request(f"{server.url}/big").body) == 8_000_000
    # A small receive buffer, set before connecting: the kernel cannot take the whole body for us.
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    stuck.settimeout(TIMEOUT)
    stuck.connect(("127.0.0.1", server.port))
    try:
        stuck.sendall(b"GET /big HTTP/1.1\r\n\r\n")
        # Accepted first (on a busy machine the server may not have taken it yet), then closed.
        wait_until(lambda: server.open_connections == 1, timeout=TIMEOUT, what="the stuck reader accepted")
        wait_until(
            lambda: server.open_connections == 0, timeout=TIMEOUT, what="the stuck reader to be closed"
        )
        received = 0
        with contextlib.suppress(OSError):  # closed with data unsent: a reset, or an early end
            while chunk := stuck.recv(1 << 20):
                received += len(chunk)
        assert received < 8_000_000
    finally:
        stuck.close()


def test_pipelined_cached_and_other_requests_are_answered_in_order(cached_server: Fixture) -> None:
    server, cache, _, _ = cached_server
    assert request(f"{server.url}/x").body == b"x-body"
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        # The first by the selector, the second (not cached) by a worker, the third by either.
        sock.sendall(b"GET /x HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
        replies = read_responses(sock, ["GET", "GET", "GET"])
    assert [head.split(b"\r\n")[0] for head, _ in replies] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 200 OK",
    ]
    assert replies[1][1] == b'{"error": "not found", "path": "/nothing"}'
    assert [replies[0][1], replies[2][1]] == [b"x-body", b"x-body"]
    assert cache.computed == 1


def test_a_request_after_a_large_cached_body_is_answered_once_the_body_is_sent(
    cached_server: Fixture,
) -> None:
    server, cache, _, _ = cached_server
    assert len(request(f"{server.url}/big").body) == 8_000_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\n")
        replies = read_responses(sock, ["GET", "GET"])
    assert len(replies[0][1]) == 8_000_000
    assert replies[1][0].startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert cache.computed == 1


def test_a_client_gone_while_its_cached_body_is_sent_is_closed(cached_server: Fixture) -> None:
    server, _, _, _ = cached_server
    assert len(request(f"{server.url}/big").body) == 8_000_000
    for _ in range(3):
        gone = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        gone.sendall(b"GET /big HTTP/1.1\r\n\r\n")
        assert gone.recv(1000).startswith(b"HTTP/1.1 200 OK\r\n")
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()  # a reset: the server's next send fails
    wait_until(lambda: server.open_connections == 0, timeout=TIMEOUT, what="the connections to be closed")
    assert request(f"{server.url}/x").body == b"x-body"  # and it goes on serving


def test_the_page_is_also_served_by_a_worker() -> None:
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    assert pipeline.server is not None
    fast = request(f"{pipeline.server.url}/page.js")
    slow = request(f"{pipeline.server.url}/page.js", headers={"Connection": "close"})
    assert (fast.status, slow.status) == (200, 200)
    assert fast.body == slow.body
    assert fast.body.startswith(b"// The live page")
    assert fast.headers["content-type"] == slow.headers["content-type"] == "text/javascript; charset=utf-8"
