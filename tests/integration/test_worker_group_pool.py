"""Process pools (multiprocessing.Pool, concurrent.futures.ProcessPoolExecutor; fork and spawn) serve one
/metrics with the exact totals.

The pool runs in a program of its own (tests/integration/workers/pool_main.py, executor_main.py),
driven step by step: known numbers of events, workers recycled every 5 tasks, one worker SIGTERMed
and others SIGKILLed mid-run; the test scrapes the group's /metrics between steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from otel_pipeline._internal.group.node import INTERVAL
from tests.integration.worker_group import clean_environment, group_sockets, refused, totals
from tests.support import free_port

EVENTS = "events_processed_total"
DURATIONS = "events_processing_duration_seconds_count"


class Pool:
    """The pool program: one JSON step in, one JSON answer out."""

    def __init__(self, method: str, port: int, program: str = "pool_main.py") -> None:
        self.process = subprocess.Popen(
            [sys.executable, f"tests/integration/workers/{program}", method],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=clean_environment(port),
            start_new_session=True,  # its workers too are stopped if the test fails
        )
        assert self.read() == {"ready": True}

    def read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the pool program ended"
        return json.loads(line)

    def step(self, **step: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(step) + "\n")
        self.process.stdin.flush()
        return self.read()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.mark.integration
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_exact_totals_through_recycling_sigterm_and_sigkill(method: str) -> None:
    port = free_port()
    pool = Pool(method, port)
    try:
        pids = pool.step(do="run", n=40)["pids"]
        assert len(set(pids)) >= 8  # recycled every 5 tasks
        found = totals(port)
        assert found[EVENTS] == 40
        assert found[DURATIONS] == 40

        # SIGTERM: the worker hands over its last totals before it ends.
        killed = pool.step(do="signal", signal=signal.SIGTERM)
        assert killed["exitcode"] == -signal.SIGTERM
        pool.step(do="run", n=20)
        assert totals(port)[EVENTS] == 60

        # SIGKILL after more than the hand-over interval without a scrape: nothing is lost.
        pids = pool.step(do="run", n=20)["pids"]
        pool.step(do="sleep", seconds=3 * INTERVAL)
        killed = pool.step(do="signal", signal=signal.SIGKILL)
        assert killed["exitcode"] == -signal.SIGKILL
        assert totals(port)[EVENTS] == 80

        # SIGKILL right after work: at most what the killed worker did since its last hand-over.
        pids = pool.step(do="run", n=20)["pids"]
        killed = pool.step(do="signal", signal=signal.SIGKILL)
        lost = 100 - totals(port)[EVENTS]
        assert 0 <= lost <= pids.count(killed["pid"])

        assert pool.step(do="end") == {"shutdown": True}
        assert pool.process.wait(timeout=30) == 0
    finally:
        pool.stop()
    assert group_sockets(port) == []  # nothing left behind: no socket, no file
    assert refused(port)


@pytest.mark.integration
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pool_executor_exact_totals(method: str) -> None:
    port = free_port()
    pool = Pool(method, port, "executor_main.py")
    try:
        pids = pool.step(do="run", n=15)["pids"]
        if method == "spawn" and sys.version_info >= (3, 11):
            assert len(set(pids)) == 15  # max_tasks_per_child=1: a worker per task
        found = totals(port)
        assert found[EVENTS] == 15
        assert found[DURATIONS] == 15
        # Every worker exits at once (the executor shut down), and a new executor starts.
        assert pool.step(do="replace") == {}
        assert totals(port)[EVENTS] == 15
        pool.step(do="run", n=10)
        found = totals(port)
        assert found[EVENTS] == 25
        assert found[DURATIONS] == 25
        assert pool.step(do="end") == {"shutdown": True}
        assert pool.process.wait(timeout=30) == 0
    finally:
        pool.stop()
    assert group_sockets(port) == []
    assert refused(port)
