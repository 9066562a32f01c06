"""SIGTERM ends a group member whose main thread waits on a lock (a pool worker between tasks).

Python runs signal handlers in the main thread only; the member's own threads (hand-overs, the
server, resource sampling) are busy meanwhile: the flush must still run and the process end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from tests.support import free_port

PROGRAM = textwrap.dedent(
    """
    import sys, threading
    import otel_pipeline as op

    op.configure(service_name="waiting", prometheus_port=int(sys.argv[1]), trace_sample_rate=0)
    op.monitor_resources(interval=0.05)
    with op.queue("jobs").processing():
        pass
    print("ready", flush=True)
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()  # waits for ever, as a pool worker waits for its next task
    """
)


def test_a_main_thread_waiting_on_a_lock_still_flushes_and_ends_on_sigterm() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COVERAGE_"))}
    environ["OTEL_PIPELINE_STRICT_INTERNAL_ERRORS"] = "1"
    for _ in range(5):  # without the masks, a signal landing on a busy thread hangs ~1 run in 3
        process = subprocess.Popen(
            [sys.executable, "-c", PROGRAM, str(free_port())],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == -signal.SIGTERM
        finally:
            process.kill()
            process.communicate()
