"""HTTP: WSGI and ASGI middleware for the requests a service serves, and a helper for those it sends.

Metrics and spans follow the OpenTelemetry HTTP semantic conventions:
``http.server.request.duration``, ``http.server.active_requests`` (server, one ``SERVER`` span per
request, continuing the caller's trace from its W3C ``traceparent`` header) and
``http.client.request.duration`` (client, one ``CLIENT`` span per request).

>>> import otel_pipeline as op
>>> def app(environ, start_response):
...     start_response("200 OK", [("Content-Type", "text/plain")])
...     return [b"ok"]
>>> app = op.WSGIMiddleware(app)
>>> with op.http_client("payments").request("GET", "https://payments.internal/health") as req:
...     req.status_code = 200
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from time import perf_counter
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.hook import Hook, get_hook
from otel_pipeline._internal.registry import Adds, Instrument, Records
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spans import HookTracer
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, TimedScope, error_type
from otel_pipeline._internal.validation import dropped, label, safe_repr

__all__ = ["ASGIMiddleware", "HttpClient", "HttpRequest", "WSGIMiddleware", "http_client"]

HOOK = "http"
METHOD = "http.request.method"
STATUS = "http.response.status_code"
SERVER_DURATION = declare(
    "http.server.request.duration",
    Kind.HISTOGRAM,
    "s",
    "Duration of HTTP server requests.",
    [METHOD, "url.scheme", "http.route", STATUS, "error.type", "network.protocol.version"],
    hook=HOOK,
)
ACTIVE = declare(
    "http.server.active_requests",
    Kind.UP_DOWN_COUNTER,
    "{request}",
    "Number of active HTTP server requests.",
    [METHOD, "url.scheme"],
    hook=HOOK,
)
CLIENT_DURATION = declare(
    "http.client.request.duration",
    Kind.HISTOGRAM,
    "s",
    "Duration of HTTP client requests.",
    [METHOD, "server.address", "server.port", STATUS, "error.type"],
    hook=HOOK,
)

#: Methods reported as they are (RFC 9110 and PATCH); others are ``_OTHER``. The standard
#: ``OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`` variable (comma-separated) replaces this list.
DEFAULT_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: A route resolver: gets the WSGI environ or ASGI scope after the app ran, returns the route
#: template (``/users/{id}``) or None. Never the raw path: that would explode cardinality.
RouteResolver = Callable[[Any], "str | None"]


def known_methods(environ: MutableMapping[str, str] | None = None) -> frozenset[str]:
    """The known HTTP methods: ``OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`` if set, else the defaults."""
    value = (os.environ if environ is None else environ).get("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "")
    methods = frozenset(m.strip() for m in value.split(",") if m.strip())
    return methods or DEFAULT_KNOWN_METHODS


class _ServerState(NamedTuple):
    """What the middlewares record into on one pipeline."""

    duration: Instrument[Records]
    active: Instrument[Adds]
    tracer: HookTracer


class _Server(Hook[_ServerState]):
    """The instruments every middleware in the process records into."""

    kind = "http server"

    def _bind(self, pipeline: Runtime) -> _ServerState:
        registry = pipeline.registry
        assert registry is not None
        return _ServerState(
            registry.instrument(SERVER_DURATION), registry.instrument(ACTIVE), pipeline.tracer
        )


class _ServerRequest:
    """One request being served: active, in its span, until :meth:`finish`."""

    __slots__ = (
        "_active",
        "_duration",
        "_method",
        "_scheme",
        "_scope",
        "_start",
        "_token",
        "protocol",
        "status",
    )

    def __init__(
        self,
        bound: _ServerState,
        method: str,
        known: frozenset[str],
        scheme: str,
        path: str,
        protocol: str,
        carrier: Any,
        getter: Getter[Any],
    ) -> None:
        duration, active, tracer = bound
        self._duration = duration
        self._method = method if method in known else "_OTHER"
        self._scheme = scheme
        self.protocol = protocol
        self.status: int | None = None
        attributes: dict[str, Any] = {METHOD: self._method, "url.scheme": scheme, "url.path": path}
        if self._method == "_OTHER":
            attributes["http.request.method_original"] = method
        if protocol:
            attributes["network.protocol.version"] = protocol
        name = "HTTP" if self._method == "_OTHER" else self._method
        self._token: Any = otel_context.attach(propagate.extract(carrier, getter=getter))
        try:
            self._scope = tracer.start(name, attributes, kind=SpanKind.SERVER)
            try:
                self._active = active.bind({METHOD: self._method, "url.scheme": scheme})
                self._active.add(1)
            except Exception as exc:  # no request recorded: its span must not stay open and current
                with contextlib.suppress(Exception):
                    self._scope.end(exc)
                raise
        except Exception:
            otel_context.detach(self._token)
            raise
        self._start = perf_counter()

    def finish(self, error: BaseException | None, route: str | None) -> None:
        """Record the request once: duration with its outcome, span status, active count down."""
        if self._token is None:
            return
        duration = perf_counter() - self._start
        token, self._token = self._token, None
        try:
            attributes: dict[str, Any] = {METHOD: self._method, "url.scheme": self._scheme}
            if route:
                attributes["http.route"] = route
            if self.status is not None:
                attributes[STATUS] = self.status
            failed = error_type(type(error)) if error is not None else None
            if failed is None and self.status is not None and self.status >= 500:
                failed = str(self.status)
            if failed is not None:
                attributes["error.type"] = failed
            if self.protocol:
                attributes["network.protocol.version"] = self.protocol
            self._active.add(-1)
            self._duration.bind(attributes).record(duration)
            span = self._scope.span
            if span.is_recording():
                if route:
                    span.update_name(f"{'HTTP' if self._method == '_OTHER' else self._method} {route}")
                span.set_attributes(
                    {k: v for k, v in attributes.items() if k in (STATUS, "http.route", "error.type")}
                )
                if error is None and failed is not None:
                    span.set_status(Status(StatusCode.ERROR))
            self._scope.end(error)
        except Exception as exc:
            internal_error("http:server:finish", exc, "recording an HTTP request failed")
        finally:
            otel_context.detach(token)


def _start(
    method: str,
    scheme: str,
    path: str,
    protocol: str,
    carrier: Any,
    getter: Getter[Any],
    known: frozenset[str],
) -> _ServerRequest | None:
    """A started request, or None when instrumentation is off or fails (the app runs regardless)."""
    try:
        bound = get_hook(_Server, "server")._current()
        if bound is None:
            return None
        return _ServerRequest(bound, method, known, scheme, path, protocol, carrier, getter)
    except Exception as exc:
        internal_error("http:server:start", exc, "starting to record an HTTP request failed")
        return None


def _text(value: object, default: str) -> str:
    """A WSGI environ or ASGI scope value as text; ``default`` when absent or not text."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return default


