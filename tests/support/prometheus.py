"""A real Prometheus (Debian package ``prometheus``) on a free loopback port, for one test.

>>> with Prometheus(["127.0.0.1:9464"], scrape_interval=0.5) as prom:    # doctest: +SKIP
...     prom.wait_for('up{job="app"}', lambda r: r and r[0]["value"][1] == "1")
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support import LocalServer, free_port, require_binary, wait_until

__all__ = ["Prometheus", "promtool_check_metrics"]

Result = list[dict[str, Any]]


def _duration(seconds: float) -> str:
    """Prometheus' duration syntax, in whole milliseconds (``500ms``)."""
    return f"{max(1, round(seconds * 1000))}ms"


class Prometheus(LocalServer):
    """Scrapes ``targets`` (``host:port``) every ``scrape_interval`` s under job ``job``.

    Started with exemplar storage, the remote-write receiver and the lifecycle API, a temporary
    TSDB, and ``rule_files`` (evaluated every ``scrape_interval``). :meth:`stop` ends it by its PID
    and removes its files.
    """

    name = "prometheus"

    def __init__(
        self,
        targets: Sequence[str],
        *,
        scrape_interval: float = 0.5,
        job: str = "app",
        metrics_path: str = "/metrics",
        rule_files: Sequence[str | Path] = (),
        ready_timeout: float = 60.0,
    ) -> None:
        super().__init__(ready_timeout)
        self.binary = require_binary("prometheus")
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.job = job
        self.metrics_path = metrics_path
        self.rule_files = [str(Path(path).resolve()) for path in rule_files]
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        """The prometheus.yml this instance runs with (JSON is valid YAML)."""
        interval = _duration(self.scrape_interval)
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": self.rule_files,
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": self.metrics_path,
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        return json.dumps(config, indent=2)

    def start(self) -> Prometheus:
        """Start and wait until ready (``/-/ready``); RuntimeError with its log if it dies."""
        directory = self._make_dir()
        config_path = directory / "prometheus.yml"
        config_path.write_text(self.config_text())
        (directory / "data").mkdir()
        self.port = free_port()
        argv = [
            self.binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--web.enable-lifecycle",
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
        ]
        self._launch(argv, self._ready, interval=0.2)
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        self._process.check_running("prometheus")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    # -- HTTP API ---------------------------------------------------------------------------

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; RuntimeError if the status is not success."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> Result:
        """The instant-query result vector of ``expr`` (each item: ``metric`` labels, ``value``)."""
        data = self.api("query", query=expr)
        return list(data["result"])

    def wait_for(
        self, expr: str, predicate: Callable[[Result], bool] = bool, timeout: float = 30.0
    ) -> Result:
        """Query ``expr`` until ``predicate(result)`` holds; TimeoutError with the last result."""
        last: list[Result] = [[]]

        def probe() -> Result | None:
            last[0] = self.query(expr)
            return last[0] if predicate(last[0]) else None

        try:
            return wait_until(probe, timeout=timeout, interval=0.2, what=f"Prometheus query {expr!r}")
        except TimeoutError as error:
            raise TimeoutError(f"{error}; last result: {last[0]}") from None

    def value(self, expr: str, timeout: float = 30.0) -> float:
        """The single sample value of ``expr`` once it exists."""
        result = self.wait_for(expr, lambda r: len(r) == 1, timeout)
        return float(result[0]["value"][1])

    def query_exemplars(self, expr: str, start: float | None = None, end: float | None = None) -> Result:
        """``/api/v1/query_exemplars`` for ``expr`` over the last hour by default."""
        now = time.time()
        data = self.api(
            "query_exemplars",
            query=expr,
            start=start if start is not None else now - 3600,
            end=end if end is not None else now + 60,
        )
        return list(data or [])

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups (``/api/v1/rules``)."""
        return list(self.api("rules")["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts (``/api/v1/alerts``)."""
        return list(self.api("alerts")["alerts"])

    def targets_health(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        return list(self.api("targets")["activeTargets"])

    def wait_scraped(self, timeout: float = 30.0) -> None:
        """Wait until every target has been scraped successfully at least once."""
        count = len(self.targets)
        self.wait_for(f'up{{job="{self.job}"}} == 1', lambda r: len(r) == count, timeout)


def promtool_check_metrics(text: str | bytes) -> tuple[int, str]:
    """Run ``promtool check metrics`` on an exposition; (exit code, its output)."""
    promtool = require_binary("promtool")
    data = text.encode() if isinstance(text, str) else text
    done = subprocess.run(
        [promtool, "check", "metrics"], input=data, capture_output=True, timeout=60, check=False
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")
