"""Shared by the worker-group integration tests: scraping the group and checking what is left behind."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import request

__all__ = ["clean_environment", "get", "group_sockets", "health", "refused", "totals"]


def clean_environment(port: int) -> dict[str, str]:
    """The subprocesses' environment: no OTEL_*/coverage variables, the group's port."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COVERAGE_"))}
    environ["METRICS_PORT"] = str(port)
    environ["PYTHONPATH"] = os.getcwd()
    return environ


def get(url: str) -> bytes:
    """GET ``url``, again while the connection is refused or reset: a scrape that arrives just as
    the serving member hands the port over (a gunicorn worker recycled) can be cut off, and the
    next one succeeds, as Prometheus's next scrape would."""
    for _ in range(50):
        try:
            return request(url).body
        except (ConnectionError, http.client.RemoteDisconnected):
            time.sleep(0.1)
    return request(url).body


def totals(port: int) -> dict[str, float]:
    """Each sample name's value summed over its series, from the group's /metrics."""
    body = get(f"http://127.0.0.1:{port}/metrics").decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def health(port: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(get(f"http://127.0.0.1:{port}/health"))
    return body


def group_sockets(port: int) -> list[str]:
    """The group's abstract Unix sockets still bound on this host (by anyone)."""
    name = f"@otel-pipeline/{os.getuid()}/{port}"
    with open("/proc/net/unix", encoding="utf-8") as table:
        return [line.strip() for line in table if line.rstrip().endswith(name)]


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