def _status_code(status: object, *, line: bool = False) -> int | None:
    """The code of a status (``200``), or of a WSGI status ``line`` (``"200 OK"``); None if not one.

    Anything but a three-digit code is recorded without a status (logged once): a malformed status
    is for the server to refuse, never a reason for the instrumentation to raise.

    >>> _status_code("404 Not Found", line=True), _status_code(204), _status_code("204"), _status_code(1000)
    (404, 204, None, None)
    """
    code: int | None = None
    if line and isinstance(status, str):
        head = status.split(" ", 1)[0]
        if len(head) == 3 and head.isascii() and head.isdigit():
            code = int(head)
    elif isinstance(status, int) and not isinstance(status, bool):
        code = int(status)
    if code is not None and 100 <= code <= 999:
        return code
    warn_once(
        "http:status",
        "HTTP response status %s is not a status code (100 to 999); recorded without it",
        safe_repr(status),
    )
    return None


def _asgi_headers(raw: object) -> dict[str, str]:
    """ASGI ``scope["headers"]`` (``(bytes, bytes)`` pairs) as a dict; malformed pairs are skipped."""
    headers: dict[str, str] = {}
    try:
        for pair in raw or ():  # type: ignore[attr-defined]
            key, value = pair
            if isinstance(key, (bytes, bytearray)) and isinstance(value, (bytes, bytearray)):
                headers[bytes(key).decode("latin-1").lower()] = bytes(value).decode("latin-1")
            else:
                raise TypeError("not a (bytes, bytes) pair")
    except Exception:  # the trace context is read from the pairs before it; the app runs regardless
        warn_once(
            "http:headers",
            "ASGI scope headers %s are not (bytes, bytes) pairs; the rest are ignored",
            safe_repr(raw),
        )
    return headers


