from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from opentelemetry.sdk.metrics.export import Gauge, Sum

import otel_pipeline as op
from otel_pipeline.hooks.resources import PsutilSource, ResourceSample, monitor_for
from otel_pipeline.testing import Capture

BOTH = pytest.mark.parametrize("otel_capture", ["core", "sdk"], indirect=True)
FIRST = ResourceSample(
    cpu_utilization=0.25,
    cpu_user=3.5,
    cpu_system=1.25,
    memory_usage=50_000_000,
    memory_virtual=400_000_000,
    threads=7,
    open_fds=12,
    disk_read=4096,
    disk_write=8192,
)
SECOND = ResourceSample(
    cpu_utilization=0.75,
    cpu_user=4.0,
    cpu_system=1.5,
    memory_usage=40_000_000,
    memory_virtual=410_000_000,
    threads=9,
    open_fds=15,
    disk_read=5000,
    disk_write=9000,
)
RESOURCE_METRICS = {
    "process.cpu.utilization",
    "process.cpu.time",
    "process.memory.usage",
    "process.memory.virtual",
    "process.thread.count",
    "process.unix.file_descriptor.count",
    "process.disk.io",
}


class FakeSource:
    """Hands out the given samples in order (the last one again when they run out); can fail."""

    def __init__(self, *samples: ResourceSample) -> None:
        self.samples = list(samples)
        self.calls = 0
        self.fail: Exception | None = None
        self.reached: dict[int, threading.Event] = {}

    def sample(self) -> ResourceSample:
        self.calls += 1
        for count, event in self.reached.items():
            if self.calls >= count:
                event.set()
        if self.fail is not None:
            raise self.fail
        return self.samples[min(self.calls, len(self.samples)) - 1]

    def wait_for(self, calls: int) -> threading.Event:
        event = self.reached.setdefault(calls, threading.Event())
        if self.calls >= calls:
            event.set()
        return event


def values(capture: Capture) -> dict[tuple[str, frozenset[tuple[str, Any]]], Any]:
    found = {}
    for name in capture.metrics():
        if name.startswith("process."):
            for point in capture.points(name):
                found[(name, frozenset(dict(point.attributes or {}).items()))] = point.value
    return found


def expected(sample: ResourceSample) -> dict[tuple[str, frozenset[tuple[str, Any]]], Any]:
    def k(name: str, **attributes: str) -> tuple[str, frozenset[tuple[str, Any]]]:
        return name, frozenset(attributes.items())

    return {
        k("process.cpu.utilization"): sample.cpu_utilization,
        k("process.cpu.time", **{"cpu.mode": "user"}): sample.cpu_user,
        k("process.cpu.time", **{"cpu.mode": "system"}): sample.cpu_system,
        k("process.memory.usage"): sample.memory_usage,
        k("process.memory.virtual"): sample.memory_virtual,
        k("process.thread.count"): sample.threads,
        k("process.unix.file_descriptor.count"): sample.open_fds,
        k("process.disk.io", **{"disk.io.direction": "read"}): sample.disk_read,
        k("process.disk.io", **{"disk.io.direction": "write"}): sample.disk_write,
    }


@BOTH
def test_samples_are_reported_exactly_and_peaks_kept(otel_capture: Capture) -> None:
    source = FakeSource(FIRST, SECOND)
    monitor = op.monitor_resources(interval=3600, source=source)
    assert monitor.running
    assert values(otel_capture) == expected(FIRST)
    assert monitor.stats() == {
        "peak_cpu_utilization": 0.25,
        "peak_memory_bytes": 50_000_000,
        "samples": 1,
        "interval_s": 3600,
        "running": True,
    }
    assert monitor.sample() == SECOND
    assert values(otel_capture) == expected(SECOND)
    stats = monitor.stats()
    assert (stats["peak_cpu_utilization"], stats["peak_memory_bytes"], stats["samples"]) == (
        0.75,
        50_000_000,
        2,
    )
    metrics = otel_capture.metrics()
    described = {name: (metrics[name].unit, metrics[name].description) for name in RESOURCE_METRICS}
    assert described["process.cpu.utilization"][0] == "1"
    assert described["process.memory.usage"] == ("By", "The amount of physical memory in use.")
    assert described["process.unix.file_descriptor.count"] == (
        "{file_descriptor}",
        "Number of unix file descriptors in use by the process.",
    )
    assert described["process.disk.io"] == ("By", "Disk bytes transferred.")
    cpu_time, memory = metrics["process.cpu.time"].data, metrics["process.memory.usage"].data
    assert isinstance(cpu_time, Sum)
    assert cpu_time.is_monotonic
    assert isinstance(memory, Sum)
    assert not memory.is_monotonic
    assert isinstance(metrics["process.cpu.utilization"].data, Gauge)


def test_fields_the_platform_lacks_are_left_out(otel_capture: Capture) -> None:
    op.monitor_resources(interval=3600, source=FakeSource(ResourceSample(memory_usage=10, threads=2)))
    assert values(otel_capture) == {
        ("process.memory.usage", frozenset()): 10,
        ("process.thread.count", frozenset()): 2,
    }
    assert op.monitor_resources(interval=3600).stats()["peak_cpu_utilization"] is None


