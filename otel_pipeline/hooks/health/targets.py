"""Health targets: dependencies whose probes you record (status, failures in a row, success rate).

>>> import otel_pipeline as op
>>> ollama = op.health_target("ollama")
>>> ollama.success()
>>> op.health_target("ollama") is ollama
True
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.hook import Health, Hook, get_hook
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, TimedScope
from otel_pipeline._internal.validation import check_whole

__all__ = ["TARGET_STATUSES", "HealthTarget", "health_target"]

HOOK = "health"
TARGET = "health.target.name"
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

    def __init__(self, hook: HealthTarget, pipeline: Runtime) -> None:
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

    def __init__(self, hook: HealthTarget, pipeline: Runtime) -> None:
        super().__init__(pipeline.tracer, f"health.probe {hook.name}", {TARGET: hook.name}, hook.probe)
        self._hook = hook

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        self._hook._record(exc_type is None)


class HealthTarget(Hook["_TargetSeries"]):
    """A dependency whose health you record. Get it with :func:`otel_pipeline.health_target`.

    Status: *unknown* before any result, *healthy* after a success, *degraded* after
    1 to ``unhealthy_after - 1`` failures in a row, *unhealthy* from ``unhealthy_after`` on.
    """

    kind = "health target"

    def __init__(self, name: str, unhealthy_after: int = 3, window: int = 100) -> None:
        super().__init__(name)
        self.unhealthy_after = unhealthy_after
        self.window = window

    def _bind(self, pipeline: Runtime) -> _TargetSeries:
        return _TargetSeries(self, pipeline)

    def success(self) -> None:
        """Record a successful probe."""
        self._record(True)

    def failure(self) -> None:
        """Record a failed probe."""
        self._record(False)

    def probe(self) -> TimedScope:
        """Time one probe: ``with target.probe(): client.ping()``; an exception is a failure (re-raised)."""
        try:
            bound = self._current()
            if bound is not None:
                return Timed(bound.probe)
        except Exception as exc:
            internal_error("health_target.probe", exc)
        return Noop(self.probe)

    def _record(self, ok: bool) -> None:
        try:
            bound = self._current()
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
        except Exception as exc:
            internal_error("health_target.success" if ok else "health_target.failure", exc)

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
        bound = self._current()
        if bound is None:
            return {"status": "unknown", "consecutive_failures": 0, "success_rate": None}
        return self._snapshot(bound)

    def _health(self, state: _TargetSeries) -> Health | None:
        """/health: a target with results on this pipeline, by its status."""
        snapshot = self._snapshot(state)
        status = snapshot.pop("status")
        return None if status == "unknown" else (self.name, status, {"kind": "target", **snapshot})

    def _snapshot(self, bound: _TargetSeries) -> dict[str, Any]:
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
        hook.unhealthy_after = check_whole("unhealthy_after", unhealthy_after)
    if window is not None:
        hook.window = check_whole("window", window)
    return hook