class _EnvironGetter(Getter[dict[str, Any]]):
    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


class _DictGetter(Getter[dict[str, str]]):
    def get(self, carrier: dict[str, str], key: str) -> list[str] | None:
        value = carrier.get(key.lower())
        return None if value is None else [value]

    def keys(self, carrier: dict[str, str]) -> list[str]:
        return list(carrier)


_ENVIRON_GETTER = _EnvironGetter()
_DICT_GETTER = _DictGetter()


class WSGIMiddleware:
    """Wrap a WSGI application: a span, a duration and an active count for every request.

    ``route`` gets the environ once the app has answered and returns the route template, if
    the framework knows it. The request ends when the server closes the response body.

    >>> import otel_pipeline as op
    >>> def hello(environ, start_response):
    ...     start_response("200 OK", [])
    ...     return [b"hello"]
    >>> app = op.WSGIMiddleware(hello, route=lambda environ: "/hello")
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], *, route: RouteResolver | None = None) -> None:
        if not callable(app):
            raise TypeError(
                f"otel_pipeline: WSGIMiddleware needs a WSGI application, got {type(app).__name__}"
            )
        self.app = app
        self.route = route
        self.known_methods = known_methods()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serve one request through the wrapped application."""
        protocol = _text(environ.get("SERVER_PROTOCOL"), "")
        request = _start(
            _text(environ.get("REQUEST_METHOD"), "GET"),
            _text(environ.get("wsgi.url_scheme"), "http"),
            _text(environ.get("PATH_INFO"), "") or "/",
            protocol.partition("/")[2] if protocol.startswith("HTTP/") else "",
            environ,
            _ENVIRON_GETTER,
            self.known_methods,
        )
        if request is None:
            return self.app(environ, start_response)

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            request.status = _status_code(
                status, line=True
            )  # a malformed status is the server's to refuse, not ours
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = self.app(environ, recording_start_response)
        except BaseException as error:
            request.finish(error, _resolve(self.route, environ))
            raise
        return _Body(body, request, lambda: _resolve(self.route, environ))


class _Body:
    """The app's response body; the request ends when the server closes it (PEP 3333)."""

    def __init__(
        self, body: Iterable[bytes], request: _ServerRequest, route: Callable[[], str | None]
    ) -> None:
        self._body = body
        self._request = request
        self._route = route
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except BaseException as error:
            self._error = error
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._request.finish(self._error, self._route())


_CONVERTER = re.compile(r"\{([^{}:]+):[^{}]*\}")


def _without_converters(template: str) -> str:
    """``/orders/{id:int}`` -> ``/orders/{id}``: the template as the framework shows it to users.

    >>> _without_converters("/files/{name:path}")
    '/files/{name}'
    """
    return _CONVERTER.sub(r"{\1}", template) if ":" in template else template


