"""An in-test OTLP receiver on loopback: gRPC (Metrics/TraceService) and HTTP (/v1/metrics, /v1/traces).

It decodes every request with ``opentelemetry-proto`` and keeps it, so a test can assert exactly
which metric points and spans arrived, with which resource.

>>> with OtlpReceiver() as receiver:                                   # doctest: +SKIP
...     configure(exporter="otlp", otlp_endpoint=receiver.grpc_endpoint)
...     receiver.wait_for_point("queue.jobs.enqueued", {"queue.name": "emails"})
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support import OtlpEndpoints, wait_until

__all__ = ["OtlpReceiver", "ReceivedPoint", "ReceivedSpan", "attributes_of", "value_of"]


def value_of(value: AnyValue) -> Any:
    """A Python value for an OTLP ``AnyValue``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(value_of(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_of(attributes: Any) -> dict[str, Any]:
    """A dict for a repeated ``KeyValue`` field."""
    pairs: list[KeyValue] = list(attributes)
    return {kv.key: value_of(kv.value) for kv in pairs}


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point as received: its metric (name, unit, description, kind) and resource."""

    metric: Metric
    point: Any
    resource: dict[str, Any]
    scope: str
    protocol: str

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes_of(self.point.attributes)

    @property
    def kind(self) -> str:
        """``sum``, ``gauge``, ``histogram``, ..."""
        return str(self.metric.WhichOneof("data"))

    @property
    def value(self) -> float:
        """A sum/gauge point's value (int or double)."""
        return float(getattr(self.point, str(self.point.WhichOneof("value"))))


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as received, with its resource and scope name."""

    span: Span
    resource: dict[str, Any]
    scope: str
    protocol: str

    @property
    def name(self) -> str:
        return str(self.span.name)

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes_of(self.span.attributes)


class OtlpReceiver(OtlpEndpoints):
    """Collects decoded ``Export*ServiceRequest``s from gRPC and HTTP on free loopback ports."""

    def __init__(self) -> None:
        self.metrics_requests: list[tuple[str, metrics_service_pb2.ExportMetricsServiceRequest]] = []
        self.trace_requests: list[tuple[str, trace_service_pb2.ExportTraceServiceRequest]] = []
        #: Set to a gRPC status code / HTTP status to refuse every request (retry tests).
        self.refuse_with: int | None = None
        self._changed = threading.Condition()
        self._grpc: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.grpc_port = 0
        self.http_port = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _MetricsServicer(self), server
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceServicer(self), server
        )
        self.grpc_port = int(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        self._grpc = server
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(self))
        self._http.daemon_threads = True
        self.http_port = int(self._http.server_address[1])
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        """Stop both servers; idempotent."""
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            if self._http_thread is not None:
                self._http_thread.join(5)
            self._http = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- recording --------------------------------------------------------------------------

    def _add_metrics(self, protocol: str, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self._changed:
            self.metrics_requests.append((protocol, request))
            self._changed.notify_all()

    def _add_traces(self, protocol: str, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._changed:
            self.trace_requests.append((protocol, request))
            self._changed.notify_all()

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._changed:
            self.metrics_requests.clear()
            self.trace_requests.clear()

    # -- reading ----------------------------------------------------------------------------

    def all_points(self) -> Iterator[ReceivedPoint]:
        """Every data point received, in arrival order."""
        with self._changed:
            requests = list(self.metrics_requests)
        for protocol, request in requests:
            for resource_metrics in request.resource_metrics:
                resource = attributes_of(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        data = getattr(metric, str(metric.WhichOneof("data")))
                        for point in data.data_points:
                            yield ReceivedPoint(metric, point, resource, scope_metrics.scope.name, protocol)

    def points(self, name: str, attributes: Mapping[str, Any] | None = None) -> list[ReceivedPoint]:
        """Points of metric ``name`` (with exactly ``attributes`` if given), in arrival order."""
        wanted = None if attributes is None else dict(attributes)
        return [
            p
            for p in self.all_points()
            if p.metric.name == name and (wanted is None or p.attributes == wanted)
        ]

    def latest_point(self, name: str, attributes: Mapping[str, Any] | None = None) -> ReceivedPoint:
        """The last point received for ``name`` with exactly ``attributes``; KeyError if none."""
        found = self.points(name, attributes or {})
        if not found:
            names = sorted({p.metric.name for p in self.all_points()})
            raise KeyError(f"no point {name} {dict(attributes or {})}; metrics received: {names}")
        return found[-1]

    def wait_for_point(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        predicate: Callable[[ReceivedPoint], bool] = lambda point: True,
        timeout: float = 30.0,
    ) -> ReceivedPoint:
        """Wait for a point of ``name`` with exactly ``attributes`` satisfying ``predicate``."""

        def probe() -> ReceivedPoint | None:
            for point in reversed(self.points(name, attributes or {})):
                if predicate(point):
                    return point
            self._wait_change(0.2)
            return None

        return wait_until(probe, timeout=timeout, interval=0.0, what=f"OTLP point {name} {attributes}")

    def spans(self, name: str | None = None) -> list[ReceivedSpan]:
        """Spans received (only those named ``name`` if given), in arrival order."""
        with self._changed:
            requests = list(self.trace_requests)
        found = []
        for protocol, request in requests:
            for resource_spans in request.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        if name is None or span.name == name:
                            found.append(ReceivedSpan(span, resource, scope_spans.scope.name, protocol))
        return found

    def wait_for_spans(
        self, name: str | None = None, count: int = 1, timeout: float = 30.0
    ) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans (named ``name``) have arrived; return them all."""

        def probe() -> list[ReceivedSpan] | None:
            found = self.spans(name)
            if len(found) >= count:
                return found
            self._wait_change(0.2)
            return None

        return wait_until(probe, timeout=timeout, interval=0.0, what=f"{count} span(s) named {name!r}")

    def _wait_change(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> metrics_service_pb2.ExportMetricsServiceResponse:
        if self.receiver.refuse_with is not None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "refused by the test")
        self.receiver._add_metrics("grpc", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
        if self.receiver.refuse_with is not None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "refused by the test")
        self.receiver._add_traces("grpc", request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _http_handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if receiver.refuse_with is not None:
                self._reply(receiver.refuse_with, b"")
                return
            if self.path == "/v1/metrics":
                metrics = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                receiver._add_metrics("http/protobuf", metrics)
                self._reply(200, metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString())
            elif self.path == "/v1/traces":
                traces = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                receiver._add_traces("http/protobuf", traces)
                self._reply(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())
            else:
                self._reply(404, b"")

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
