"""gunicorn and uvicorn workers serve one /metrics with the exact totals, with no setup.

The apps (tests/integration/workers/) call ``op.configure(prometheus_port=N)`` at import, as a new
user would; every worker (and with ``--preload`` the master) configures the same port.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.worker_group import clean_environment, group_sockets, health, refused, totals
from tests.support import free_port, port_open, wait_until
from tests.support.http import request

BIN = os.path.dirname(sys.executable)
EVENTS = "events_processed_total"
REQUESTS = "http_server_request_duration_seconds_count"


class Server:
    """A pre-forking server on ``app_port`` whose group serves /metrics on ``port``."""

    def __init__(self, command: list[str], port: int, app_port: int, processes: int) -> None:
        self.port = port
        self.app_port = app_port
        self.process = subprocess.Popen(
            command,
            env=clean_environment(port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until(lambda: port_open(app_port), timeout=60, what="the app port")
            wait_until(
                lambda: len(health(port)["group"]["processes"]) == processes, timeout=60, what="the group"
            )
        except BaseException:
            self.kill()
            raise

    def get(self, count: int, path: str = "/hello") -> list[int]:
        """``count`` requests, one connection each; the pid of the worker that answered each."""
        return [int(request(f"http://127.0.0.1:{self.app_port}{path}").body) for _ in range(count)]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@contextlib.contextmanager
def serving(kind: str, *options: str, processes: int) -> Iterator[Server]:
    port, app_port = free_port(), free_port()
    if kind == "gunicorn":
        command = [f"{BIN}/gunicorn", "-w", "3", "-b", f"127.0.0.1:{app_port}", "--no-control-socket"]
        command += [*options, "tests.integration.workers.wsgi_app:app"]
    else:
        command = [f"{BIN}/uvicorn", "--host", "127.0.0.1", "--port", str(app_port), *options]
        command += ["tests.integration.workers.asgi_app:app"]
    server = Server(command, port, app_port, processes)
    try:
        yield server
    finally:
        server.kill()
    # Nothing left once the processes are gone (the workers are reaped a moment after the master).
    wait_until(lambda: group_sockets(port) == [], timeout=30, what="the group's sockets to go")
    assert refused(port)


def assert_counts(port: int, expected: int) -> None:
    """The group's totals are exactly ``expected`` (never more on the way there).

    A scrape that races a worker's exit (recycled after its 40th request) may be behind by that
    worker's last requests, for as long as its final hand-over takes to arrive; the next is exact.
    """
    seen: list[tuple[float, float]] = []

    def exact() -> bool:
        found = totals(port)
        seen.append((found.get(EVENTS, 0.0), found.get(REQUESTS, 0.0)))
        return seen[-1] == (expected, expected)

    wait_until(exact, timeout=10, interval=0.2, what=f"exactly {expected} requests on /metrics")
    assert all(events <= expected and requests <= expected for events, requests in seen)


class Watcher:
    """Scrapes the group's /metrics over and over in a thread, while workers recycle.

    Counters must never go backwards from one scrape to the next: not when a worker leaves, nor
    when the serving worker hands the port over to another.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            found = totals(self.port)
            self.seen.append((found.get(EVENTS, 0.0), found.get(REQUESTS, 0.0)))

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()
        return self.seen


def assert_monotonic(seen: list[tuple[float, float]]) -> None:
    backwards = [(a, b) for a, b in itertools.pairwise(seen) if b[0] < a[0] or b[1] < a[1]]
    assert not backwards, f"counters went backwards between scrapes: {backwards[:5]} of {len(seen)} scrapes"


def _terminate_a_worker(pids: list[int], master: int) -> int | None:
    """SIGTERM a member that is still running (one recycled a moment ago may still be listed)."""
    for pid in pids:
        if pid == master:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        return pid
    return None


