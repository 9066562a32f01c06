"""Health: targets (dependencies you probe), health checks, stats collectors and refresh jobs.

>>> import otel_pipeline as op
>>> ollama = op.health_target("ollama")
>>> ollama.success()
>>> op.register_health_check("disk", lambda: True)
>>> op.register_collector("cache", lambda: {"entries": 42})
>>> with op.refresh_job("catalog", interval=300).running():
...     pass
>>> op.unregister_health_check("disk"); op.unregister_collector("cache")

Checks run for ``/health`` requests and collectors for ``/stats`` requests, in parallel, each
within its own timeout: one that hangs or raises is reported as such and does not hold up the
others (nor a second request: a run still going is shared, not restarted). A result is reused
for ``ttl`` seconds (default 1), so a burst of requests runs each function once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from otel_pipeline._internal import stats as _stats  # noqa: F401  (adds /stats and /trends to the server)
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger
from otel_pipeline._internal.hook import Hook, check_name, get_hook, hooks_of
from otel_pipeline._internal.routes import HEALTH_SOURCES
from otel_pipeline._internal.runtime import STATE, Pipeline
from otel_pipeline._internal.snapshot import invalidate as invalidate_snapshots
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, TimedScope
from otel_pipeline._internal.validation import MAX_AMOUNT, check_flag, check_seconds, safe_repr

__all__ = [
    "TARGET_STATUSES",
    "HealthTarget",
    "Outcome",
    "RefreshJob",
    "collect_stats",
    "health_target",
    "refresh_job",
    "register_collector",
    "register_health_check",
    "unregister_collector",
    "unregister_health_check",
]

HOOK = "health"
TARGET = "health.target.name"
REFRESH = "refresh.name"
COLLECTOR = "stats.collector.name"
#: Wall clock of refresh jobs (Unix seconds).
_clock = time.time
#: Target status names and the value of the ``health.target.status`` gauge for each.
TARGET_STATUSES = {"unknown": 0, "healthy": 1, "degraded": 2, "unhealthy": 3}

TARGET_STATUS = declare(
    "health.target.status",
    Kind.GAUGE,
    "1",
    "Health of a target: 0 unknown, 1 healthy, 2 degraded, 3 unhealthy.",
    [TARGET],
    hook=HOOK,
    merge="max",
)
CONSECUTIVE_FAILURES = declare(
    "health.target.consecutive_failures",
    Kind.GAUGE,
    "{failure}",
    "Failed probes of a target since its last successful one.",
    [TARGET],
    hook=HOOK,
    merge="max",
)
SUCCESS_RATE = declare(
    "health.target.success_rate",
    Kind.GAUGE,
    "1",
    "Share of a target's recent probes (the last `window`) that succeeded.",
    [TARGET],
    hook=HOOK,
    merge="min",
)
PROBES = declare(
    "health.target.probes",
    Kind.COUNTER,
    "{probe}",
    "Probes of a target, by outcome (success or failure).",
    [TARGET, "outcome"],
    hook=HOOK,
)
LAST_SUCCESS = declare(
    "refresh.last_success",
    Kind.GAUGE,
    "s",
    "Unix time of the refresh job's last successful run.",
    [REFRESH],
    hook=HOOK,
    merge="max",
)
REFRESH_IN_PROGRESS = declare(
    "refresh.in_progress",
    Kind.UP_DOWN_COUNTER,
    "{run}",
    "Runs of the refresh job in progress now.",
    [REFRESH],
    hook=HOOK,
)
REFRESH_INTERVAL = declare(
    "refresh.interval",
    Kind.GAUGE,
    "s",
    "How often the refresh job is meant to run.",
    [REFRESH],
    hook=HOOK,
    merge="max",
)
REFRESH_DURATION = declare(
    "refresh.duration",
    Kind.HISTOGRAM,
    "s",
    "Duration of one run of the refresh job, by outcome.",
    [REFRESH, "outcome", "error.type"],
    hook=HOOK,
)
COLLECTION_DURATION = declare(
    "stats.collection.duration",
    Kind.HISTOGRAM,
    "s",
    "Time taken to run the registered stats collectors for one /stats request.",
    [],
    hook=HOOK,
)
COLLECTOR_RUNS = declare(
    "stats.collector.runs",
    Kind.COUNTER,
    "{run}",
    "Stats collector results, by outcome: success, failure, timeout or unavailable.",
    [COLLECTOR, "outcome"],
    hook=HOOK,
)


def _check_positive(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"otel_pipeline: {what} must be a number, got {type(value).__name__} {safe_repr(value)}"
        )
    return check_seconds(what, value)


def _check_ttl(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"otel_pipeline: ttl must be a number, got {type(value).__name__} {safe_repr(value)}")
    return check_seconds("ttl", value, zero=True)


def _check_whole(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AMOUNT:
        raise ValueError(f"otel_pipeline: {what}={safe_repr(value)} is not valid; use an integer >= 1")
    return value


def _bound_here(hook: Hook, pipeline: Pipeline) -> Any:
    """The hook's series when it has recorded on ``pipeline`` (the current one), else None."""
    if STATE.pipeline is not pipeline or hook._generation != STATE.generation:
        return None
    return hook._bound


