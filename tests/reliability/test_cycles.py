"""configure()/shutdown() cycles free their pipelines: memory, threads and descriptors stay flat.

A shut-down pipeline (providers, registry, server, the hooks' state on it) must be garbage once
the program drops it, whatever hooks were used on it: hooks keep their per-pipeline state on
the pipeline's registry and let go of it at shutdown.
"""

from __future__ import annotations

import functools
import gc
import json
import linecache
import os
import subprocess
import sys
import threading
import tracemalloc
import urllib.request
import weakref
from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline._internal import exposition, runtime
from otel_pipeline.testing import Capture

CYCLES = 200
#: Cycles before measuring: bounded caches (urllib's, for the new port of each cycle) fill up.
WARM_UP = 40
#: Memory the cycles after the warm-up may leave allocated in all, the OpenTelemetry SDK's
#: at-fork hooks aside: the interpreter's own bounded caches still fill (the type attribute
#: cache keeps the names it looked up, urllib caches URLs). When every pipeline stayed, these
#: 160 cycles left 21.4 MiB (exporter "none") and 33.4 MiB (Prometheus).
LEFT_BYTES = 256 * 2**10
#: What each MeterProvider and TracerProvider leaves for good: the functions the SDK gives to
#: os.register_at_fork, which cannot be unregistered (~1.5 KiB a cycle).
AT_FORK_BYTES_PER_CYCLE = 2 * 2**10


@functools.lru_cache(maxsize=8)
def _square(x: int) -> int:
    return x * x


def _use_every_hook() -> None:
    """Use every kind of hook once, with the registrations that keep state on a pipeline."""
    q = op.queue("jobs", capacity=10)
    q.enqueued(2)
    with q.worker(), q.processing():
        pass
    q.observe_dead_letter_depth(lambda: 0)
    cache = op.cache("squares")
    cache.hit()
    cache.set_size(entries=1)
    wrapped = cache.wrap(_square)
    wrapped(3)
    op.cache("blobs").observe_size(bytes=lambda: 10)
    op.dedup("events").check(duplicate=True)
    pool = op.connection_pool("db", max_size=4)
    with pool.waiting():
        pass
    with pool.connection():
        pass
    op.connection_pool("redis").observe(idle=lambda: 1)
    op.circuit_breaker("payments").record_state("open")
    with op.pipeline("nightly") as run, run.stage("fetch") as stage:
        stage.processed(3)
    with op.stage("loose"):
        pass
    with op.checkpoint("offsets").save():
        pass
    op.health_target("ollama").failure()
    with op.refresh_job("rates", interval=60).running():
        pass
    with op.events("orders").process("created"):
        pass
    with op.actions("notifier").track("send", timeout=5.0):
        pass
    with op.http_client("api").request("GET", "http://example.invalid/") as request:
        request.status_code = 200


def _options(exporter: str) -> dict[str, Any]:
    return (
        {"exporter": exporter, "prometheus_port": 0} if exporter == "prometheus" else {"exporter": exporter}
    )


def _scrape(pipeline: runtime.Runtime) -> None:
    if pipeline.server is None:
        return
    for route in ("/metrics", "/health", "/stats", "/trends"):
        with urllib.request.urlopen(f"{pipeline.server.url}{route}", timeout=10) as reply:
            reply.read()


@pytest.mark.parametrize("exporter", ["none", "prometheus"])
def test_a_shut_down_pipeline_is_freed(exporter: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # As after the first configure() of a process: the global providers are already taken.
    monkeypatch.setattr(runtime, "_globals_set", True)
    pipeline = op.configure(service_name="cycles", **_options(exporter))
    _use_every_hook()
    _scrape(pipeline)
    parts = [pipeline, pipeline.registry, pipeline.meter_provider, pipeline.tracer_provider, pipeline.server]
    refs = [weakref.ref(part) for part in parts if part is not None]
    assert len(refs) == (5 if exporter == "prometheus" else 4)
    assert op.shutdown() is True
    del pipeline, parts
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)


def test_a_capture_is_freed_after_use() -> None:
    with Capture() as capture:
        _use_every_hook()
        assert capture.value("queue.jobs.enqueued", {"queue.name": "jobs"}) == 2
        refs: list[weakref.ref[Any]] = [weakref.ref(capture.pipeline), weakref.ref(capture.pipeline.registry)]
    del capture
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _measure(exporter: str) -> dict[str, float]:
    """200 configure()/shutdown() cycles in this process: what the last 160 left behind."""

    def cycle() -> None:
        pipeline = op.configure(service_name="cycles", **_options(exporter))
        _use_every_hook()
        _scrape(pipeline)
        assert op.shutdown() is True

    for _ in range(WARM_UP):
        cycle()
    for value in range(exposition._CACHE_LIMIT):  # the /metrics renderer's bounded memo, filled
        exposition._number(value)
    gc.collect()
    threads, fds = threading.active_count(), _fds()
    tracemalloc.start(10)
    try:
        first = tracemalloc.take_snapshot()
        for _ in range(CYCLES - WARM_UP):
            cycle()
        gc.collect()
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    left = at_fork = 0
    for stat in second.compare_to(first, "traceback"):
        if any(_at_fork(frame) for frame in stat.traceback):
            at_fork += stat.size_diff
        else:
            left += stat.size_diff
    return {
        "left": left,
        "at_fork": at_fork,
        "threads_before": threads,
        "threads_after": threading.active_count(),
        "fds_before": fds,
        "fds_after": _fds(),
    }


@pytest.mark.parametrize("exporter", ["none", "prometheus"])
def test_200_cycles_keep_memory_threads_and_descriptors_flat(
    exporter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # In a process of its own, without coverage (`make test` runs under it, and coverage keeps a
    # tracer for every thread ever started) and with the global providers taken, as after the
    # first configure() of a process.
    script = (
        "import json, sys\n"
        "from otel_pipeline._internal import runtime\n"
        "runtime._globals_set = True\n"
        "from tests.reliability.test_cycles import _measure\n"
        f"print(json.dumps(_measure({exporter!r})))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COVERAGE_"))}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=environ, check=False
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])
    measured = CYCLES - WARM_UP
    with capsys.disabled():
        print(
            f"\n{exporter}: {measured} cycles after {WARM_UP}: {figures['left'] / 2**10:.1f} KiB left "
            f"allocated (+ {figures['at_fork'] / 2**10:.1f} KiB of the SDK's at-fork hooks), threads "
            f"{figures['threads_before']} -> {figures['threads_after']}, descriptors "
            f"{figures['fds_before']} -> {figures['fds_after']}"
        )
    assert figures["left"] < LEFT_BYTES
    assert figures["at_fork"] < AT_FORK_BYTES_PER_CYCLE * measured
    assert figures["threads_after"] <= figures["threads_before"]
    assert figures["fds_after"] <= figures["fds_before"]


def _at_fork(frame: tracemalloc.Frame) -> bool:
    """An allocation of the SDK's os.register_at_fork hooks (a provider's, made at its creation)."""
    if "opentelemetry" not in frame.filename:
        return False
    line = linecache.getline(frame.filename, frame.lineno)
    return "at_fork" in line or "_after_in_child" in line