@pytest.mark.integration
@pytest.mark.parametrize("preload", [False, True], ids=["per-worker", "preload"])
def test_gunicorn_sync_workers_recycled_every_40_requests(preload: bool) -> None:
    """Without --preload every worker recycles at about the same time (no jitter): the serving one
    hands the port over while others leave and their replacements join."""
    options = ["--max-requests", "40", *(["--preload"] if preload else [])]
    with serving("gunicorn", *options, processes=4 if preload else 3) as server:
        watcher = Watcher(server.port)
        pids = server.get(200)
        assert len(set(pids)) >= 5  # each worker serves 40 at most: 5 lifetimes at least
        assert_counts(server.port, 200)
        seen = watcher.stop()
        assert len(seen) >= 20
        assert_monotonic(seen)
        assert seen[-1] == (200, 200)
        # SIGTERM of a worker mid-run: it finishes, hands over, and gunicorn starts another.
        wait_until(
            lambda: len(health(server.port)["group"]["processes"]) == (4 if preload else 3), timeout=30
        )
        victim = wait_until(
            lambda: _terminate_a_worker(health(server.port)["group"]["processes"], server.process.pid),
            timeout=30,
            what="a live worker of the group to terminate",
        )
        wait_until(
            lambda: victim not in health(server.port)["group"]["processes"],
            timeout=30,
            what=f"worker {victim} to leave the group",
        )
        server.get(40)
        assert_counts(server.port, 240)
        # 240 requests, at most 40 per worker lifetime, at most 3 live workers: 3 lifetimes ended at least.
        assert health(server.port)["group"]["departed"] >= 3
        assert server.stop() == 0


@pytest.mark.integration
def test_gunicorn_serving_worker_killed_another_takes_the_port() -> None:
    with serving("gunicorn", processes=3) as server:
        pids = server.get(60)
        hub = health(server.port)["group"]["hub"]
        os.kill(hub, signal.SIGKILL)

        def new_hub() -> dict[str, Any] | None:
            body = health(server.port)
            return body if body["group"]["hub"] != hub else None

        after = wait_until(new_hub, timeout=15, what="another worker serving the port")
        wait_until(lambda: len(health(server.port)["group"]["processes"]) == 3, timeout=60)
        # The killed hub's own totals are gone with it (a counter reset); every live worker's stay.
        survivors = sum(1 for pid in pids if pid != hub)
        assert_counts(server.port, survivors)
        assert after["group"]["hub"] in after["group"]["processes"]
        server.get(10)
        assert_counts(server.port, survivors + 10)


@pytest.mark.integration
def test_gunicorn_gthread_workers_and_a_breaker_open_in_one_of_them() -> None:
    options = ["--worker-class", "gthread", "--threads", "4"]
    with serving("gunicorn", *options, processes=3) as server:
        with ThreadPoolExecutor(8) as pool:  # concurrent requests: the workers' threads serve them
            pids = [pid for batch in pool.map(lambda _: server.get(25), range(8)) for pid in batch]
        assert len(pids) == 200
        assert_counts(server.port, 200)
        # /health of the group: the breaker open in the worker that served /breaker shows.
        opened = server.get(1, "/breaker")[0]

        # As of that worker's next hand-over: the one the /health request asks for, or (when the
        # worker answers slower than the scrape waits) the periodic one a second later.
        def breaker_shows() -> dict[str, Any] | None:
            found = health(server.port)
            return found if "circuit_breaker:payments" in found["components"] else None

        body = wait_until(breaker_shows, timeout=10, what="the open breaker on the group's /health")
        breaker = body["components"]["circuit_breaker:payments"]
        assert breaker["status"] == "degraded"
        assert breaker["state"] == "open"
        assert breaker["processes"] == {str(opened): "degraded"}
        assert body["status"] == "degraded"
        assert len(body["group"]["processes"]) == 3
        assert opened in body["group"]["processes"]
        assert sorted(body["components"]["exporter"]["processes"]) == sorted(
            str(pid) for pid in body["group"]["processes"]
        )
        assert server.stop() == 0


@pytest.mark.integration
def test_uvicorn_two_workers() -> None:
    with serving("uvicorn", "--workers", "2", processes=2) as server:
        pids = server.get(100)
        assert len(set(pids)) == 2
        assert_counts(server.port, 100)
        body: Any = health(server.port)
        assert body["status"] == "healthy"
        assert sorted(body["components"]["exporter"]["processes"]) == sorted(str(p) for p in set(pids))
