"""SIGTERM flushes when the program has no handler of its own, then ends the process as SIGTERM would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

import otel_pipeline as op
from otel_pipeline._internal import signals
from tests.support import free_port
from tests.support.fixtures import otlp_receiver, rotel, rotel_factory
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.rotel import Rotel

__all__ = ["otlp_receiver", "rotel", "rotel_factory"]  # the fixtures, used by name

#: As many operations as the probe that found the loss.
JOBS = 1156

PROGRAM = textwrap.dedent(
    """
    import signal, sys, time
    import otel_pipeline as op

    endpoint, mode, service = sys.argv[1:4]

    def own(signum, frame):
        print("own handler", flush=True)
        sys.exit(3)  # a normal exit: atexit still flushes

    if mode == "own-before":
        signal.signal(signal.SIGTERM, own)
    options = {"handle_sigterm": False} if mode == "opt-out" else {}
    op.configure(service_name=service, exporter="otlp", otlp_endpoint=endpoint,
                 export_interval=3600, export_timeout=5, **options)  # no periodic export
    if mode == "own-after":
        signal.signal(signal.SIGTERM, own)  # replaces ours: the program's own now
    q = op.queue("jobs")
    for _ in range(int(sys.argv[4])):
        q.enqueued()
        with q.processing():
            pass
    print("ready", flush=True)
    while True:
        time.sleep(1)
    """
)


def run_and_terminate(endpoint: str, mode: str, service: str, jobs: int = JOBS) -> tuple[int, str, str]:
    """Start the program, SIGTERM it once it has recorded ``jobs``; (exit status, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COVERAGE_"))}
    if mode == "env-opt-out":
        environ["OTEL_PIPELINE_HANDLE_SIGTERM"] = "false"
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, endpoint, mode, service, str(jobs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stdout, stderr


def totals(receiver: OtlpReceiver, service: str) -> tuple[float, float, int]:
    """(enqueued, processed successfully, spans) that arrived from ``service``."""
    points = [p for p in receiver.all_points() if p.resource["service.name"] == service]
    enqueued = [p.value for p in points if p.metric.name == "queue.jobs.enqueued"]
    processed = [
        p.value
        for p in points
        if p.metric.name == "queue.jobs.processed" and p.attributes.get("outcome") == "success"
    ]
    spans = [s for s in receiver.spans("queue.process jobs") if s.resource["service.name"] == service]
    return max(enqueued, default=0), max(processed, default=0), len(spans)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("mode", "status", "stdout"),
    [
        ("default", -signal.SIGTERM, ""),  # no handler of the program's own: we flush, then SIGTERM
        ("own-before", 3, "own handler\n"),  # the program's handler, untouched: it exits, atexit flushes
        ("own-after", 3, "own handler\n"),  # installed after configure(): it replaced ours
    ],
)
def test_everything_recorded_arrives(
    rotel: Rotel, otlp_receiver: OtlpReceiver, mode: str, status: int, stdout: str
) -> None:
    returncode, out, err = run_and_terminate(rotel.grpc_endpoint, mode, f"sigterm-{mode}")
    assert (returncode, out) == (status, stdout), err
    assert "Traceback" not in err
    service = f"sigterm-{mode}"
    otlp_receiver.wait_for_spans("queue.process jobs", count=JOBS)
    otlp_receiver.wait_for_point(
        "queue.jobs.enqueued", {"queue.name": "jobs"}, lambda p: p.resource["service.name"] == service
    )
    # Exactly what was recorded, once: nothing lost, nothing twice.
    assert totals(otlp_receiver, service) == (JOBS, JOBS, JOBS)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["opt-out", "env-opt-out"])
def test_opted_out_sigterm_ends_at_once_and_delivers_nothing(
    rotel: Rotel, otlp_receiver: OtlpReceiver, mode: str
) -> None:
    # Fewer jobs than a span batch (512), which the span processor would send without a flush.
    returncode, out, err = run_and_terminate(rotel.grpc_endpoint, mode, f"sigterm-{mode}", jobs=500)
    assert (returncode, out) == (-signal.SIGTERM, ""), err
    # A marker sent afterwards through the same collector arrives; the opted-out data never went out.
    returncode, _, err = run_and_terminate(rotel.grpc_endpoint, "default", "marker", jobs=1)
    assert returncode == -signal.SIGTERM, err
    otlp_receiver.wait_for_spans("queue.process jobs", count=1)
    otlp_receiver.wait_for_point("queue.jobs.enqueued", {"queue.name": "jobs"})
    assert totals(otlp_receiver, "marker") == (1, 1, 1)
    assert totals(otlp_receiver, f"sigterm-{mode}") == (0, 0, 0)


@pytest.mark.integration
@pytest.mark.usefixtures("default_disposition")
def test_a_forked_child_flushes_its_own_pipeline_on_sigterm(otlp_receiver: OtlpReceiver) -> None:
    op.configure(service_name="parent", exporter="otlp", otlp_endpoint=otlp_receiver.grpc_endpoint)
    assert signals.installed()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: record, say so, wait for the signal
        try:
            os.close(read_end)
            op.queue("child").enqueued(7)
            os.write(write_end, b"ready")
            time.sleep(60)
        finally:
            os._exit(1)  # reached only if the handler did not end the process
    os.close(write_end)
    assert os.read(read_end, 5) == b"ready"
    os.close(read_end)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGTERM
    point = otlp_receiver.wait_for_point("queue.jobs.enqueued", {"queue.name": "child"})
    assert point.value == 7
    assert point.resource["process.pid"] == pid


