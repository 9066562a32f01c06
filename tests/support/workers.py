"""Real worker processes (``celery worker``, ``rq worker``) for the tests, and reading what they export.

A worker runs from the repository's root (its app modules import as ``tests....``), logs into a
temporary file, and is stopped by its PID (SIGTERM: a warm shutdown) when the test ends.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.support import ManagedProcess, port_open, wait_until
from tests.support.http import request
from tests.support.otlp_receiver import OtlpReceiver

__all__ = ["OPENMETRICS", "Scrape", "WorkerProcess", "scrape_until", "summed_over_processes", "sums_until"]

ROOT = Path(__file__).resolve().parents[2]
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


class WorkerProcess:
    """``argv`` (after the Python executable) run with ``env`` added; :meth:`stop` ends it."""

    def __init__(self, argv: list[str], env: Mapping[str, str], name: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=f"otel-pipeline-{name}-"))
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "PYTHONPATH": str(ROOT),
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # spans leave within 0.1 s
            **env,
        }
        self.process = ManagedProcess(
            [sys.executable, *argv], self.directory / f"{name}.log", env=environment
        )

    def stop(self) -> None:
        self.process.stop(timeout=15)

    def log(self) -> str:
        return self.process.log_tail(80)

    def wait_port(self, port: int, timeout: float = 40.0) -> None:
        def ready() -> bool:
            self.process.check_running("worker")
            return port_open(port)

        wait_until(ready, timeout=timeout, interval=0.1, what="the worker's /metrics")


class Scrape:
    """One OpenMetrics scrape of ``/metrics``: sample values and exemplars."""

    def __init__(self, port: int) -> None:
        reply = request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": OPENMETRICS})
        assert reply.status == 200, reply.text
        self.samples = [
            sample._replace(
                labels={k: v for k, v in sample.labels.items() if not k.startswith("otel_scope_")}
            )
            for family in text_string_to_metric_families(reply.text)  # type: ignore[no-untyped-call]
            for sample in family.samples
        ]

    def value(self, name: str, labels: Mapping[str, str]) -> float | None:
        for sample in self.samples:
            if sample.name == name and sample.labels == dict(labels):
                return float(sample.value)
        return None

    def values(self, name: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """Samples of ``name`` by the values of ``keys`` (an absent label is ``""``), nonzero ones."""
        found: dict[tuple[str, ...], float] = {}
        for sample in self.samples:
            if sample.name == name and sample.value:
                found[tuple(sample.labels.get(key, "") for key in keys)] = float(sample.value)
        return found

    def exemplar_trace_ids(self, name: str) -> set[str]:
        return {
            sample.exemplar.labels["trace_id"]
            for sample in self.samples
            if sample.name == name and sample.exemplar is not None and "trace_id" in sample.exemplar.labels
        }


def scrape_until(port: int, check: Callable[[Scrape], bool], what: str, timeout: float = 45.0) -> Scrape:
    """Scrape ``port`` until ``check`` holds for a scrape; that scrape."""

    def probe() -> Scrape | None:
        scrape = Scrape(port)
        return scrape if check(scrape) else None

    return wait_until(probe, timeout=timeout, interval=0.2, what=what)


def sums_until(
    receiver: OtlpReceiver, name: str, keys: tuple[str, ...], expected: Mapping[tuple[str, ...], float]
) -> dict[tuple[str, ...], float]:
    """Wait until :func:`summed_over_processes` is ``expected``; the sums."""

    def probe() -> dict[tuple[str, ...], float] | None:
        found = summed_over_processes(receiver, name, keys)
        return found if found == expected else None

    try:
        return wait_until(probe, timeout=45, interval=0.2, what=f"the sums of {name}")
    except TimeoutError as error:
        raise AssertionError(f"{error}: {summed_over_processes(receiver, name, keys)}") from None


def summed_over_processes(
    receiver: OtlpReceiver, name: str, keys: tuple[str, ...]
) -> dict[tuple[str, ...], float]:
    """A counter's latest cumulative value in each process (resource), summed, by ``keys``."""
    latest: dict[tuple[Any, tuple[str, ...]], float] = {}
    for point in receiver.all_points():
        if point.metric.name != name:
            continue
        attributes = point.attributes
        key = tuple(str(attributes.get(k, "")) for k in keys)
        latest[(point.resource.get("service.instance.id"), key)] = point.value
    totals: dict[tuple[str, ...], float] = {}
    for (_, key), value in latest.items():
        totals[key] = totals.get(key, 0.0) + value
    return {key: value for key, value in totals.items() if value}
