"""Process resources: CPU, memory, threads, file descriptors and disk I/O, sampled with psutil.

A background thread samples the process every ``interval`` seconds; the metrics report the
latest sample under the OpenTelemetry process semantic-convention names, and the monitor keeps
the peaks for the run summary. Stopping it (or shutting the pipeline down) ends the thread and
the metrics disappear.

>>> import otel_pipeline as op
>>> _ = op.configure(service_name="docs", exporter="none")
>>> monitor = op.monitor_resources(interval=60)
>>> monitor.stats()["samples"]
1
>>> monitor.stop()
>>> op.shutdown()
True
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.registry import Observed
from otel_pipeline._internal.runtime import Runtime, current
from otel_pipeline._internal.spec import Kind, MetricSpec
from otel_pipeline._internal.validation import check_seconds, observed, safe_repr

__all__ = ["ProcessSource", "PsutilSource", "ResourceMonitor", "ResourceSample", "monitor_resources"]

HOOK = "resources"
CPU_UTILIZATION = declare(
    "process.cpu.utilization",
    Kind.OBSERVABLE_GAUGE,
    "1",
    "Difference in process.cpu.time since the last measurement, divided by the elapsed time and number "
    "of CPUs available to the process.",
    hook=HOOK,
    merge="per_process",
)
CPU_TIME = declare(
    "process.cpu.time",
    Kind.OBSERVABLE_COUNTER,
    "s",
    "Total CPU seconds broken down by different CPU modes.",
    ["cpu.mode"],
    hook=HOOK,
)
MEMORY_USAGE = declare(
    "process.memory.usage",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "By",
    "The amount of physical memory in use.",
    hook=HOOK,
    merge="per_process",
)
MEMORY_VIRTUAL = declare(
    "process.memory.virtual",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "By",
    "The amount of committed virtual memory.",
    hook=HOOK,
    merge="per_process",
)
THREAD_COUNT = declare(
    "process.thread.count",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{thread}",
    "Process threads count.",
    hook=HOOK,
    merge="per_process",
)
FILE_DESCRIPTORS = declare(
    "process.unix.file_descriptor.count",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{file_descriptor}",
    "Number of unix file descriptors in use by the process.",
    hook=HOOK,
    merge="per_process",
)
DISK_IO = declare(
    "process.disk.io",
    Kind.OBSERVABLE_COUNTER,
    "By",
    "Disk bytes transferred.",
    ["disk.io.direction"],
    hook=HOOK,
)


@dataclass(frozen=True)
class ResourceSample:
    """One reading of the process; a field is None when the platform does not offer it."""

    cpu_utilization: float | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    memory_usage: int | None = None
    memory_virtual: int | None = None
    threads: int | None = None
    open_fds: int | None = None
    disk_read: int | None = None
    disk_write: int | None = None


#: metric -> the (sample field, attributes) pairs it reports.
_FIELDS: dict[MetricSpec, tuple[tuple[str, dict[str, str]], ...]] = {
    CPU_UTILIZATION: (("cpu_utilization", {}),),
    CPU_TIME: (("cpu_user", {"cpu.mode": "user"}), ("cpu_system", {"cpu.mode": "system"})),
    MEMORY_USAGE: (("memory_usage", {}),),
    MEMORY_VIRTUAL: (("memory_virtual", {}),),
    THREAD_COUNT: (("threads", {}),),
    FILE_DESCRIPTORS: (("open_fds", {}),),
    DISK_IO: (("disk_read", {"disk.io.direction": "read"}), ("disk_write", {"disk.io.direction": "write"})),
}


class ProcessSource(Protocol):
    """Where samples come from: :class:`PsutilSource`, or a fake in tests."""

    def sample(self) -> ResourceSample:
        """Read the process now."""
        ...


class PsutilSource:
    """Reads a process (this one by default) with psutil.

    CPU utilization is the CPU time used since the previous sample (the first time: since the
    process started) divided by the wall time elapsed and the number of CPUs available to it.

    >>> sample = PsutilSource().sample()
    >>> sample.memory_usage > 0
    True
    """

    def __init__(self, pid: int | None = None) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process(pid)
        try:
            self._cpus = len(os.sched_getaffinity(0 if pid is None else pid))
        except (AttributeError, OSError):
            self._cpus = psutil.cpu_count() or 1
        self._last: tuple[float, float] | None = None
        try:
            self._started = self._process.create_time()
        except psutil.Error:
            self._started = time.time()

    def _read(self, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except (self._psutil.Error, OSError, AttributeError, NotImplementedError):
            return None

    def sample(self) -> ResourceSample:
        """Read CPU, memory, threads, file descriptors and I/O; unreadable fields are None."""
        process = self._process
        with process.oneshot():
            now = time.time()
            times = self._read(process.cpu_times)
            memory = self._read(process.memory_info)
            threads = self._read(process.num_threads)
            # Not every platform offers these (num_fds is POSIX-only, io_counters not on macOS).
            fds = self._read(process.num_fds) if hasattr(process, "num_fds") else None
            io = self._read(process.io_counters) if hasattr(process, "io_counters") else None
        utilization = None
        if times is not None:
            used = times.user + times.system
            previous_used, previous_time = self._last or (0.0, self._started)
            elapsed = now - previous_time
            if elapsed > 0:
                utilization = max(0.0, (used - previous_used) / elapsed / self._cpus)
            self._last = (used, now)
        return ResourceSample(
            cpu_utilization=utilization,
            cpu_user=None if times is None else times.user,
            cpu_system=None if times is None else times.system,
            memory_usage=None if memory is None else memory.rss,
            memory_virtual=None if memory is None else memory.vms,
            threads=threads,
            open_fds=fds,
            disk_read=None if io is None else io.read_bytes,
            disk_write=None if io is None else io.write_bytes,
        )


class ResourceMonitor:
    """Samples a process source every ``interval`` seconds from a daemon thread until stopped.

    Get it with :func:`otel_pipeline.monitor_resources`.
    """

    def __init__(self, pipeline: Runtime | None, interval: float, source: ProcessSource) -> None:
        self.pipeline = pipeline
        self.interval = interval
        self.source = source
        self.latest: ResourceSample | None = None
        self.samples = 0
        self.peak_cpu_utilization: float | None = None
        self.peak_memory_usage: int | None = None
        self._running = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True from :meth:`start` until :meth:`stop`."""
        return self._running

    def start(self) -> ResourceMonitor:
        """Take a first sample now, then sample every ``interval`` seconds in a daemon thread."""
        if self._running:
            return self
        self._running = True
        self.sample()
        self.thread = threading.Thread(target=self._loop, name="otel-pipeline-resources", daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> ResourceSample | None:
        """Read the source now and keep the result (and the peaks); None if reading failed."""
        try:
            sample = _valid_sample(self.source.sample())
        except Exception:
            warn_once("resources:sample", "sampling process resources failed; sample skipped")
            logger.debug("resource sample failure", exc_info=True)
            return None
        with self._lock:
            self.latest = sample
            self.samples += 1
            cpu, memory = sample.cpu_utilization, sample.memory_usage
            if cpu is not None and (self.peak_cpu_utilization is None or cpu > self.peak_cpu_utilization):
                self.peak_cpu_utilization = cpu
            if memory is not None and (self.peak_memory_usage is None or memory > self.peak_memory_usage):
                self.peak_memory_usage = memory
        return sample

    def stop(self) -> None:
        """Stop sampling: the thread ends and the metrics report nothing more. Idempotent."""
        self._running = False
        self._stop.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self.thread = None

    def stats(self) -> dict[str, Any]:
        """Peak CPU utilization, peak memory (RSS, bytes) and the number of samples taken.

        >>> from otel_pipeline.hooks.resources import ResourceMonitor, ResourceSample
        >>> class Fake:
        ...     def sample(self) -> ResourceSample:
        ...         return ResourceSample(cpu_utilization=0.5, memory_usage=1024)
        >>> monitor = ResourceMonitor(None, 60, Fake())
        >>> _ = monitor.sample()
        >>> stats = monitor.stats()
        >>> stats["peak_cpu_utilization"], stats["peak_memory_bytes"], stats["samples"]
        (0.5, 1024, 1)
        """
        with self._lock:
            return {
                "peak_cpu_utilization": self.peak_cpu_utilization,
                "peak_memory_bytes": self.peak_memory_usage,
                "samples": self.samples,
                "interval_s": self.interval,
                "running": self._running,
            }

    def observe(self, spec: MetricSpec) -> Observed:
        """``(value, attributes)`` of ``spec`` from the latest sample; nothing once stopped."""
        sample = self.latest
        if not self._running or sample is None:
            return []
        found = []
        for field, attributes in _FIELDS[spec]:
            value = getattr(sample, field)
            if value is not None:
                found.append((value, attributes))
        return found


def _valid_sample(sample: ResourceSample) -> ResourceSample:
    """``sample`` with each field that is not a finite number >= 0 dropped (None), warned once."""
    values = {field.name: getattr(sample, field.name) for field in dataclasses.fields(ResourceSample)}
    bad = {
        name: None
        for name, value in values.items()
        if value is not None and observed("resources", "process", name, value) is None
    }
    return dataclasses.replace(sample, **bad) if bad else sample


_MONITOR: ResourceMonitor | None = None
_MONITOR_LOCK = threading.Lock()


def monitor_for(pipeline: Runtime | None) -> ResourceMonitor | None:
    """The monitor started on ``pipeline`` (running or stopped), or None."""
    monitor = _MONITOR
    return monitor if monitor is not None and pipeline is not None and monitor.pipeline is pipeline else None


def _observer(pipeline: Runtime, spec: MetricSpec) -> Callable[[], Observed]:
    def observe() -> Observed:
        monitor = monitor_for(pipeline)
        return [] if monitor is None else monitor.observe(spec)

    return observe


def monitor_resources(interval: float = 5.0, *, source: ProcessSource | None = None) -> ResourceMonitor:
    """Sample this process's resources every ``interval`` seconds into the configured pipeline.

    One monitor per process: calling it again with the same options returns the running monitor,
    with other options replaces it. It stops when the pipeline shuts down. Not configured (or
    disabled), it returns a monitor that is not running. ``source`` replaces psutil (tests).

    >>> import otel_pipeline as op
    >>> _ = op.configure(service_name="docs", exporter="none")
    >>> op.monitor_resources(interval=30).running
    True
    >>> op.shutdown()
    True
    """
    global _MONITOR
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError(
            f"otel_pipeline: interval must be a number of seconds, got {type(interval).__name__} "
            f"{safe_repr(interval)}"
        )
    check_seconds("interval", interval)
    if source is not None and not callable(getattr(source, "sample", None)):
        raise TypeError(
            "otel_pipeline: source must have a sample() method returning a ResourceSample, got "
            f"{safe_repr(source)}"
        )
    pipeline = current()
    with _MONITOR_LOCK:
        existing = _MONITOR
        if (
            existing is not None
            and existing.running
            and existing.pipeline is pipeline
            and existing.interval == interval
            and (source is None or source is existing.source)
        ):
            return existing
        if existing is not None:
            existing.stop()
        if pipeline is None or not pipeline.enabled or pipeline.registry is None:
            warn_once("resources:unconfigured", "monitor_resources() before configure(); not started")
            _MONITOR = ResourceMonitor(None, interval, source or _NoSource())
            return _MONITOR
        try:
            chosen = source if source is not None else PsutilSource()
        except Exception:
            warn_once("resources:psutil", "psutil cannot read this process; resources not monitored")
            logger.debug("psutil failure", exc_info=True)
            _MONITOR = ResourceMonitor(None, interval, _NoSource())
            return _MONITOR
        monitor = ResourceMonitor(pipeline, interval, chosen)
        for spec in _FIELDS:
            pipeline.registry.observe(spec, _observer(pipeline, spec))
        pipeline.on_shutdown.append(monitor.stop)
        _MONITOR = monitor
    return monitor.start()


class _NoSource:
    """The source of a monitor that never runs."""

    def sample(self) -> ResourceSample:
        return ResourceSample()
