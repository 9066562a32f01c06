"""The OTLP receiver is down or hangs: the program runs on, nothing raises, shutdown keeps its bound."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

import otel_pipeline as op
from tests.support import free_port
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

PROTOCOLS = ["grpc", "http/protobuf"]
EXPORT_TIMEOUT = 1.0
#: The documented bound of shutdown(): export_timeout + 2 s.
BOUND = EXPORT_TIMEOUT + 2.0
#: Room for a loaded CI machine to schedule the threads; the bound itself is what is checked.
SLACK = 1.5


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts TCP connections and never answers: the worst receiver there is."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def refused_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def run_workload(seconds: float) -> int:
    """Record for ``seconds`` like a busy worker; returns how many jobs were processed."""
    q = op.queue("emails")
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        q.enqueued()
        with q.processing():
            done += 1
        time.sleep(0.001)
    return done


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("receiver", ["refused", "silent"])
def test_program_runs_on_and_shutdown_keeps_its_bound(
    protocol: str, receiver: str, silent_endpoint: str
) -> None:
    endpoint = refused_endpoint() if receiver == "refused" else silent_endpoint
    op.configure(
        service_name="orders",
        exporter="otlp",
        otlp_endpoint=endpoint,
        otlp_protocol=protocol,
        export_interval=0.2,
        export_timeout=EXPORT_TIMEOUT,
    )
    processed = run_workload(1.0)  # several export attempts fail meanwhile
    assert processed > 0
    started = time.monotonic()
    result = op.shutdown()
    elapsed = time.monotonic() - started
    assert isinstance(result, bool)
    assert elapsed < BOUND + SLACK, f"shutdown took {elapsed:.2f} s, bound {BOUND} s"
    assert op.shutdown() is True  # idempotent, immediate


def test_recovers_when_the_receiver_comes_back(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.refuse_with = 503
    op.configure(
        service_name="orders",
        exporter="otlp",
        otlp_endpoint=otlp_receiver.http_endpoint,
        otlp_protocol="http/protobuf",
        export_interval=0.2,
        export_timeout=EXPORT_TIMEOUT,
    )
    op.queue("emails").enqueued(2)
    time.sleep(0.5)  # exports are refused meanwhile
    assert otlp_receiver.metrics_requests == []
    otlp_receiver.refuse_with = None
    op.queue("emails").enqueued(3)
    # Cumulative temporality: the first export that gets through carries everything.
    point = otlp_receiver.wait_for_point(
        "queue.jobs.enqueued", {"queue.name": "emails"}, lambda p: p.value == 5
    )
    assert point.resource["service.name"] == "orders"


def test_interpreter_exit_keeps_the_bound_when_the_receiver_hangs(silent_endpoint: str) -> None:
    code = textwrap.dedent(
        f"""
        import time
        import otel_pipeline as op
        op.configure(service_name="exit", exporter="otlp", otlp_endpoint={silent_endpoint!r},
                     export_interval=0.2, export_timeout={EXPORT_TIMEOUT})
        op.queue("emails").enqueued(3)
        time.sleep(0.5)
        print("exiting", time.monotonic(), flush=True)
        """
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=environ, check=False
    )
    finished = time.monotonic()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    exiting = float(done.stdout.split()[1])  # time.monotonic() is system-wide on Linux
    assert finished - exiting < BOUND + SLACK, f"exit took {finished - exiting:.2f} s, bound {BOUND} s"