# -- running functions in parallel, each within its timeout --------------------------------


@dataclass
class Outcome:
    """The result of one check or collector: ``status`` is success, failure, timeout or unavailable."""

    status: str
    value: Any = None
    error: str | None = None
    duration: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The outcome as /stats shows it."""
        found: dict[str, Any] = {"status": self.status, "duration": self.duration}
        if self.status == "success":
            found["value"] = self.value
        if self.error is not None:
            found["error"] = self.error
        return found


class _Run:
    __slots__ = ("done", "error", "finished", "started", "value")

    def __init__(self) -> None:
        self.started = perf_counter()
        self.finished = 0.0
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class _Probe:
    """A registered function; at most one run in progress, shared by concurrent requests.

    A run that finished less than ``ttl`` seconds ago is reused: a burst of requests (a load
    balancer, a dashboard) runs the function once.
    """

    def __init__(
        self,
        name: str,
        function: Callable[[], Any],
        timeout: float,
        ttl: float,
        available: bool | Callable[[], bool] = True,
    ) -> None:
        self.name = name
        self.function = function
        self.timeout = timeout
        self.ttl = ttl
        self.available = available
        self._lock = threading.Lock()
        self._run: _Run | None = None

    def start(self) -> _Run | None:
        """The run in progress, or a new one; None when the probe is unavailable."""
        available = self.available
        if callable(available):
            try:
                available = bool(available())
            except Exception:
                logger.debug("availability of %s failed", self.name, exc_info=True)
                available = False
        if not available:
            return None
        with self._lock:
            run = self._run
            if run is None or (run.done.is_set() and perf_counter() - run.finished >= self.ttl):
                run = self._run = _Run()
                threading.Thread(
                    target=self._execute, args=(run,), name=f"otel-pipeline-probe-{self.name}", daemon=True
                ).start()
        return run

    def _execute(self, run: _Run) -> None:
        try:
            run.value = self.function()
        except Exception as error:
            run.error = error
        finally:
            run.finished = perf_counter()
            run.done.set()


def _runhooks_of(probes: Iterable[_Probe]) -> dict[str, Outcome]:
    """Start every probe, then wait for each until its own deadline; never longer."""
    started = [(probe, probe.start()) for probe in probes]
    outcomes: dict[str, Outcome] = {}
    for probe, run in started:
        if run is None:
            outcomes[probe.name] = Outcome("unavailable")
            continue
        if not run.done.wait(max(0.0, run.started + probe.timeout - perf_counter())):
            outcomes[probe.name] = Outcome("timeout", error=f"no result within {probe.timeout:g} s")
        elif run.error is not None:
            outcomes[probe.name] = Outcome(
                "failure", error=safe_repr(run.error), duration=run.finished - run.started
            )
        else:
            outcomes[probe.name] = Outcome("success", run.value, duration=run.finished - run.started)
    return outcomes


# -- targets ---------------------------------------------------------------------------------


class _TargetSeries:
    __slots__ = (
        "consecutive",
        "consecutive_gauge",
        "failed",
        "lock",
        "probe",
        "rate",
        "results",
        "status",
        "succeeded",
    )

    def __init__(self, hook: HealthTarget, pipeline: Pipeline) -> None:
        registry = pipeline.registry
        assert registry is not None
        attributes = {TARGET: hook.name}
        self.lock = threading.Lock()
        self.results: deque[bool] = deque(maxlen=hook.window)
        self.consecutive = 0
        self.status = registry.instrument(TARGET_STATUS).bind(attributes)
        self.consecutive_gauge = registry.instrument(CONSECUTIVE_FAILURES).bind(attributes)
        self.rate = registry.instrument(SUCCESS_RATE).bind(attributes)
        self.succeeded = registry.instrument(PROBES).bind({**attributes, "outcome": "success"})
        self.failed = registry.instrument(PROBES).bind({**attributes, "outcome": "failure"})
        self.probe = _TargetProbe(hook, pipeline)
        self.status.set(TARGET_STATUSES["unknown"])


class _TargetProbe(Operation):
    """One probe of a target: a success unless an exception leaves the block."""

    __slots__ = ("_hook",)

    def __init__(self, hook: HealthTarget, pipeline: Pipeline) -> None:
        super().__init__(pipeline.tracer, f"health.probe {hook.name}", {TARGET: hook.name}, hook.probe)
        self._hook = hook

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        self._hook._record(exc_type is None)


class HealthTarget(Hook):
    """A dependency whose health you record. Get it with :func:`otel_pipeline.health_target`.

    Status: *unknown* before any result, *healthy* after a success, *degraded* after
    1 to ``unhealthy_after - 1`` failures in a row, *unhealthy* from ``unhealthy_after`` on.
    """

    kind = "health target"

    def __init__(self, name: str, unhealthy_after: int = 3, window: int = 100) -> None:
        super().__init__(name)
        self.unhealthy_after = unhealthy_after
        self.window = window

    def _bind(self, pipeline: Pipeline) -> _TargetSeries:
        return _TargetSeries(self, pipeline)

    def success(self) -> None:
        """Record a successful probe."""
        self._record(True)

    def failure(self) -> None:
        """Record a failed probe."""
        self._record(False)

    def probe(self) -> TimedScope:
        """Time one probe: ``with target.probe(): client.ping()``; an exception is a failure (re-raised)."""
        bound = self._current()
        return Noop(self.probe) if bound is None else Timed(bound.probe)

    def _record(self, ok: bool) -> None:
        bound: _TargetSeries | None = self._current()
        if bound is None:
            return
        with bound.lock:
            bound.results.append(ok)
            bound.consecutive = 0 if ok else bound.consecutive + 1
            consecutive, rate = bound.consecutive, sum(bound.results) / len(bound.results)
            bound.status.set(TARGET_STATUSES[self._status(bound)])
            bound.consecutive_gauge.set(consecutive)
            bound.rate.set(rate)
        (bound.succeeded if ok else bound.failed).add(1)

    def _status(self, bound: _TargetSeries) -> str:
        if not bound.results:
            return "unknown"
        if bound.consecutive == 0:
            return "healthy"
        return "unhealthy" if bound.consecutive >= self.unhealthy_after else "degraded"

    @property
    def status(self) -> str:
        """``unknown``, ``healthy``, ``degraded`` or ``unhealthy`` (see the class docs)."""
        bound = self._current()
        return "unknown" if bound is None else self._status(bound)

    def snapshot(self) -> dict[str, Any]:
        """Status, failures in a row and success rate over the window, as a dict."""
        bound: _TargetSeries | None = self._current()
        if bound is None:
            return {"status": "unknown", "consecutive_failures": 0, "success_rate": None}
        with bound.lock:
            rate = sum(bound.results) / len(bound.results) if bound.results else None
            return {
                "status": self._status(bound),
                "consecutive_failures": bound.consecutive,
                "success_rate": rate,
            }


def health_target(
    name: str, *, unhealthy_after: int | None = None, window: int | None = None
) -> HealthTarget:
    """The health target named ``name`` (same name, same object).

    ``unhealthy_after``: failures in a row that make it unhealthy (default 3); ``window``: how
    many recent results the success rate covers (default 100).

    >>> import otel_pipeline as op
    >>> op.health_target("ollama", unhealthy_after=5).unhealthy_after
    5
    """
    hook = get_hook(HealthTarget, name)
    if unhealthy_after is not None:
        hook.unhealthy_after = _check_whole("unhealthy_after", unhealthy_after)
    if window is not None:
        hook.window = _check_whole("window", window)
    return hook


# -- health checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    probe: _Probe
    critical: bool


_CHECKS: dict[str, _Check] = {}
_COLLECTORS: dict[str, _Probe] = {}
_REGISTRY_LOCK = threading.Lock()
_STATUSES = ("healthy", "degraded", "unhealthy")


def _checked_function(what: str, function: object) -> Callable[[], Any]:
    if not callable(function):
        raise TypeError(
            f"otel_pipeline: {what} must be a function, got {type(function).__name__} {safe_repr(function)}"
        )
    return function


def register_health_check(
    name: str,
    function: Callable[[], Any],
    *,
    timeout: float = 2.0,
    critical: bool = True,
    ttl: float = 1.0,
) -> None:
    """Run ``function`` for ``/health`` requests (in parallel with the other checks).

    It returns ``True``/``None`` (healthy), ``False`` (unhealthy), a status string
    (``"healthy"``, ``"degraded"``, ``"unhealthy"``) or a dict with a ``"status"`` key and details;
    raising, or running past ``timeout`` seconds, is unhealthy. A check that is not ``critical``
    degrades instead of making the service unhealthy. A result is reused for ``ttl`` seconds
    (0: run at every request). Results also feed the health target of the same name.
    Registering a name again replaces the check.

    >>> import otel_pipeline as op
    >>> op.register_health_check("queue-backlog", lambda: "degraded", critical=False)
    >>> op.unregister_health_check("queue-backlog")
    """
    check_name("health check name", name)
    function = _checked_function("function", function)
    probe = _Probe(name, function, _check_positive("timeout", timeout), _check_ttl(ttl))
    check_flag("critical", critical)
    with _REGISTRY_LOCK:
        _CHECKS[name] = _Check(probe, critical)
    invalidate_snapshots()  # /health and /stats show the change at once


def unregister_health_check(name: str) -> None:
    """Stop running the health check ``name`` (nothing happens if there is none)."""
    with _REGISTRY_LOCK:
        _CHECKS.pop(name, None)
    invalidate_snapshots()  # /health and /stats show the change at once


def _check_status(outcome: Outcome) -> tuple[str, dict[str, Any]]:
    """The component status and details a check's outcome stands for."""
    if outcome.status != "success":
        return "unhealthy", {"error": outcome.error or outcome.status}
    value = outcome.value
    if value is None or value is True:
        return "healthy", {}
    if value is False:
        return "unhealthy", {}
    if isinstance(value, str) and value in _STATUSES:
        return value, {}
    if isinstance(value, Mapping) and value.get("status") in _STATUSES:
        return str(value["status"]), {str(k): v for k, v in value.items() if k != "status"}
    return "unhealthy", {"error": f"unexpected result {safe_repr(value)}"}


