"""The HTTP server: routes, status codes, content negotiation, /health, lifecycle."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline._internal.wiring import Wiring
from otel_pipeline.server import MetricsServer, Response, json_response
from tests.support import wait_until
from tests.support.http import request


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1", 0)
    server.add_route("/exact", lambda path, headers: (200, "text/plain", f"exact {path}".encode()))
    server.add_route("/files/", lambda path, headers: (200, "text/plain", path.encode()), prefix=True)
    server.add_route("/echo", lambda path, headers: json_response(200, headers))
    server.start()
    yield server
    server.stop()


def test_exact_and_prefix_routes(server: MetricsServer) -> None:
    reply = request(f"{server.url}/exact?ignored=1")
    assert (reply.status, reply.headers["content-type"], reply.text) == (200, "text/plain", "exact /exact")
    assert reply.headers["content-length"] == str(len("exact /exact"))
    assert request(f"{server.url}/files/a/b.txt").text == "/files/a/b.txt"
    echoed = json.loads(request(f"{server.url}/echo", headers={"Accept": "x/y"}).body)
    assert echoed["accept"] == "x/y"


@pytest.mark.parametrize("path", ["/", "/exact/more", "/metricsx", "/files"])
def test_unknown_paths_are_404(server: MetricsServer, path: str) -> None:
    reply = request(f"{server.url}{path}")
    assert reply.status == 404
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body) == {"error": "not found", "path": path}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(server: MetricsServer, method: str) -> None:
    reply = request(f"{server.url}/exact", method=method, body=b"payload")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert reply.headers["connection"] == "close"
    assert json.loads(reply.body) == {"allowed": ["GET", "HEAD"], "error": "method not allowed"}


def test_head_has_the_get_headers_without_a_body(server: MetricsServer) -> None:
    reply = request(f"{server.url}/exact", method="HEAD")
    assert (reply.status, reply.headers["content-length"], reply.body) == (200, str(len("exact /exact")), b"")


def test_failing_route_is_500_and_logged(server: MetricsServer, caplog: pytest.LogCaptureFixture) -> None:
    def broken(path: str, headers: dict[str, str]) -> Response:
        raise RuntimeError("boom")

    server.add_route("/broken", broken)
    with caplog.at_level(logging.ERROR, logger="otel_pipeline"):
        reply = request(f"{server.url}/broken")
    assert (reply.status, json.loads(reply.body)) == (500, {"error": "internal error"})
    assert [r.getMessage() for r in caplog.records] == ["handler for /broken failed"]
    assert request(f"{server.url}/exact").status == 200  # the server goes on


def test_keep_alive_serves_several_requests_on_one_connection(server: MetricsServer) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", "/exact")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"exact /exact")
    finally:
        connection.close()


def test_stop_closes_open_connections_and_is_idempotent() -> None:
    server = MetricsServer("127.0.0.1", 0)
    server.add_route("/x", lambda path, headers: (200, "text/plain", b"x"))
    server.start()
    before = threading.active_count()
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.request("GET", "/x")
    assert connection.getresponse().read() == b"x"  # a keep-alive handler thread now waits
    server.stop()
    server.stop()
    wait_until(lambda: threading.active_count() <= before - 1, timeout=10, what="handler threads to end")
    connection.close()
    MetricsServer("127.0.0.1", server.port).stop()  # the port can be served again at once


def test_stop_before_start_releases_the_port() -> None:
    server = MetricsServer("127.0.0.1", 0)
    port = server.port
    server.stop()
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_busy_port_error_names_the_address_and_the_cure() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=rf"^otel_pipeline: cannot serve /metrics on 127.0.0.1:{port} "):
            MetricsServer("127.0.0.1", port)


def test_ipv6_host() -> None:
    try:
        server = MetricsServer("::1", 0)
    except OSError as error:  # a machine without IPv6 loopback: the error names the address
        failure = str(error)
    else:
        failure = ""
    if failure:
        assert "cannot serve /metrics on ::1:0" in failure
        return
    server.add_route("/x", lambda path, headers: (200, "text/plain", b"v6"))
    server.start()
    try:
        connection = http.client.HTTPConnection("::1", server.port, timeout=10)
        connection.request("GET", "/x")
        assert connection.getresponse().read() == b"v6"
        connection.close()
    finally:
        server.stop()


# -- the routes configure() installs ------------------------------------------------------------


def configured() -> str:
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    assert pipeline.server is not None
    return str(pipeline.server.url)


def test_metrics_prometheus_text() -> None:
    url = configured()
    q = op.queue("emails")
    q.enqueued(3)
    reply = request(f"{url}/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in parse_text(reply.text)}
    samples = [(s.name, s.labels, s.value) for s in families["queue_jobs_enqueued"].samples]
    assert samples == [
        (
            "queue_jobs_enqueued_total",
            {
                "otel_scope_name": "otel_pipeline",
                "otel_scope_schema_url": "",
                "otel_scope_version": op.__version__,
                "queue_name": "emails",
            },
            3.0,
        )
    ]
    assert families["queue_jobs_enqueued"].documentation == "Jobs put on the queue."
    target = families["target_info"].samples[0].labels
    assert (target["service_name"], target["telemetry_sdk_language"]) == ("orders", "python")


def test_metrics_openmetrics_when_asked() -> None:
    url = configured()
    op.queue("emails").enqueued(2)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    reply = request(f"{url}/metrics", headers={"Accept": accept})
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert reply.text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(reply.text)}  # type: ignore[no-untyped-call]
    totals = [s for s in families["queue_jobs_enqueued"].samples if s.name == "queue_jobs_enqueued_total"]
    assert [(s.labels["queue_name"], s.value) for s in totals] == [("emails", 2.0)]


def test_health_is_healthy_by_default() -> None:
    url = configured()
    reply = request(f"{url}/health")
    assert (reply.status, reply.headers["content-type"]) == (200, "application/json")
    assert json.loads(reply.body) == {
        "status": "healthy",
        "score": 100,
        "service": "orders",
        "components": {"exporter": {"status": "healthy", "exporter": "prometheus"}},
    }


@pytest.mark.parametrize(
    ("reported", "status", "overall"),
    [("healthy", 200, "healthy"), ("degraded", 200, "degraded"), ("unhealthy", 503, "unhealthy")],
)
def test_health_status_is_the_worst_component(
    monkeypatch: pytest.MonkeyPatch, reported: str, status: int, overall: str
) -> None:
    def source(pipeline: Any) -> list[tuple[str, str, dict[str, Any]]]:
        return [("db", reported, {"latency_s": 0.5})]

    monkeypatch.setattr(runtime, "DEFAULT_WIRING", Wiring(health_sources=(source,)))
    reply = request(f"{configured()}/health")
    assert reply.status == status
    body = json.loads(reply.body)
    assert body["status"] == overall
    assert body["components"]["db"] == {"status": reported, "latency_s": 0.5}


def test_health_reports_a_failing_source_as_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    def checks(pipeline: Any) -> list[tuple[str, str, dict[str, Any]]]:
        raise ConnectionError("db down")

    monkeypatch.setattr(runtime, "DEFAULT_WIRING", Wiring(health_sources=(checks,)))
    reply = request(f"{configured()}/health")
    assert reply.status == 503
    assert json.loads(reply.body)["components"]["checks"] == {
        "status": "unhealthy",
        "error": "ConnectionError('db down')",
    }


def test_route_installers_add_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    def install(server: MetricsServer, pipeline: Any) -> None:
        server.add_route(
            "/stats", lambda path, headers: json_response(200, {"service": pipeline.config.service_name})
        )

    monkeypatch.setattr(runtime, "DEFAULT_WIRING", Wiring(route_installers=(install,)))
    reply = request(f"{configured()}/stats")
    assert (reply.status, json.loads(reply.body)) == (200, {"service": "orders"})


def test_binds_loopback_by_default() -> None:
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    assert pipeline.server is not None
    assert pipeline.server.host == "127.0.0.1"
