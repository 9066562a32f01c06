"""Running registered functions (health checks, stats collectors) in parallel, each within its timeout.

A :class:`Probe` is a registered function with at most one run in progress, shared by concurrent
requests; a run that finished less than ``ttl`` seconds ago is reused. :func:`run_probes` starts
every probe, then waits for each until its own deadline, never longer: one that hangs or raises
is reported as such (an :class:`Outcome`) and holds up nothing else.

>>> probe = Probe("answer", lambda: 42, timeout=1.0, ttl=0.0)
>>> outcome = run_probes([probe])["answer"]
>>> outcome.status, outcome.value
('success', 42)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from otel_pipeline._internal.errors import logger
from otel_pipeline._internal.validation import safe_repr

__all__ = ["Outcome", "Probe", "run_probes"]


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


class Probe:
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


def run_probes(probes: Iterable[Probe]) -> dict[str, Outcome]:
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
