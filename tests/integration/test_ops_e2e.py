"""End to end: the demo, scraped by a real Prometheus with the shipped scrape config and rules.

``otel-pipeline demo`` serves /metrics on a loopback port; Prometheus scrapes it with
collector-config/prometheus/embedded.yml (targets moved to that port, intervals cut to 1 s) and
evaluates dashboards/rules/*.yml. Then every dashboard panel query, with its template variables
filled in, every recording rule and the variables' label queries must return data through the
Prometheus HTTP API, and every alert rule must evaluate without error.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.boards import all_boards
from dashboards.rules import ALERTS, RECORDING
from tests.support import ManagedProcess, free_port, port_open, wait_until
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = ROOT / "collector-config" / "prometheus" / "embedded.yml"
RULE_FILES = sorted((ROOT / "dashboards" / "rules").glob("*.yml"))
#: Grafana's $__rate_interval is at least 4 scrape intervals; 15 s covers 1 s scrapes with room.
RATE_INTERVAL = "15s"
DATA_TIMEOUT = 90.0


class ShippedConfigPrometheus(Prometheus):
    """Prometheus running the shipped embedded-mode scrape config, adapted to a loopback target."""

    def config_text(self) -> str:
        config: dict[str, Any] = yaml.safe_load(SCRAPE_CONFIG.read_text())
        interval = "1s"
        config["global"] = {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        }
        config["rule_files"] = [str(path) for path in RULE_FILES]
        (job,) = config["scrape_configs"]
        job["static_configs"] = [{"targets": self.targets}]
        self.job = job["job_name"]
        return yaml.safe_dump(config)


@pytest.fixture(scope="module")
def demo_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    command = Path(sys.executable).with_name("otel-pipeline")
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    demo = ManagedProcess([str(command), "demo", "--duration", "240", "--port", str(port), "--quiet"], log)

    def serving() -> bool:
        demo.check_running("the demo")
        return port_open(port)

    try:
        wait_until(serving, timeout=30, what="the demo's /metrics")
        yield port
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def prometheus(demo_port: int) -> Iterator[Prometheus]:
    with ShippedConfigPrometheus([f"127.0.0.1:{demo_port}"], scrape_interval=1.0) as prom:
        prom.wait_scraped(timeout=30)
        yield prom


def regex_value(value: str) -> str:
    """A variable value as Grafana puts it in a PromQL regex matcher: regex-escaped, in a PromQL string."""
    return re.escape(value).replace("\\", "\\\\")


def fill(expr: str, job: str, instance: str) -> str:
    """The query Grafana would send: template variables replaced by the selected values."""
    filled = (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$job", regex_value(job))
        .replace("$instance", regex_value(instance))
    )
    assert "$" not in filled, filled
    return filled


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (f"{board.file_stem} / {panel.title} / {query.legend}", query.expr)
        for board in all_boards()
        for panel in board.panels()
        for query in panel.queries
    ]


def wait_for_data(prom: Prometheus, queries: list[tuple[str, str]]) -> list[str]:
    """Poll until every query returns at least one sample; the ones still empty at the deadline."""
    pending = dict(queries)
    deadline = time.monotonic() + DATA_TIMEOUT
    while pending and time.monotonic() < deadline:
        for name, expr in list(pending.items()):
            if prom.query(expr):
                del pending[name]
        if pending:
            time.sleep(1.0)
    return [f"{name}: {expr}" for name, expr in pending.items()]


def test_shipped_scrape_config_scrapes_the_demo(prometheus: Prometheus, demo_port: int) -> None:
    (target,) = prometheus.targets_health()
    assert target["health"] == "up"
    assert target["labels"] == {"job": "orders", "instance": f"127.0.0.1:{demo_port}"}
    assert target["scrapeUrl"] == f"http://127.0.0.1:{demo_port}/metrics"


def test_dashboard_variables_find_the_service(prometheus: Prometheus, demo_port: int) -> None:
    jobs = prometheus.api("label/job/values", **{"match[]": "target_info"})
    instances = prometheus.api("label/instance/values", **{"match[]": 'target_info{job=~"orders"}'})
    assert jobs == ["orders"]
    assert instances == [f"127.0.0.1:{demo_port}"]


def test_every_dashboard_query_returns_data(prometheus: Prometheus, demo_port: int) -> None:
    # The demo as it runs by itself: nothing requests /stats, /health or /trends meanwhile.
    queries = [(name, fill(expr, "orders", f"127.0.0.1:{demo_port}")) for name, expr in dashboard_queries()]
    assert len(queries) > 100
    assert wait_for_data(prometheus, queries) == []


def test_every_recording_rule_returns_data(prometheus: Prometheus) -> None:
    assert wait_for_data(prometheus, [(rule.record, rule.record) for rule in RECORDING]) == []


def test_every_alert_rule_evaluates_without_error(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in prometheus.rules() for rule in group["rules"]]
        return (
            rules if rules and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules) else None
        )

    wait_until(evaluated, timeout=30, what="every rule to be evaluated once")
    time.sleep(2)  # one more evaluation, now that every series exists
    rules = [rule for group in prometheus.rules() for rule in group["rules"]]
    health = {rule["name"]: (rule["health"], rule.get("lastError", "")) for rule in rules}
    expected = {alert.name for alert in ALERTS} | {rule.record for rule in RECORDING}
    assert set(health) == expected
    assert {name: state for name, state in health.items() if state != ("ok", "")} == {}
