"""A pipeline serves what it was built with: routes and /health sources are wiring, not imports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline import _wiring
from otel_pipeline._internal import runtime
from otel_pipeline._internal.hook import bind_at_install, hook_health
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.server import MetricsServer, json_response
from otel_pipeline._internal.wiring import Wiring
from otel_pipeline.config import Config
from otel_pipeline.hooks import health
from otel_pipeline.summary import keep_final_at_shutdown
from tests.support.http import request


@pytest.fixture
def build() -> Iterator[Any]:
    built: list[Runtime] = []

    def make(wiring: Wiring | None = None) -> str:
        config = Config.resolve({}, service_name="wired", prometheus_port=0, worker_group=False)
        pipeline = runtime.build_pipeline(config, wiring=wiring)
        built.append(pipeline)
        assert pipeline.server is not None
        return str(pipeline.server.url)

    yield make
    for pipeline in built:
        assert pipeline.shutdown(timeout=5)


def test_the_package_wires_the_hooks_health_sources_and_the_stats_routes() -> None:
    wiring = runtime.DEFAULT_WIRING
    assert wiring.health_sources == (hook_health, health.health_components)
    assert wiring.on_install == (keep_final_at_shutdown, bind_at_install)
    assert len(wiring.route_installers) == 1
    assert _wiring.default_wiring().health_sources == wiring.health_sources


def test_the_default_wiring_serves_stats(build: Any) -> None:
    url = build()
    reply = request(f"{url}/stats")
    assert reply.status == 200
    assert set(json.loads(reply.body)) == {"service", "time", "hooks", "collectors"}
    assert request(f"{url}/trends").status == 200


def test_an_empty_wiring_serves_metrics_health_and_the_page_only(build: Any) -> None:
    op.register_health_check("wired-check", lambda: False)
    try:
        url = build(Wiring())
        assert request(f"{url}/metrics").status == 200
        assert request(f"{url}/").status == 200
        assert request(f"{url}/stats").status == 404
        assert request(f"{url}/trends").status == 404
        reply = request(f"{url}/health")
        # The failing check is not asked: only the exporter is a component.
        assert (reply.status, set(json.loads(reply.body)["components"])) == (200, {"exporter"})
    finally:
        op.unregister_health_check("wired-check")


def test_a_wiring_of_its_own_adds_its_sources_and_routes_in_order(build: Any) -> None:
    calls: list[str] = []

    def first(pipeline: Runtime) -> list[tuple[str, str, dict[str, Any]]]:
        calls.append("first")
        return [("db", "degraded", {"lag": 2})]

    def second(pipeline: Runtime) -> list[tuple[str, str, dict[str, Any]]]:
        calls.append("second")
        return [("cache", "healthy", {})]

    def install(server: MetricsServer, pipeline: Runtime) -> None:
        server.add_route(
            "/hello", lambda path, headers: json_response(200, {"service": pipeline.config.service_name})
        )

    url = build(Wiring(health_sources=(first, second), route_installers=(install,)))
    reply = request(f"{url}/health")
    body = json.loads(reply.body)
    assert (reply.status, body["status"], calls) == (200, "degraded", ["first", "second"])
    assert body["components"]["db"] == {"status": "degraded", "lag": 2}
    assert body["components"]["cache"] == {"status": "healthy"}
    assert json.loads(request(f"{url}/hello").body) == {"service": "wired"}
    assert request(f"{url}/stats").status == 404


def test_a_disabled_pipeline_keeps_its_wiring() -> None:
    wiring = Wiring(health_sources=(health.health_components,))
    pipeline = runtime.build_pipeline(Config.resolve({}, enabled=False), wiring=wiring)
    assert (pipeline.enabled, pipeline.wiring) == (False, wiring)
