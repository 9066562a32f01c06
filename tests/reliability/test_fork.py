"""Forked children keep nothing of the parent's server or exporters: the port is free once it stops.

These run with the worker group off (``worker_group=False``): in a group the children are members and
one takes the port over when the parent stops (tests/integration/test_worker_group*.py).
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import otel_pipeline as op
from tests.support import free_port
from tests.support.fixtures import otlp_receiver
from tests.support.http import request
from tests.support.otlp_receiver import OtlpReceiver

__all__ = ["otlp_receiver"]  # the fixture, used by name


def sockets_on(port: int, *, peer_side: bool = False) -> list[tuple[int, Any]]:
    """(local port, peer port) of this process's TCP sockets bound to ``port`` (or connected to it)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=int(name))
        except OSError:
            continue
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
                local = sock.getsockname()[1]
                try:
                    peer = sock.getpeername()[1]
                except OSError:
                    peer = None
                if (peer if peer_side else local) == port:
                    found.append((local, peer))
        finally:
            sock.detach()
    return found


def refused(port: int) -> bool:
    """True when connecting to ``port`` is refused at once (nothing listens)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def _report(port: int) -> list[tuple[int, Any]]:
    return sockets_on(port)


def test_pool_children_alive_do_not_keep_the_port() -> None:
    port = free_port()
    op.configure(service_name="forking", prometheus_port=port, worker_group=False)
    op.queue("emails").enqueued()
    keep_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        keep_alive.request("GET", "/metrics")  # an open client connection when the pool forks
        assert keep_alive.getresponse().read()
        context = multiprocessing.get_context("fork")
        with context.Pool(2) as pool:
            # Both workers are up, and hold no socket of the parent's server.
            held = pool.map(_report, [port] * 8)
            assert held == [[]] * 8
            assert op.shutdown() is True  # the workers are still alive
            assert refused(port)  # not accepted into a child's backlog and left hanging
            pipeline = op.configure(service_name="forking", prometheus_port=port, worker_group=False)
            assert pipeline.prometheus_port == port
            assert request(f"http://127.0.0.1:{port}/metrics").status == 200
            assert all(child.is_alive() for child in multiprocessing.active_children())
    finally:  # also when the test fails: a leaked socket would fail a later test at collection
        keep_alive.close()


def test_os_fork_child_releases_the_listening_socket() -> None:
    port = free_port()
    op.configure(service_name="forking", prometheus_port=port, worker_group=False)
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then stay alive until the parent is done
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            os.write(ready_w, repr(sockets_on(port)).encode())
            os.close(ready_w)
            os.read(done_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        with os.fdopen(ready_r) as reader:
            assert reader.read() == "[]"
        assert op.shutdown() is True
        assert refused(port)
        pipeline = op.configure(service_name="forking", prometheus_port=port, worker_group=False)
        assert pipeline.prometheus_port == port
        assert request(f"http://127.0.0.1:{port}/health").status == 200
    finally:
        os.write(done_w, b"x")
        os.close(done_w)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.integration
def test_child_closes_the_inherited_otlp_http_connection(otlp_receiver: OtlpReceiver) -> None:
    pipeline = op.configure(
        service_name="forking",
        exporter="otlp",
        otlp_endpoint=otlp_receiver.http_endpoint,
        otlp_protocol="http/protobuf",
        export_interval=3600,  # exports only when flushed: none is in flight at the fork
    )
    assert pipeline.meter_provider is not None
    op.queue("emails").enqueued()
    assert pipeline.meter_provider.force_flush()
    otlp_receiver.wait_for_point("queue.jobs.enqueued", {"queue.name": "emails"})
    # The parent's exporter keeps a connection to the receiver open (and the receiver its side).
    assert len(sockets_on(otlp_receiver.http_port, peer_side=True)) == 1
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            # The test's own receiver lives in this process too: only the exporter's side counts.
            os.write(write_end, repr(sockets_on(otlp_receiver.http_port, peer_side=True)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        assert reader.read() == "[]"
    os.waitpid(pid, 0)
    # The parent's connection still works: its next export arrives.
    op.queue("emails").enqueued()
    assert pipeline.meter_provider.force_flush()
    otlp_receiver.wait_for_point("queue.jobs.enqueued", {"queue.name": "emails"}, lambda p: p.value == 2)
    assert op.shutdown() is True


SIGTERM_DURING_FORK = textwrap.dedent(
    """
    import os, signal, sys, time
    import otel_pipeline as op
    from otel_pipeline._internal import group

    pipeline = op.configure(service_name="forked", prometheus_port=int(sys.argv[1]), trace_sample_rate=0)
    join = group.after_fork_in_child

    def join_late(parent, child):
        os.kill(os.getpid(), signal.SIGTERM)  # a pool terminated right after it forked this worker
        time.sleep(0.5)  # the handler's flush thread starts meanwhile
        return join(parent, child)

    group.after_fork_in_child = join_late
    with pipeline.scrape_reader._lock:  # a scrape under way on another thread at the fork
        pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            print(os.waitstatus_to_exitcode(status), flush=True)
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        print("still running", flush=True)
    op.shutdown()
    """
)


def test_sigterm_while_the_child_rebuilds_flushes_the_childs_own_pipeline() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COVERAGE_"))}
    environ["OTEL_PIPELINE_STRICT_INTERNAL_ERRORS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_FORK, str(free_port())],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )
    assert done.stdout.splitlines() == [str(-signal.SIGTERM)], done.stderr
    # Not the parent's pipeline, copied half torn down: that flush fails on the sockets the fork
    # closed, or waits for ever on a lock another thread held at the fork (the scrape's, here).
    assert "shutdown step failed" not in done.stderr, done.stderr
