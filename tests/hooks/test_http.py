from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import otel_pipeline as op
from otel_pipeline.testing import Capture
from tests.support.dropped import assert_records, message
from tests.support.http import request

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(WSGIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@contextmanager
def serving(app: Callable[..., Iterable[bytes]]) -> Iterator[str]:
    """Serve ``app`` with wsgiref on a free port in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_QuietServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _durations(capture: Capture, name: str = "http.server.request.duration") -> dict[frozenset[Any], int]:
    return {frozenset(dict(p.attributes).items()): p.count for p in capture.points(name)}


def _attrs(**attributes: Any) -> frozenset[Any]:
    return frozenset({k.replace("__", "."): v for k, v in attributes.items()}.items())


def _shop(capture: Capture) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/boom":
            raise KeyError("no such order")
        if path == "/busy":
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"busy"]
        if path == "/active":
            active = capture.value(
                "http.server.active_requests", {"http.request.method": "GET", "url.scheme": "http"}
            )
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [str(active).encode()]
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return (chunk for chunk in (b"a", b"b"))
        status = "404 Not Found" if path == "/missing" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def _route(environ: dict[str, Any]) -> str | None:
    path = str(environ["PATH_INFO"])
    return "/orders/{id}" if path.startswith("/orders/") else None


def test_wsgi_requests_record_duration_active_and_server_spans(capture: Capture) -> None:
    with serving(op.WSGIMiddleware(_shop(capture), route=_route)) as url:
        assert request(f"{url}/orders/17", headers={"traceparent": TRACEPARENT}).status == 200
        assert request(f"{url}/orders/18").status == 200
        assert request(f"{url}/missing").status == 404
        assert request(f"{url}/busy").status == 503
        assert request(f"{url}/boom").status == 500
        assert request(f"{url}/active").body == b"1"
        assert request(f"{url}/stream").body == b"ab"
    base = {"http__request__method": "GET", "url__scheme": "http", "network__protocol__version": "1.1"}
    assert _durations(capture) == {
        _attrs(**base, http__route="/orders/{id}", http__response__status_code=200): 2,
        _attrs(**base, http__response__status_code=404): 1,
        _attrs(**base, http__response__status_code=503, error__type="503"): 1,
        _attrs(**base, error__type="KeyError"): 1,
        _attrs(**base, http__response__status_code=200): 2,
    }
    assert (
        capture.value("http.server.active_requests", {"http.request.method": "GET", "url.scheme": "http"})
        == 0
    )
    spans = capture.spans()
    assert [(s.name, s.kind) for s in spans] == [
        ("GET /orders/{id}", SpanKind.SERVER),
        ("GET /orders/{id}", SpanKind.SERVER),
        ("GET", SpanKind.SERVER),
        ("GET", SpanKind.SERVER),
        ("GET", SpanKind.SERVER),
        ("GET", SpanKind.SERVER),
        ("GET", SpanKind.SERVER),
    ]
    first = spans[0]
    assert first.parent is not None
    assert first.parent.is_remote
    assert (first.context.trace_id, first.parent.span_id) == (TRACE_ID, PARENT_ID)
    assert spans[1].parent is None
    assert spans[1].context.trace_id != TRACE_ID
    assert dict(first.attributes or {}) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/orders/17",
        "network.protocol.version": "1.1",
        "http.route": "/orders/{id}",
        "http.response.status_code": 200,
    }
    assert [s.status.status_code for s in spans[2:5]] == [
        StatusCode.UNSET,
        StatusCode.ERROR,
        StatusCode.ERROR,
    ]
    assert (spans[3].attributes or {})["error.type"] == "503"
    assert (spans[4].attributes or {})["error.type"] == "KeyError"
    assert [e.name for e in spans[4].events] == ["exception"]


def test_wsgi_unknown_method_is_other(capture: Capture) -> None:
    with serving(op.WSGIMiddleware(_shop(capture))) as url:
        assert request(f"{url}/", method="PURGE").status == 200
    assert _durations(capture) == {
        _attrs(
            http__request__method="_OTHER",
            url__scheme="http",
            network__protocol__version="1.1",
            http__response__status_code=200,
        ): 1
    }
    (span,) = capture.spans()
    assert span.name == "HTTP"
    assert (span.attributes or {})["http.request.method_original"] == "PURGE"


def test_known_methods_variable_replaces_the_list(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "GET,PURGE")
    with serving(op.WSGIMiddleware(_shop(capture))) as url:
        request(f"{url}/", method="PURGE")
        request(f"{url}/", method="POST")
    methods = {p.attributes["http.request.method"] for p in capture.points("http.server.request.duration")}
    assert methods == {"PURGE", "_OTHER"}


def test_wsgi_failing_route_resolver_records_without_route(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(environ: dict[str, Any]) -> str | None:
        raise RuntimeError("router bug")

    with serving(op.WSGIMiddleware(_shop(capture), route=broken)) as url:
        assert request(f"{url}/orders/1").status == 200
    assert [dict(p.attributes).get("http.route") for p in capture.points("http.server.request.duration")] == [
        None
    ]
    assert "route resolver failed" in caplog.text


def test_wsgi_not_configured_passes_through() -> None:
    with serving(op.WSGIMiddleware(_shop(Capture()))) as url:
        assert request(f"{url}/orders/1").body == b"ok"


def test_middleware_bad_arguments() -> None:
    with pytest.raises(TypeError, match="WSGIMiddleware needs a WSGI application, got str"):
        op.WSGIMiddleware("app")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ASGIMiddleware needs an ASGI application, got int"):
        op.ASGIMiddleware(3)  # type: ignore[arg-type]


class _Route:
    """What Starlette leaves in scope["route"]."""

    path = "/items/{item_id}"


async def _asgi_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Any],
    send: Callable[[MutableMapping[str, Any]], Any],
) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        return
    if scope["path"] == "/boom":
        raise ValueError("bad item")
    if scope["path"].startswith("/items/"):
        scope["route"] = _Route()
    status = 500 if scope["path"] == "/fail" else 200
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
    )
    await send({"type": "http.response.body", "body": b"done"})


async def test_asgi_requests(capture: Capture) -> None:
    app = op.ASGIMiddleware(_asgi_app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as client:
        assert (await client.get("/items/3", headers={"traceparent": TRACEPARENT})).status_code == 200
        assert (await client.post("/items/4")).status_code == 200
        assert (await client.get("/fail")).status_code == 500
        with pytest.raises(ValueError, match="bad item"):
            await client.get("/boom")
    base = {"url__scheme": "https", "network__protocol__version": "1.1"}
    assert _durations(capture) == {
        _attrs(
            **base,
            http__request__method="GET",
            http__route="/items/{item_id}",
            http__response__status_code=200,
        ): 1,
        _attrs(
            **base,
            http__request__method="POST",
            http__route="/items/{item_id}",
            http__response__status_code=200,
        ): 1,
        _attrs(**base, http__request__method="GET", http__response__status_code=500, error__type="500"): 1,
        _attrs(**base, http__request__method="GET", error__type="ValueError"): 1,
    }
    for method in ("GET", "POST"):
        attrs = {"http.request.method": method, "url.scheme": "https"}
        assert capture.value("http.server.active_requests", attrs) == 0
    spans = capture.spans()
    assert [s.name for s in spans] == ["GET /items/{item_id}", "POST /items/{item_id}", "GET", "GET"]
    assert spans[0].context.trace_id == TRACE_ID
    assert spans[0].parent is not None
    assert spans[0].parent.span_id == PARENT_ID
    assert [s.status.status_code for s in spans] == [
        StatusCode.UNSET,
        StatusCode.UNSET,
        StatusCode.ERROR,
        StatusCode.ERROR,
    ]


async def test_asgi_route_resolver_and_lifespan_pass_through(capture: Capture) -> None:
    app = op.ASGIMiddleware(_asgi_app, route=lambda scope: "/resolved")
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}]
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "http_version": "2"}
    await app(scope, receive, send)
    assert _durations(capture) == {
        _attrs(
            http__request__method="GET",
            url__scheme="http",
            http__route="/resolved",
            http__response__status_code=200,
            network__protocol__version="2",
        ): 1
    }


def test_http_client_records_by_address_and_status(capture: Capture) -> None:
    payments = op.http_client("payments")
    with payments.request("GET", "https://user:secret@pay.example/charges?token=abc") as req:
        req.status_code = 200
    with payments.request("post", "http://pay.example:8080/charges") as req:
        req.status_code = 409
    with pytest.raises(ConnectionError), payments.request("GET", "https://pay.example/charges"):
        raise ConnectionError("reset")
    with payments.request("GET", "https://pay.example/charges"):
        pass  # no status set: none recorded
    assert _durations(capture, "http.client.request.duration") == {
        _attrs(
            http__request__method="GET",
            server__address="pay.example",
            server__port=443,
            http__response__status_code=200,
        ): 1,
        _attrs(
            http__request__method="POST",
            server__address="pay.example",
            server__port=8080,
            http__response__status_code=409,
            error__type="409",
        ): 1,
        _attrs(
            http__request__method="GET",
            server__address="pay.example",
            server__port=443,
            error__type="ConnectionError",
        ): 1,
        _attrs(http__request__method="GET", server__address="pay.example", server__port=443): 1,
    }
    spans = capture.spans()
    assert [(s.name, s.kind, s.status.status_code) for s in spans] == [
        ("GET", SpanKind.CLIENT, StatusCode.UNSET),
        ("POST", SpanKind.CLIENT, StatusCode.ERROR),
        ("GET", SpanKind.CLIENT, StatusCode.ERROR),
        ("GET", SpanKind.CLIENT, StatusCode.UNSET),
    ]
    assert dict(spans[0].attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "pay.example",
        "server.port": 443,
        "peer.service": "payments",
        "url.full": "https://pay.example/charges",
        "http.response.status_code": 200,
    }


def test_http_client_propagates_the_trace_context(capture: Capture) -> None:
    with op.http_client("search").request("GET", "http://search.internal/q") as req:
        req.status_code = 200
        headers = dict(req.headers)
    (span,) = capture.spans()
    context = span.context
    assert context.trace_flags.sampled
    assert headers == {
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    }


async def test_http_client_async_and_unknown_method(capture: Capture) -> None:
    async with op.http_client("search").request("BREW", "http://search.internal") as req:
        req.status_code = 418
    assert _durations(capture, "http.client.request.duration") == {
        _attrs(
            http__request__method="_OTHER",
            server__address="search.internal",
            server__port=80,
            http__response__status_code=418,
            error__type="418",
        ): 1
    }
    assert [s.name for s in capture.spans()] == ["HTTP"]


def test_http_client_not_configured_still_binds_a_request() -> None:
    with op.http_client("offline").request("GET", "https://x.example") as req:
        req.status_code = 200
    assert (req.status_code, req.headers) == (200, {})


#: request() given a bad argument: what it is recorded with, the warning.
BAD_REQUESTS = {
    "url bytes": (
        ("GET", b"https://x"),
        {"http.request.method": "GET", "server.address": ""},
        "request(url=b'https://x')",
        "wrong type",
        "url must be a str; recorded without an address",
    ),
    "url None": (
        ("POST", None),
        {"http.request.method": "POST", "server.address": ""},
        "request(url=None)",
        "wrong type",
        "recorded without an address",
    ),
    "method ''": (
        ("", "https://x.example/a"),
        {"http.request.method": "_OTHER", "server.address": "x.example", "server.port": 443},
        "request(method='')",
        "empty or too long",
        "method must be a non-empty str of at most 255 characters; recorded as '_OTHER'",
    ),
    "method int": (
        (7, "https://x.example/a"),
        {"http.request.method": "_OTHER", "server.address": "x.example", "server.port": 443},
        "request(method=7)",
        "wrong type",
        "recorded as '_OTHER'",
    ),
}


@pytest.mark.parametrize("row", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_http_client_bad_arguments_are_dropped_with_one_warning(
    capture: Capture, caplog: pytest.LogCaptureFixture, row: Any
) -> None:
    args, attributes, text, problem, said = row
    statuses: list[int] = []

    def call() -> None:
        with op.http_client("p").request(*args) as req:
            req.status_code = 200
            statuses.append(req.status_code)

    recorded = {**attributes, "http.response.status_code": 200}
    changes = {("http.client.request.duration", frozenset(recorded.items())): 1}
    assert_records(capture, caplog, call, changes, message("http client", "p", text, problem), said)
    assert statuses == [200, 200]


@pytest.mark.parametrize("row", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_http_client_bad_arguments_never_raise_when_not_configured_either(
    caplog: pytest.LogCaptureFixture, row: Any
) -> None:
    args, _, text, problem, said = row

    def call() -> None:
        with op.http_client("p").request(*args) as req:
            req.status_code = 200

    assert_records(None, caplog, call, {}, message("http client", "p", text, problem), said)
