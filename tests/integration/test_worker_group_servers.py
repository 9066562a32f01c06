"""gunicorn and uvicorn workers serve one /metrics with the exact totals, with no setup.

The apps (tests/integration/workers/) call ``op.configure(prometheus_port=N)`` at import, as a new
user would; every worker (and with ``--preload`` the master) configures the same port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
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

    def get(self, count: int) -> list[int]:
        """``count`` requests, one connection each; the pid of the worker that answered each."""
        return [int(request(f"http://127.0.0.1:{self.app_port}/hello").body) for _ in range(count)]

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


#: Open defect: without --preload, when every worker reaches --max-requests at the same moment (no
#: jitter, requests spread evenly), the chain of hand-overs between exiting hubs still loses the
#: group's totals in some runs (about 1 in 3 here). With --preload (the master is the hub) it is exact.
_PER_WORKER_RACE = pytest.mark.xfail(
    reason="hand-over race when all gunicorn workers recycle together (see the comment above)", strict=False
)


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
@pytest.mark.parametrize(
    "preload", [pytest.param(False, marks=_PER_WORKER_RACE), True], ids=["per-worker", "preload"]
)
def test_gunicorn_sync_workers_recycled_every_40_requests(preload: bool) -> None:
    options = ["--max-requests", "40", *(["--preload"] if preload else [])]
    with serving("gunicorn", *options, processes=4 if preload else 3) as server:
        pids = server.get(200)
        assert len(set(pids)) >= 5  # each worker serves 40 at most: 5 lifetimes at least
        assert_counts(server.port, 200)
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
def test_uvicorn_two_workers() -> None:
    with serving("uvicorn", "--workers", "2", processes=2) as server:
        pids = server.get(100)
        assert len(set(pids)) == 2
        assert_counts(server.port, 100)
        body: Any = health(server.port)
        assert body["status"] == "healthy"
        assert sorted(body["components"]["exporter"]["processes"]) == sorted(str(p) for p in set(pids))
