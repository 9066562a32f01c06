"""A real Prometheus Pushgateway (Debian package ``prometheus-pushgateway``) on a free loopback port.

>>> with Pushgateway() as gateway:                                     # doctest: +SKIP
...     gateway.value("pipeline_stage_items_total", job="nightly", pipeline_stage="fetch")

Also here: :class:`GatewayScraper`, a :class:`~tests.support.prometheus.Prometheus` that scrapes
a Pushgateway the way its documentation says (``honor_labels: true``), and :func:`silent_port`, a
port that accepts connections and never answers (a hanging gateway).
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import LocalServer, MissingBinaryError, free_port, require_binary
from tests.support.prometheus import Prometheus

__all__ = ["GatewayScraper", "Pushgateway", "Sample", "parse_samples", "pushgateway", "silent_port"]

#: (name, sorted labels, value)
Sample = tuple[str, tuple[tuple[str, str], ...], float]
#: Series the gateway adds to every group itself.
GATEWAY_SERIES = ("push_time_seconds", "push_failure_time_seconds")


def parse_samples(exposition: str) -> set[Sample]:
    """Every sample of a text exposition as (name, sorted labels, value)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items())), float(sample.value))
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


class Pushgateway(LocalServer):
    """``prometheus-pushgateway`` on 127.0.0.1, in memory (no persistence file); stopped by its PID."""

    name = "pushgateway"

    def __init__(self, ready_timeout: float = 30.0) -> None:
        super().__init__(ready_timeout)
        self.binary = require_binary("prometheus-pushgateway")
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, for a Prometheus scrape target."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Pushgateway:
        self._make_dir()
        self.port = free_port()
        # Debian's build persists to /var/lib/prometheus by default; an empty file keeps it in memory.
        argv = [self.binary, f"--web.listen-address={self.address}", "--persistence.file="]
        argv.append("--log.level=warn")
        self._launch(argv, self._ready, interval=0.1)
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        self._process.check_running("pushgateway")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    def exposition(self) -> str:
        """What Prometheus scrapes from the gateway: every group's metrics, text format."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def samples(self, *, job: str | None = None, include_gateway: bool = False) -> set[Sample]:
        """Every pushed sample of ``/metrics`` (of group ``job`` if given), its own series left out."""
        found: set[Sample] = set()
        for name, labels, value in parse_samples(self.exposition()):
            if not include_gateway and name in GATEWAY_SERIES:
                continue
            if name.startswith(("pushgateway_", "go_", "process_", "promhttp_")):
                continue  # the gateway's own metrics
            if job is not None and dict(labels).get("job") != job:
                continue
            found.add((name, labels, value))
        return found

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample ``name`` whose labels include ``labels``; KeyError otherwise."""
        matches = [
            value
            for sample_name, sample_labels, value in self.samples()
            if sample_name == name and labels.items() <= dict(sample_labels).items()
        ]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} samples {name}{labels} in the gateway")
        return matches[0]

    def groups(self) -> list[dict[str, Any]]:
        """``/api/v1/metrics``: one item per group, with its ``labels`` and metric families."""
        with urllib.request.urlopen(f"{self.url}/api/v1/metrics", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"] or [])

    def group_labels(self) -> list[dict[str, str]]:
        return [dict(group["labels"]) for group in self.groups()]

    def wipe(self) -> None:
        """Delete every group (``PUT /api/v1/admin/wipe``)."""
        request = urllib.request.Request(f"{self.url}/api/v1/admin/wipe", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass


class GatewayScraper(Prometheus):
    """A Prometheus scraping Pushgateways with ``honor_labels: true`` (their ``job`` is kept)."""

    def config_text(self) -> str:
        config = json.loads(super().config_text())
        config["scrape_configs"][0]["honor_labels"] = True
        return json.dumps(config, indent=2)


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    """A fresh Pushgateway for one test; a missing binary fails with the command that installs it."""
    try:
        gateway = Pushgateway()
    except MissingBinaryError as error:
        pytest.fail(str(error), pytrace=False)
    with gateway:
        yield gateway
