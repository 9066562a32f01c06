"""Exporters that push to Prometheus for batch runs: the Pushgateway (here) and remote write.

Both are OpenTelemetry ``MetricExporter`` classes behind a ``PeriodicExportingMetricReader``: they get
the cumulative metrics every ``export_interval`` and once more when the meter provider shuts down
(``shutdown()``, and the interpreter's exit, which calls it). What they send is what ``/metrics``
shows, rendered by the same code (:func:`otel_pipeline._internal.exposition.render`), so names,
labels and values are those of a scrape, byte for byte.

A target that is down or slow never stalls the run: each export has a deadline (the smaller of the
reader's timeout and ``export_timeout``: the SDK hands the final export the export *interval*),
tries again after a short pause while the deadline allows when the failure may pass (refused,
reset, HTTP 5xx or 429), and returns ``FAILURE`` when nothing got through. The first failure is one
warning; later ones are logged at debug level, and a success after failures at info level.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
    _Gauge,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway
from prometheus_client.exposition import default_handler

from otel_pipeline._internal.errors import logger
from otel_pipeline._internal.exposition import render

__all__ = ["ATTEMPTS", "PushExporter", "PushgatewayExporter", "retryable"]

#: Tries per export (the deadline may allow fewer), and the pause before the second one.
ATTEMPTS = 3
_FIRST_PAUSE = 0.1
#: Below this much time left, another attempt could not complete: give up instead.
_MIN_ATTEMPT = 0.05

_CUMULATIVE: dict[type, AggregationTemporality] = dict.fromkeys(
    (
        Counter,
        UpDownCounter,
        Histogram,
        _Gauge,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    ),
    AggregationTemporality.CUMULATIVE,
)

Send = Callable[[float], None]


def retryable(error: BaseException) -> bool:
    """True for failures that may pass: refused or reset connections, HTTP 5xx and 429.

    A timeout is not retried: it has used up the time there was.
    """
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code == 429
    if isinstance(error, urllib.error.URLError):
        return not isinstance(error.reason, TimeoutError)
    return isinstance(error, ConnectionError)


def _describe(error: BaseException) -> str:
    """What went wrong, in a few words; an HTTP error's answer is read (its start) and closed."""
    if isinstance(error, urllib.error.HTTPError):
        try:
            detail = error.read(300).decode(errors="replace").strip()
        except Exception:  # the body is a courtesy; the status says enough
            detail = ""
        finally:
            error.close()  # its connection, which would otherwise wait for the garbage collector
        return f"HTTP {error.code} {error.reason}" + (f": {detail}" if detail else "")
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class PushExporter(MetricExporter):
    """Shared by the push exporters: the deadline, the retries and the one warning.

    Subclasses implement :meth:`_encode` (metrics to a request body) and :meth:`_send` (one
    attempt with a timeout, raising on failure).
    """

    #: Failures are logged here (one warning), so shutdown does not repeat them.
    reports_failures = True

    #: Names the target in log messages.
    target = "push target"

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(preferred_temporality=_CUMULATIVE)
        self.url = url
        self.timeout = timeout
        self._warned = False
        self._failing = False
        self._closed = False
        self._lock = threading.Lock()

    @abstractmethod
    def _encode(self, metrics_data: MetricsData) -> bytes:
        """The request body for ``metrics_data``."""

    @abstractmethod
    def _send(self, body: bytes, timeout: float) -> None:
        """One attempt, within ``timeout`` seconds; raises on failure."""

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        """Push ``metrics_data``; SUCCESS when the target took it within the deadline."""
        deadline = time.monotonic() + min(timeout_millis / 1000.0, self.timeout)
        if self._closed:
            return MetricExportResult.FAILURE
        try:
            body = self._encode(metrics_data)
        except Exception:  # a bug of ours: logged once, and the run goes on
            logger.exception("could not encode the metrics for the %s at %s", self.target, self.url)
            return MetricExportResult.FAILURE
        return self._deliver(lambda timeout: self._send(body, timeout), deadline)

    def _deliver(self, send: Send, deadline: float) -> MetricExportResult:
        """Call ``send(timeout)`` until it succeeds, fails for good, or the deadline is near."""
        reason = f"no time left (export_timeout {self.timeout} s)"
        pause = _FIRST_PAUSE
        for _attempt in range(ATTEMPTS):
            remaining = deadline - time.monotonic()
            if remaining < _MIN_ATTEMPT:
                break
            try:
                send(remaining)
            except Exception as failure:
                reason = _describe(failure)
                if not retryable(failure):
                    break
                time.sleep(max(0.0, min(pause, deadline - time.monotonic() - _MIN_ATTEMPT)))
                pause *= 2
                continue
            self._succeeded()
            return MetricExportResult.SUCCESS
        self._failed(reason)
        return MetricExportResult.FAILURE

    def _succeeded(self) -> None:
        with self._lock:
            recovered, self._failing = self._failing, False
        if recovered:
            logger.info("the %s at %s takes metrics again", self.target, self.url)

    def _failed(self, reason: str) -> None:
        with self._lock:
            first, self._warned, self._failing = not self._warned, True, True
        if first:
            logger.warning(
                "pushing metrics to the %s at %s failed (%s); the run goes on, and this is the only "
                "warning (later failures are logged at debug level)",
                self.target,
                self.url,
                reason,
            )
        else:
            logger.debug("pushing metrics to the %s at %s failed: %s", self.target, self.url, reason)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._closed = True


class PushgatewayExporter(PushExporter):
    """PUTs the whole exposition to the group ``job=<job>`` plus ``grouping`` labels.

    PUT replaces the group, so each push (and each run) replaces the previous one: the gateway
    holds the last values of the last run. With ``delete_on_shutdown`` the group is deleted
    when the exporter shuts down, after the final push.
    """

    target = "Pushgateway"

    def __init__(
        self,
        url: str,
        job: str,
        *,
        grouping: dict[str, str] | None = None,
        timeout: float = 5.0,
        delete_on_shutdown: bool = False,
    ) -> None:
        super().__init__(url, timeout)
        self.job = job
        self.grouping = dict(grouping or {})
        self.delete_on_shutdown = delete_on_shutdown

    def _encode(self, metrics_data: MetricsData) -> bytes:
        return render(metrics_data)

    def _send(self, body: bytes, timeout: float) -> None:
        # prometheus_client builds the URL (grouping values escaped, base64 where needed), the
        # headers and the request; it renders its registry itself, so it gets an empty one and
        # the handler sends our exposition instead: the same bytes as /metrics.
        def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
            return default_handler(url, method, timeout, headers, body)

        push_to_gateway(
            self.url,
            job=self.job,
            registry=CollectorRegistry(auto_describe=False),
            grouping_key=self.grouping,
            timeout=timeout,
            handler=handler,
        )

    def _delete(self, timeout: float) -> None:
        delete_from_gateway(self.url, job=self.job, grouping_key=self.grouping, timeout=timeout)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Stop; with ``delete_on_shutdown``, delete the group first (bounded like an export)."""
        if self.delete_on_shutdown and not self._closed:
            deadline = time.monotonic() + min(max(timeout_millis, 0.0) / 1000.0, self.timeout)
            self._deliver(self._delete, deadline)
        super().shutdown(timeout_millis)