def test_a_failing_source_never_raises_and_the_sample_is_skipped(
    otel_capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource(FIRST)
    monitor = op.monitor_resources(interval=3600, source=source)
    source.fail = psutil.AccessDenied(pid=1)
    assert monitor.sample() is None
    assert monitor.sample() is None
    assert monitor.stats()["samples"] == 1
    assert values(otel_capture) == expected(FIRST)  # the last good sample is still reported
    assert caplog.text.count("sampling process resources failed") == 1


def test_the_thread_samples_every_interval_and_stop_really_stops(otel_capture: Capture) -> None:
    source = FakeSource(FIRST, SECOND)
    monitor = op.monitor_resources(interval=0.01, source=source)
    thread = monitor.thread
    assert thread is not None
    assert source.wait_for(3).wait(timeout=30)
    monitor.stop()
    assert not thread.is_alive()
    assert monitor.thread is None
    assert not monitor.running
    calls = source.calls
    assert monitor.stats()["samples"] == calls
    assert values(otel_capture) == {}  # callbacks yield nothing once stopped
    assert not any(name in otel_capture.metrics() for name in RESOURCE_METRICS)
    assert source.calls == calls
    monitor.stop()  # idempotent


def test_pipeline_shutdown_stops_the_monitor() -> None:
    with Capture():
        monitor = op.monitor_resources(interval=3600, source=FakeSource(FIRST))
        thread = monitor.thread
        assert thread is not None
        assert thread.is_alive()
    assert not monitor.running
    assert not thread.is_alive()


def test_not_configured_the_monitor_does_not_run(caplog: pytest.LogCaptureFixture) -> None:
    monitor = op.monitor_resources(interval=5.0)
    assert not monitor.running
    assert monitor.thread is None
    assert monitor.pipeline is None
    assert monitor.stats()["samples"] == 0
    assert "monitor_resources() before configure()" in caplog.text


def test_same_options_same_monitor_other_options_replace_it(otel_capture: Capture) -> None:
    source = FakeSource(FIRST)
    first = op.monitor_resources(interval=3600, source=source)
    assert op.monitor_resources(interval=3600) is first
    assert op.monitor_resources(interval=3600, source=source) is first
    second = op.monitor_resources(interval=1800, source=source)
    assert second is not first
    assert not first.running
    assert second.running
    assert monitor_for(otel_capture.pipeline) is second
    assert values(otel_capture) == expected(FIRST)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"interval": "5"}, TypeError, "interval must be a number of seconds, got str '5'"),
        ({"interval": True}, TypeError, "interval must be a number of seconds, got bool True"),
        ({"interval": 0}, ValueError, r"interval=0 is not valid; use a number of seconds > 0"),
        ({"interval": -1.0}, ValueError, r"interval=-1.0 is not valid"),
        ({"interval": float("inf")}, ValueError, r"interval=inf is not valid"),
        ({"interval": 1, "source": object()}, TypeError, "source must have a sample\\(\\) method"),
    ],
)
def test_bad_options_raise(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        op.monitor_resources(**options)


def test_psutil_source_reads_this_process() -> None:
    sample = PsutilSource().sample()
    assert sample.memory_usage is not None
    assert sample.memory_usage > 0
    assert sample.memory_virtual is not None
    assert sample.memory_virtual >= sample.memory_usage
    assert sample.threads is not None
    assert sample.threads >= 1
    assert sample.open_fds is not None
    assert sample.open_fds > 0
    assert sample.cpu_utilization is not None
    assert sample.cpu_utilization >= 0


class FakeProcess:
    """A psutil.Process stand-in: scripted CPU times, some calls denied."""

    def __init__(self) -> None:
        self.used = (4.0, 1.0)

    def oneshot(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def cpu_times(self) -> SimpleNamespace:
        return SimpleNamespace(user=self.used[0], system=self.used[1])

    def memory_info(self) -> SimpleNamespace:
        return SimpleNamespace(rss=1000, vms=5000)

    def num_threads(self) -> int:
        raise psutil.NoSuchProcess(pid=1)

    def num_fds(self) -> int:
        raise psutil.AccessDenied(pid=1)

    def io_counters(self) -> SimpleNamespace:
        raise OSError("not permitted")


def test_psutil_source_utilization_and_unreadable_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    source = PsutilSource()
    process = FakeProcess()
    source._process = process  # type: ignore[assignment]
    source._started = 100.0
    source._cpus = 2
    now = [110.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    first = source.sample()
    # 5 CPU seconds over the 10 s since the process started, on 2 CPUs
    assert first == ResourceSample(
        cpu_utilization=0.25, cpu_user=4.0, cpu_system=1.0, memory_usage=1000, memory_virtual=5000
    )
    process.used = (5.5, 1.5)
    now[0] = 120.0
    second = source.sample()
    assert second.cpu_utilization == 0.1  # 2 CPU seconds over 10 s on 2 CPUs
    now[0] = 120.0
    assert source.sample().cpu_utilization is None  # no time elapsed: no utilization this time


def test_a_real_monitor_runs_on_psutil(otel_capture: Capture) -> None:
    monitor = op.monitor_resources(interval=3600)
    assert isinstance(monitor.source, PsutilSource)
    stats = monitor.stats()
    assert stats["samples"] == 1
    assert stats["peak_memory_bytes"] is not None
    assert stats["peak_memory_bytes"] > 0
    assert set(otel_capture.metrics()) >= RESOURCE_METRICS