def _resolve(route: RouteResolver | None, request: Any) -> str | None:
    """The route template from the resolver, or (ASGI) from the framework's matched route."""
    try:
        if route is not None:
            resolved = route(request)
            if resolved is None or isinstance(resolved, str):
                return resolved
            warn_once(
                "http:route-value",
                "the HTTP route resolver returned %s, not a str; ignored",
                safe_repr(resolved),
            )
            return None
        matched = request.get("route") if isinstance(request, dict) else None
        if isinstance(matched, str):
            return _without_converters(matched)
        # Starlette's routes: path_format is the template without converters, path has them.
        path = getattr(matched, "path_format", None) or getattr(matched, "path", None)
        return _without_converters(path) if isinstance(path, str) else None
    except Exception:
        warn_once("http:route", "the HTTP route resolver failed; requests are recorded without route")
        logger.debug("route failure", exc_info=True)
        return None


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ASGIMiddleware:
    """Wrap an ASGI application: a span, a duration and an active count for every HTTP request.

    The route is ``route(scope)`` if given, else the framework's matched route left in
    ``scope["route"]`` (Starlette and FastAPI do). Lifespan and websocket traffic pass through.

    >>> import otel_pipeline as op
    >>> async def app(scope, receive, send):
    ...     await send({"type": "http.response.start", "status": 204, "headers": []})
    ...     await send({"type": "http.response.body", "body": b""})
    >>> app = op.ASGIMiddleware(app)
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, route: RouteResolver | None = None
    ) -> None:
        if not callable(app):
            raise TypeError(
                f"otel_pipeline: ASGIMiddleware needs an ASGI application, got {type(app).__name__}"
            )
        self.app = app
        self.route = route
        self.known_methods = known_methods()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection through the wrapped application."""
        try:
            http = scope.get("type") == "http"
        except Exception:  # not a mapping: not ours to judge, the app gets it as it is
            http = False
        if not http:
            await self.app(scope, receive, send)
            return
        request = _start(
            _text(scope.get("method"), "GET"),
            _text(scope.get("scheme"), "http"),
            _text(scope.get("path"), "") or "/",
            _text(scope.get("http_version"), ""),
            _asgi_headers(scope.get("headers")),
            _DICT_GETTER,
            self.known_methods,
        )
        if request is None:
            await self.app(scope, receive, send)
            return

        async def recording_send(message: MutableMapping[str, Any]) -> None:
            try:
                if message.get("type") == "http.response.start":
                    request.status = _status_code(message.get("status", 200))
            except Exception:  # a malformed message is the server's to refuse, not ours
                warn_once(
                    "http:message", "ASGI message %s is not a mapping; not recorded", safe_repr(message)
                )
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except BaseException as error:
            request.finish(error, _resolve(self.route, scope))
            raise
        request.finish(None, _resolve(self.route, scope))


class HttpRequest:
    """What ``with client.request(...) as req`` binds: set ``req.status_code`` once answered.

    ``req.headers`` holds the trace context (``traceparent``) to send with the request.
    """

    __slots__ = ("headers", "status_code")

    def __init__(self) -> None:
        self.status_code: int | None = None
        self.headers: dict[str, str] = {}


class _ClientTracer(HookTracer):
    """The pipeline's tracer, starting ``CLIENT`` spans (same provider, same sampling)."""

    def __init__(self, tracer: HookTracer) -> None:
        super().__init__(tracer._tracer, tracer._rate, tracer._ids)

    def start(
        self, name: str, attributes: Any = None, kind: SpanKind | None = None, links: Any = None
    ) -> Any:
        return super().start(name, attributes, SpanKind.CLIENT, links)


