"""What the last exports to the receiver did, for the ``exporter`` component of /health.

The OTLP exporters report failures only to their own logs; we watch their ``export`` results so
that /health can say the receiver is unreachable: one or two failed exports in a row make the
exporter *degraded*, three or more *unhealthy*; a success makes it healthy again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["ExportState"]

_UNHEALTHY_AFTER = 3


class ExportState:
    """Consecutive failures and the last success of the exports being watched."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.exports = 0
        self.last_success: float | None = None
        self.last_failure: str | None = None

    def watch(self, exporter: Any, signal: str) -> Any:
        """Record the result of every ``exporter.export(...)`` call; returns the exporter."""
        original = exporter.export

        def export(*args: Any, **kwargs: Any) -> Any:
            try:
                result = original(*args, **kwargs)
            except Exception as error:
                self.record(False, f"{signal}: {type(error).__name__}")
                raise
            self.record(
                getattr(result, "name", "") == "SUCCESS",
                f"{signal}: export {getattr(result, 'name', result)}",
            )
            return result

        exporter.export = export
        return exporter

    def record(self, succeeded: bool, failure: str) -> None:
        with self._lock:
            self.exports += 1
            if succeeded:
                self.consecutive_failures = 0
                self.last_success = time.time()
            else:
                self.consecutive_failures += 1
                self.last_failure = failure

    def component(self, exporter: str) -> dict[str, Any]:
        """The /health component: status and what it is based on."""
        with self._lock:
            failures = self.consecutive_failures
            status = (
                "healthy" if failures == 0 else "degraded" if failures < _UNHEALTHY_AFTER else "unhealthy"
            )
            details: dict[str, Any] = {"status": status, "exporter": exporter}
            if self.exports:
                details["exports"] = self.exports
            if failures:
                details["consecutive_failures"] = failures
                details["last_failure"] = self.last_failure
            if self.last_success is not None:
                details["last_success"] = self.last_success
            return details
