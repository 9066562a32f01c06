"""Health checks: functions run for ``/health`` requests, in parallel, each within its timeout.

>>> import otel_pipeline as op
>>> op.register_health_check("disk", lambda: True)
>>> [(name, status) for name, status, _ in check_components() if name == "disk"]
[('disk', 'healthy')]
>>> op.unregister_health_check("disk")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from otel_pipeline._internal.hook import check_name
from otel_pipeline._internal.probes import Outcome, Probe, run_probes
from otel_pipeline._internal.snapshot import invalidate as invalidate_snapshots
from otel_pipeline._internal.validation import (
    check_flag,
    checked_function,
    checked_seconds,
    checked_ttl,
    safe_repr,
)
from otel_pipeline._internal.wiring import HealthComponent
from otel_pipeline.hooks.health.targets import health_target

__all__ = ["check_components", "register_health_check", "unregister_health_check"]


@dataclass(frozen=True)
class _Check:
    probe: Probe
    critical: bool


_CHECKS: dict[str, _Check] = {}
_LOCK = threading.Lock()
_STATUSES = ("healthy", "degraded", "unhealthy")


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
    function = checked_function("function", function)
    probe = Probe(name, function, checked_seconds("timeout", timeout), checked_ttl(ttl))
    check_flag("critical", critical)
    with _LOCK:
        _CHECKS[name] = _Check(probe, critical)
    invalidate_snapshots()  # /health and /stats show the change at once


def unregister_health_check(name: str) -> None:
    """Stop running the health check ``name`` (nothing happens if there is none)."""
    with _LOCK:
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


def check_components() -> list[HealthComponent]:
    """Run every check now; a component each, whose result also feeds the target of its name."""
    with _LOCK:
        checks = dict(_CHECKS)
    outcomes = run_probes(check.probe for check in checks.values())
    found: list[HealthComponent] = []
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