def _check_components() -> list[tuple[str, str, dict[str, Any]]]:
    with _REGISTRY_LOCK:
        checks = dict(_CHECKS)
    outcomes = _runhooks_of(check.probe for check in checks.values())
    found = []
    for name, check in checks.items():
        outcome = outcomes[name]
        status, details = _check_status(outcome)
        health_target(name)._record(status == "healthy")
        if status == "unhealthy" and not check.critical:
            status = "degraded"
        found.append(
            (
                name,
                status,
                {"kind": "check", "critical": check.critical, "duration": outcome.duration, **details},
            )
        )
    return found


# -- stats collectors ------------------------------------------------------------------------


def register_collector(
    name: str,
    function: Callable[[], Any],
    *,
    available: bool | Callable[[], bool] = True,
    timeout: float = 2.0,
    ttl: float = 1.0,
) -> None:
    """Run ``function`` for ``/stats`` requests; what it returns (JSON-able) is shown there.

    ``available`` (a bool, or a function returning one) says whether it can run at all, e.g.
    whether an optional dependency is installed; an unavailable collector is reported as such.
    Raising or running past ``timeout`` seconds marks it failed or timed out, without delaying
    the others. A result is reused for ``ttl`` seconds (0: run at every request). Registering a
    name again replaces the collector.

    >>> import otel_pipeline as op
    >>> op.register_collector("gpu", lambda: {"memory": 0}, available=False)
    >>> op.unregister_collector("gpu")
    """
    check_name("collector name", name)
    if not isinstance(available, bool) and not callable(available):
        raise TypeError(
            "otel_pipeline: available must be a bool or a function, "
            f"got {type(available).__name__} {safe_repr(available)}"
        )
    function = _checked_function("function", function)
    probe = _Probe(name, function, _check_positive("timeout", timeout), _check_ttl(ttl), available)
    with _REGISTRY_LOCK:
        _COLLECTORS[name] = probe
    invalidate_snapshots()  # /health and /stats show the change at once