# -- when the handler is installed and restored (in process) -------------------------------------


@pytest.fixture
def default_disposition() -> Iterator[None]:
    """SIGTERM at its default disposition for the test, whatever the test runner set."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    op.shutdown()
    signal.signal(signal.SIGTERM, previous)


def configure_otlp(**options: object) -> op.Pipeline:
    return op.configure(
        service_name="signals",
        exporter="otlp",
        otlp_endpoint=f"http://127.0.0.1:{free_port()}",
        export_interval=3600,
        export_timeout=0.5,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.usefixtures("default_disposition")
def test_installed_by_configure_and_restored_by_shutdown() -> None:
    pipeline = configure_otlp()
    assert pipeline.handles_sigterm is True
    assert signals.installed()
    op.shutdown()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _program_handler(signum: int, frame: object) -> None:
    raise AssertionError("not called in this test")


@pytest.mark.usefixtures("default_disposition")
@pytest.mark.parametrize("before", [_program_handler, signal.SIG_IGN])
def test_a_program_that_handles_sigterm_is_never_changed(before: object) -> None:
    signal.signal(signal.SIGTERM, before)  # type: ignore[arg-type]
    assert configure_otlp().handles_sigterm is False
    assert signal.getsignal(signal.SIGTERM) is before
    op.shutdown()
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.usefixtures("default_disposition")
def test_a_handler_installed_later_is_the_programs_and_shutdown_leaves_it() -> None:
    configure_otlp()
    signal.signal(signal.SIGTERM, _program_handler)
    op.shutdown()
    assert signal.getsignal(signal.SIGTERM) is _program_handler


@pytest.mark.usefixtures("default_disposition")
@pytest.mark.parametrize(
    ("options", "environ"),
    [({"handle_sigterm": False}, {}), ({}, {"OTEL_PIPELINE_HANDLE_SIGTERM": "false"})],
)
def test_opt_out(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, object], environ: dict[str, str]
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert configure_otlp(**options).handles_sigterm is False
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.usefixtures("default_disposition")
def test_the_opt_out_variable_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PIPELINE_HANDLE_SIGTERM", "maybe")
    with pytest.raises(
        ValueError, match=r"OTEL_PIPELINE_HANDLE_SIGTERM='maybe' is not valid; use true or false"
    ):
        configure_otlp()
    monkeypatch.delenv("OTEL_PIPELINE_HANDLE_SIGTERM")
    with pytest.raises(ValueError, match=r"handle_sigterm='yes' is not valid; use True or False"):
        configure_otlp(handle_sigterm="yes")


@pytest.mark.usefixtures("default_disposition")
def test_nothing_to_push_installs_nothing() -> None:
    assert op.configure(service_name="scraped", prometheus_port=0).handles_sigterm is False
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.usefixtures("default_disposition")
def test_configure_outside_the_main_thread_installs_nothing() -> None:
    made: list[op.Pipeline] = []
    thread = threading.Thread(target=lambda: made.append(configure_otlp()))
    thread.start()
    thread.join(30)
    assert made[0].handles_sigterm is False
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.usefixtures("default_disposition")
@pytest.mark.parametrize("fails", [False, True])
def test_the_handler_flushes_on_a_thread_then_raises_sigterm_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fails: bool
) -> None:
    events: list[tuple[object, ...]] = []

    def flush() -> None:
        events.append(("flush", threading.current_thread().name, signal.getsignal(signal.SIGTERM)))
        if fails:
            raise RuntimeError("flush broke")

    monkeypatch.setattr(os, "kill", lambda pid, signum: events.append(("kill", pid, signum)))
    monkeypatch.setattr(os, "_exit", lambda code: events.append(("exit", code)))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert signals.install(flush) is True
    signals._on_sigterm(signal.SIGTERM, None)
    for thread in threading.enumerate():
        if thread.name == "otel-pipeline-sigterm":
            thread.join(30)
    monkeypatch.undo()
    # Default disposition first (a second SIGTERM ends at once), the flush, then SIGTERM again.
    assert events == [
        ("flush", "otel-pipeline-sigterm", signal.SIG_DFL),
        ("kill", os.getpid(), signal.SIGTERM),
        ("exit", 128 + signal.SIGTERM),  # only reached because kill was faked
    ]
    assert [r.getMessage() for r in caplog.records if "SIGTERM" in r.getMessage()] == (
        ["flushing on SIGTERM failed"] if fails else []
    )


@pytest.mark.usefixtures("default_disposition")
def test_a_flush_that_never_finishes_does_not_keep_the_process_alive(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = threading.Event()  # a lock copied by a fork while held: nothing would ever release it
    ended = threading.Event()
    events: list[tuple[object, ...]] = []

    def kill(pid: int, signum: int) -> None:
        events.append(("kill", threading.current_thread().name, signum))
        ended.set()

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(os, "_exit", lambda code: events.append(("exit", code)))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert signals.install(stuck.wait, limit=0.2) is True
    signals._on_sigterm(signal.SIGTERM, None)
    assert ended.wait(30)
    stuck.set()  # let the flush thread finish: it ends the process a second time
    for thread in threading.enumerate():
        if thread.name.startswith("otel-pipeline-sigterm"):
            thread.join(30)
    monkeypatch.undo()
    assert events[:2] == [
        ("kill", "otel-pipeline-sigterm-limit", signal.SIGTERM),
        ("exit", 128 + signal.SIGTERM),
    ]
    assert [r.getMessage() for r in caplog.records if "SIGTERM" in r.getMessage()] == [
        "flushing on SIGTERM took longer than 0 s; ending without the rest of it"
    ]
