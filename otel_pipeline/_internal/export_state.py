"""What the exports to the receiver did: for the ``exporter`` component of /health, and for shutdown().

The OTLP exporters report failures only to their own logs; we watch their ``export`` results so
that /health can say the receiver is unreachable: one or two failed exports in a row make the
exporter *degraded*, three or more *unhealthy*; a success makes it healthy again.

``shutdown()`` asks the same state whether the final exports got through: between
:meth:`ExportState.begin_final` and :meth:`ExportState.final_result` every watched exporter's
exports must succeed, and an exporter watched with ``final=True`` (metrics: the last collection is
always exported) must have exported at least once. Any exporter plugs in with :meth:`watch` (an
``export`` method returning a result whose ``name`` is ``"SUCCESS"``, or ``True``), or reports by
hand with :meth:`record`. An exporter that pushes nothing (Prometheus is scraped) is not watched:
nothing to deliver, success by definition.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["ExportState"]

_UNHEALTHY_AFTER = 3


class _Final:
    """One watched exporter's exports since shutdown began."""

    __slots__ = ("exports", "failure", "reported", "required")

    def __init__(self, required: bool) -> None:
        self.required = required
        self.exports = 0
        self.failure: str | None = None
        #: Whether the exporter logged that failure itself (then shutdown need not say it again).
        self.reported = True


class ExportState:
    """Consecutive failures and the last success of the exports being watched."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.exports = 0
        self.last_success: float | None = None
        self.last_failure: str | None = None
        #: (signal, exporter) of every exporter watched: a forked child releases their connections.
        self.exporters: list[tuple[str, Any]] = []
        self._required: dict[str, bool] = {}
        self._final: dict[str, _Final] | None = None

    def watch(
        self, exporter: Any, signal: str, *, final: bool | None = None, reports: bool | None = None
    ) -> Any:
        """Record the result of every ``exporter.export(...)`` call; returns the exporter.

        ``final``: whether shutdown must see one export of this exporter (default: True for
        ``"metrics"``, whose reader always exports its last collection; spans may have none left).
        ``reports``: whether the exporter logs its own failures (default: its ``reports_failures``
        attribute, else False); shutdown then does not log them a second time.
        """
        original = exporter.export
        self.exporters.append((signal, exporter))
        key = self.expect(signal, final=signal == "metrics" if final is None else final)
        reported = bool(getattr(exporter, "reports_failures", False)) if reports is None else reports

        def export(*args: Any, **kwargs: Any) -> Any:
            try:
                result = original(*args, **kwargs)
            except Exception as error:
                self.record(False, f"{signal}: {type(error).__name__}", key, reported=reported)
                raise
            self.record(
                result is True or getattr(result, "name", "") == "SUCCESS",
                f"{signal}: export {getattr(result, 'name', result)}",
                key,
                reported=reported,
            )
            return result

        exporter.export = export
        return exporter

    def expect(self, name: str, *, final: bool) -> str:
        """Count an exporter's results (``record(..., key)``) in shutdown's verdict; returns its key.

        :meth:`watch` does this; an exporter that reports by hand calls it once.
        """
        with self._lock:
            key, number = name, 1
            while key in self._required:
                number += 1
                key = f"{name}-{number}"
            self._required[key] = final
            return key

    def record(
        self, succeeded: bool, failure: str, key: str | None = None, *, reported: bool = False
    ) -> None:
        """One export's result (``failure`` describes it); ``key`` from :meth:`expect`, if counted.

        ``reported``: the exporter logged this failure itself.
        """
        with self._lock:
            self.exports += 1
            if succeeded:
                self.consecutive_failures = 0
                self.last_success = time.time()
            else:
                self.consecutive_failures += 1
                self.last_failure = failure
            final = None if self._final is None or key is None else self._final.get(key)
            if final is not None:
                final.exports += 1
                if not succeeded:
                    final.failure = failure
                    final.reported = final.reported and reported

    @property
    def pushes(self) -> bool:
        """Whether any exporter delivers by push: then a final flush has something to deliver."""
        with self._lock:
            return bool(self._required)

    def begin_final(self) -> None:
        """Shutdown starts: from now on, every export of every watched exporter must succeed."""
        with self._lock:
            self._final = {key: _Final(required) for key, required in self._required.items()}

    def final_result(self) -> tuple[bool, list[str], bool]:
        """Whether every final export got through, what did not, and whether that was all logged already."""
        with self._lock:
            finals = dict(self._final or {})
        problems = []
        reported = True
        for key, final in sorted(finals.items()):
            if final.failure is not None:
                problems.append(final.failure)
                reported = reported and final.reported
            elif final.required and final.exports == 0:
                problems.append(f"{key}: no final export")
                reported = False
        return not problems, problems, reported

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