def unregister_collector(name: str) -> None:
    """Stop running the stats collector ``name`` (nothing happens if there is none)."""
    with _REGISTRY_LOCK:
        _COLLECTORS.pop(name, None)
    invalidate_snapshots()  # /health and /stats show the change at once


def collector_names() -> list[str]:
    """Names of the registered collectors."""
    with _REGISTRY_LOCK:
        return sorted(_COLLECTORS)


class _Collection(Hook):
    """Where collector runs are recorded."""

    kind = "stats collection"

    def _bind(self, pipeline: Pipeline) -> tuple[Any, Any]:
        registry = pipeline.registry
        assert registry is not None
        return registry.instrument(COLLECTION_DURATION).bind(), registry.instrument(COLLECTOR_RUNS)


def collect_stats(names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the registered collectors (or those named) in parallel; their outcomes by name.

    >>> import otel_pipeline as op
    >>> op.register_collector("answer", lambda: 42)
    >>> collect_stats(["answer"])["answer"]["value"]
    42
    >>> op.unregister_collector("answer")
    """
    with _REGISTRY_LOCK:
        probes = [p for name, p in sorted(_COLLECTORS.items()) if names is None or name in names]
    start = perf_counter()
    outcomes = _runhooks_of(probes)
    bound = get_hook(_Collection, "collectors")._current()
    if bound is not None:
        duration, runs = bound
        duration.record(perf_counter() - start)
        for name, outcome in outcomes.items():
            runs.bind({COLLECTOR: name, "outcome": outcome.status}).add(1)
    return {name: outcome.as_dict() for name, outcome in outcomes.items()}


# -- refresh jobs ----------------------------------------------------------------------------


class _RefreshSeries:
    __slots__ = ("bound_at", "interval", "last_success", "last_success_at", "run", "running")

    def __init__(self, hook: RefreshJob, pipeline: Pipeline) -> None:
        registry = pipeline.registry
        assert registry is not None
        attributes = {REFRESH: hook.name}
        self.bound_at = _clock()
        self.last_success_at: float | None = None
        self.last_success = registry.instrument(LAST_SUCCESS).bind(attributes)
        self.running = registry.instrument(REFRESH_IN_PROGRESS).bind(attributes)
        self.interval = registry.instrument(REFRESH_INTERVAL).bind(attributes)
        self.interval.set(hook.interval)
        self.run = _Refresh(hook, pipeline, self)


class _Refresh(Operation):
    """One run of a refresh job."""

    __slots__ = ("_name", "_registry", "_series", "_success")

    def __init__(self, hook: RefreshJob, pipeline: Pipeline, series: _RefreshSeries) -> None:
        super().__init__(pipeline.tracer, f"refresh {hook.name}", {REFRESH: hook.name}, hook.running)
        assert pipeline.registry is not None
        self._name = hook.name
        self._registry = pipeline.registry
        self._series = series
        self._success = self._registry.instrument(REFRESH_DURATION).bind(
            {REFRESH: hook.name, "outcome": "success"}
        )

    def begin(self) -> None:
        self._series.running.add(1)

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        series = self._series
        series.running.add(-1)
        if exc_type is None:
            self._success.record(duration)
            series.last_success_at = _clock()
            series.last_success.set(series.last_success_at)
            return
        attributes = {REFRESH: self._name, "outcome": "failure", "error.type": exc_type.__qualname__}
        self._registry.instrument(REFRESH_DURATION).bind(attributes).record(duration)


class RefreshJob(Hook):
    """A job refreshing something every ``interval`` seconds. Get it with :func:`otel_pipeline.refresh_job`.

    ``/health`` reports it degraded ("stale") once its last success, or its start when it never
    succeeded, is more than two intervals old.
    """

    kind = "refresh job"

    def __init__(self, name: str, interval: float = 60.0) -> None:
        super().__init__(name)
        self.interval = interval

    def _bind(self, pipeline: Pipeline) -> _RefreshSeries:
        return _RefreshSeries(self, pipeline)

    def running(self) -> TimedScope:
        """Time one run: ``with job.running(): reload()`` (also ``async with``, or a decorator)."""
        bound = self._current()
        return Noop(self.running) if bound is None else Timed(bound.run)

    def health(self, now: float | None = None) -> tuple[str, dict[str, Any]]:
        """(status, details): degraded when stale (see the class docs), else healthy."""
        bound: _RefreshSeries | None = self._current()
        now = _clock() if now is None else now
        if bound is None:
            return "healthy", {"interval": self.interval}
        last = bound.last_success_at
        age = now - (bound.bound_at if last is None else last)
        details = {"kind": "refresh", "interval": self.interval, "last_success": last, "age": age}
        return ("degraded" if age > 2 * self.interval else "healthy"), details


def refresh_job(name: str, *, interval: float | None = None) -> RefreshJob:
    """The refresh job named ``name`` (same name, same object), run every ``interval`` seconds.

    >>> import otel_pipeline as op
    >>> op.refresh_job("exchange-rates", interval=60).interval
    60.0
    """
    hook = get_hook(RefreshJob, name)
    if interval is not None:
        hook.interval = _check_positive("interval", interval)
        bound = hook._current()
        if bound is not None:
            bound.interval.set(hook.interval)
    return hook


# -- /health ---------------------------------------------------------------------------------


def _health(pipeline: Pipeline) -> list[tuple[str, str, dict[str, Any]]]:
    """/health: checks (run now), targets with results, and refresh jobs, on this pipeline."""
    found = _check_components()
    checks = {name for name, _, _ in found}
    for target in hooks_of(HealthTarget):
        if target.name in checks or _bound_here(target, pipeline) is None:
            continue
        snapshot = target.snapshot()
        status = snapshot.pop("status")
        if status != "unknown":
            found.append((target.name, status, {"kind": "target", **snapshot}))
    for job in hooks_of(RefreshJob):
        if _bound_here(job, pipeline) is not None:
            status, details = job.health()
            found.append((f"refresh:{job.name}", status, details))
    return found


HEALTH_SOURCES.append(_health)
