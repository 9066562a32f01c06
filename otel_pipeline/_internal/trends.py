"""/trends: rates over the last 1, 5 and 15 minutes, from periodic snapshots of the totals.

A background thread takes a snapshot of every counter total and histogram (count, sum) every
``interval`` seconds and keeps those of the last 15 minutes. A report compares the totals now
with the newest snapshot at least a window old (or the oldest one, while the process is younger
than the window: ``windows`` then says how many seconds were really covered):

* rate = (total now - total then) / seconds covered, per second;
* mean (histograms) = (sum now - sum then) / (count now - count then): the average
  measurement in the window, None when there was none.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from otel_pipeline._internal.errors import logger

__all__ = ["WINDOWS", "Totals", "Trends"]

#: (hook, name, metric) -> (counter total or histogram count, histogram sum or None)
Totals = dict[tuple[str, str, str], tuple[float, "float | None"]]
#: Window label -> seconds.
WINDOWS = {"1m": 60.0, "5m": 300.0, "15m": 900.0}


class Trends:
    """Snapshots of ``read()`` every ``interval`` seconds, and rates over :data:`WINDOWS`.

    >>> clock = iter([0.0, 60.0]).__next__
    >>> trends = Trends(lambda: {("queue", "emails", "queue.jobs.enqueued"): (30.0, None)}, clock=clock)
    >>> trends.snapshot()
    >>> trends.read = lambda: {("queue", "emails", "queue.jobs.enqueued"): (90.0, None)}
    >>> trends.report()["hooks"]["queue"]["emails"]["queue.jobs.enqueued"]["rate"]["1m"]
    1.0
    """

    def __init__(
        self,
        read: Callable[[], Totals],
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.read = read
        self.interval = interval
        self._clock = clock
        self._snapshots: deque[tuple[float, Totals]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> None:
        """Take one snapshot now; forget those no window needs any more."""
        totals = self.read()
        now = self._clock()
        horizon = now - max(WINDOWS.values())
        with self._lock:
            self._snapshots.append((now, totals))
            # Keep the newest snapshot at or before the longest window's start, and all after it.
            while len(self._snapshots) > 1 and self._snapshots[1][0] <= horizon:
                self._snapshots.popleft()

    def report(self) -> dict[str, Any]:
        """Rates (and histogram means) per hook, name and metric over each window, as a dict."""
        current = self.read()
        now = self._clock()
        with self._lock:
            snapshots = list(self._snapshots)
        bases: dict[str, tuple[float, Totals] | None] = {}
        for label, seconds in WINDOWS.items():
            older = [s for s in snapshots if s[0] <= now - seconds]
            base = older[-1] if older else (snapshots[0] if snapshots else None)
            bases[label] = base if base is not None and now - base[0] > 0 else None
        hooks: dict[str, dict[str, dict[str, Any]]] = {}
        for (hook, name, metric), (value, total) in sorted(current.items()):
            rates: dict[str, float | None] = {}
            means: dict[str, float | None] = {}
            for label, base in bases.items():
                if base is None:
                    rates[label] = means[label] = None
                    continue
                then, then_total = base[1].get((hook, name, metric), (0.0, None if total is None else 0.0))
                rates[label] = (value - then) / (now - base[0])
                if total is not None:
                    count = value - then
                    means[label] = (total - (then_total or 0.0)) / count if count > 0 else None
            entry: dict[str, Any] = {"rate": rates}
            if total is not None:
                entry["mean"] = means
            hooks.setdefault(hook, {}).setdefault(name, {})[metric] = entry
        windows = {label: (None if base is None else now - base[0]) for label, base in bases.items()}
        return {"time": now, "interval": self.interval, "windows": windows, "hooks": hooks}

    def start(self) -> None:
        """Take a first snapshot, then one every ``interval`` seconds in a daemon thread."""
        self._safe_snapshot()
        self._thread = threading.Thread(target=self._loop, name="otel-pipeline-trends", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the snapshot thread (idempotent)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._safe_snapshot()

    def _safe_snapshot(self) -> None:
        try:
            self.snapshot()
        except Exception:
            logger.exception("a /trends snapshot failed")
