"""Stats collectors: functions run for ``/stats`` requests, whose results ``/stats`` shows.

>>> import otel_pipeline as op
>>> op.register_collector("cache", lambda: {"entries": 42})
>>> collect_stats(["cache"])["cache"]["value"]
{'entries': 42}
>>> op.unregister_collector("cache")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.hook import Hook, check_name, get_hook
from otel_pipeline._internal.probes import Probe, run_probes
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.snapshot import invalidate as invalidate_snapshots
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.validation import checked_function, checked_seconds, checked_ttl, safe_repr

__all__ = ["collect_stats", "collector_names", "register_collector", "unregister_collector"]

HOOK = "health"
COLLECTOR = "stats.collector.name"

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

_COLLECTORS: dict[str, Probe] = {}
_LOCK = threading.Lock()


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
    function = checked_function("function", function)
    probe = Probe(name, function, checked_seconds("timeout", timeout), checked_ttl(ttl), available)
    with _LOCK:
        _COLLECTORS[name] = probe
    invalidate_snapshots()  # /health and /stats show the change at once


def unregister_collector(name: str) -> None:
    """Stop running the stats collector ``name`` (nothing happens if there is none)."""
    with _LOCK:
        _COLLECTORS.pop(name, None)
    invalidate_snapshots()  # /health and /stats show the change at once


def collector_names() -> list[str]:
    """Names of the registered collectors."""
    with _LOCK:
        return sorted(_COLLECTORS)


class _Collection(Hook["tuple[Any, Any]"]):
    """Where collector runs are recorded."""

    kind = "stats collection"

    def _bind(self, pipeline: Runtime) -> tuple[Any, Any]:
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
    with _LOCK:
        probes = [p for name, p in sorted(_COLLECTORS.items()) if names is None or name in names]
    start = perf_counter()
    outcomes = run_probes(probes)
    bound = get_hook(_Collection, "collectors")._current()
    if bound is not None:
        duration, runs = bound
        duration.record(perf_counter() - start)
        for name, outcome in outcomes.items():
            runs.bind({COLLECTOR: name, "outcome": outcome.status}).add(1)
    return {name: outcome.as_dict() for name, outcome in outcomes.items()}