class _ClientCall(Operation):
    """One outgoing request (a fresh operation per call: method and address vary)."""

    __slots__ = ("_attributes", "_instrument")

    def __init__(
        self,
        instrument: Instrument[Records],
        tracer: HookTracer,
        peer: str,
        method: str,
        url: str,
        known: frozenset[str],
        factory: Callable[[], Any],
    ) -> None:
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:  # e.g. "http://[::1": recorded without an address; the caller's client will say
            warn_once(
                "http:url",
                "http_client %r: URL %s cannot be parsed; recorded without it",
                peer,
                safe_repr(url),
            )
            parts, hostname = urlsplit(""), None
        scheme = parts.scheme.lower()
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            port = None
        attributes: dict[str, Any] = {METHOD: method if method in known else "_OTHER"}
        attributes["server.address"] = hostname or ""
        if port is not None:
            attributes["server.port"] = port
        span_attributes = {**attributes, "peer.service": peer}
        if hostname:
            netloc = hostname if port is None or parts.port is None else f"{hostname}:{parts.port}"
            # Without credentials, query or fragment: those may carry secrets.
            span_attributes["url.full"] = parts._replace(netloc=netloc, query="", fragment="").geturl()
        name = "HTTP" if attributes[METHOD] == "_OTHER" else attributes[METHOD]
        super().__init__(tracer, name, span_attributes, factory)
        self._instrument = instrument
        self._attributes = attributes

    def result(self, timed: Timed) -> HttpRequest:
        request = HttpRequest()
        timed.extra = request
        propagate.inject(request.headers)
        return request

    def fallback(self, timed: Timed) -> HttpRequest:
        """What the block binds when :meth:`result` failed: the request, without trace headers."""
        request: HttpRequest | None = timed.extra
        if request is None:
            request = timed.extra = HttpRequest()
        return request

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        request: HttpRequest | None = timed.extra
        status = None if request is None or request.status_code is None else _status_code(request.status_code)
        attributes = dict(self._attributes)
        if status is not None:
            attributes[STATUS] = status
        failed = error_type(exc_type)
        if failed is None and status is not None and status >= 400:
            failed = str(status)
        if failed is not None:
            attributes["error.type"] = failed
        self._instrument.bind(attributes).record(duration)
        span = timed.span
        if span.is_recording():
            if status is not None:
                span.set_attribute(STATUS, status)
            if exc_type is None and failed is not None:
                span.set_attribute("error.type", failed)
                span.set_status(Status(StatusCode.ERROR))


class _UnboundCall(Noop):
    """A request recorded nowhere (instrumentation off) that still binds a usable request."""

    __slots__ = ()

    def __enter__(self) -> Any:
        return HttpRequest()

    async def __aenter__(self) -> Any:
        return HttpRequest()


class _ClientState(NamedTuple):
    """What an HTTP client hook records into on one pipeline."""

    duration: Instrument[Records]
    tracer: HookTracer


class HttpClient(Hook[_ClientState]):
    """Calls to one dependency over HTTP. Get it with :func:`otel_pipeline.http_client`."""

    kind = "http client"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._known = known_methods()

    def _bind(self, pipeline: Runtime) -> _ClientState:
        assert pipeline.registry is not None
        return _ClientState(pipeline.registry.instrument(CLIENT_DURATION), _ClientTracer(pipeline.tracer))

    def request(self, method: str, url: str) -> TimedScope:
        """Time one request: ``with client.request("GET", url) as req: ...; req.status_code = 200``.

        Also ``async with``. An exception leaving the block is recorded as ``error.type`` and
        re-raised; a status of 400 or more is recorded as an error too. The span is a ``CLIENT``
        span named after the method, a child of the current span. A ``method`` that is not a
        non-empty str is recorded as ``_OTHER``, a ``url`` that is not a str without an address
        (one warning each); the block runs either way.
        """
        method = label(self, "request", "method", method, placeholder="_OTHER")  # as unknown methods are
        if type(url) is not str:
            url = _bad_url(self, url)
        factory = lambda: self.request(method, url)  # noqa: E731
        try:
            bound = self._current()
            if bound is not None:
                instrument, tracer = bound
                call = _ClientCall(instrument, tracer, self.name, method.upper(), url, self._known, factory)
                return Timed(call)
        except Exception as exc:
            internal_error("http_client.request", exc)
        return _UnboundCall(factory)


def _bad_url(hook: HttpClient, url: object) -> str:
    """The URL of a request given one that is not a str: none (recorded without an address)."""
    if isinstance(url, str):
        return str.__str__(url)
    dropped(hook, "request", "url", url, "wrong type", "a str", "recorded without an address")
    return ""


def http_client(name: str) -> HttpClient:
    """The HTTP client hook for the dependency named ``name`` (same name, same object).

    >>> import otel_pipeline as op
    >>> op.http_client("payments") is op.http_client("payments")
    True
    """
    return get_hook(HttpClient, name)
