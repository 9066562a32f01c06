"""Prometheus remote write (protocol 1.0: protobuf ``WriteRequest``, snappy block compression).

The series are those of ``/metrics``: the exposition :func:`~otel_pipeline._internal.exposition.render`
writes is parsed back into samples, so every name, label and value is what a scrape would store
(``_total`` counters, cumulative ``_bucket`` series with ``le``, ``target_info``). What a scrape
adds, the writer adds: ``job`` (``service.namespace/service.name``, or ``service.name``) and
``instance`` (``service.instance.id``), as the OpenTelemetry Prometheus compatibility
specification maps them; labels with empty values are dropped, as Prometheus does. Every sample
of one export has the collection's timestamp.

The protobuf encoding is written here (four small messages, wire format below) so that the package
keeps its own protobuf version; snappy comes from ``cramjam``, the ``remote-write`` extra.
"""

from __future__ import annotations

import struct
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client.parser import text_string_to_metric_families

from otel_pipeline._internal.exposition import render
from otel_pipeline._internal.push import PushExporter

__all__ = ["RemoteWriteExporter", "encode_write_request", "job_and_instance", "series_of"]

Labels = list[tuple[str, str]]
_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "otel_pipeline",
}
_DOUBLE = struct.Struct("<d")


def _snappy() -> Any:
    try:
        import cramjam
    except ImportError:
        raise ImportError(
            "otel_pipeline: exporter 'remote_write' needs snappy compression from the 'remote-write' "
            "extra: pip install 'otel_pipeline[remote-write]'"
        ) from None
    return cramjam.snappy


def job_and_instance(resource: Mapping[str, Any]) -> Labels:
    """The ``job`` and ``instance`` labels for a resource (OpenTelemetry's Prometheus mapping).

    >>> job_and_instance({"service.namespace": "shop", "service.name": "orders", "service.instance.id": "a1"})
    [('job', 'shop/orders'), ('instance', 'a1')]
    """
    name = str(resource.get("service.name", "unknown_service"))
    namespace = resource.get("service.namespace")
    labels = [("job", f"{namespace}/{name}" if namespace else name)]
    if resource.get("service.instance.id"):
        labels.append(("instance", str(resource["service.instance.id"])))
    return labels


def series_of(exposition: str, extra: Labels) -> Iterator[tuple[Labels, float]]:
    r"""(sorted labels with ``__name__``, value) of every sample in a text exposition.

    ``extra`` labels are added; a sample's own label of the same name becomes ``exported_<name>``
    (what a scrape without ``honor_labels`` does).

    >>> list(series_of('jobs_total{queue="emails",x=""} 2.0\n', [("job", "orders")]))
    [([('__name__', 'jobs_total'), ('job', 'orders'), ('queue', 'emails')], 2.0)]
    """
    added = dict(extra)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = {name: value for name, value in sample.labels.items() if value != ""}
            for name in added.keys() & labels.keys():
                labels[f"exported_{name}"] = labels.pop(name)
            labels.update(added)
            labels["__name__"] = sample.name
            yield sorted(labels.items()), float(sample.value)


# -- protobuf wire format ----------------------------------------------------------------------
# WriteRequest { repeated TimeSeries timeseries = 1; }
# TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
# Label        { string name = 1; string value = 2; }
# Sample       { double value = 1; int64 timestamp = 2; }   (milliseconds since the epoch)


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64 as protobuf writes it (two's complement, 10 bytes if negative)
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_write_request(series: Iterable[tuple[Labels, float]], timestamp_ms: int) -> bytes:
    """The serialized ``WriteRequest``: one time series per item, each with one sample.

    >>> encode_write_request([([("__name__", "up")], 1.0)], 5).hex()
    '0a1d0a0e0a085f5f6e616d655f5f12027570120b09000000000000f03f1005'

    (Field 1 ``timeseries``; in it field 1 ``labels`` ``__name__="up"``, field 2 ``samples``:
    double 1.0, timestamp 5.)
    """
    stamp = b"\x10" + _varint(timestamp_ms)
    out = bytearray()
    for labels, value in series:
        body = bytearray()
        for name, label_value in labels:
            body += _field(1, _field(1, name.encode()) + _field(2, label_value.encode()))
        body += _field(2, b"\x09" + _DOUBLE.pack(value) + stamp)
        out += _field(1, bytes(body))
    return bytes(out)


class RemoteWriteExporter(PushExporter):
    """POSTs every export to a remote-write receiver (Prometheus ``/api/v1/write``, Mimir, ...)."""

    target = "remote-write receiver"

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._compress = _snappy().compress_raw  # fails now, at configure(), without the extra
        super().__init__(url, timeout)
        self._last_timestamp = 0

    def _encode(self, metrics_data: MetricsData) -> bytes:
        resource: dict[str, Any] = {}
        for resource_metrics in metrics_data.resource_metrics:
            resource.update(resource_metrics.resource.attributes)
        series = series_of(render(metrics_data).decode(), job_and_instance(resource))
        # Two pushes in one millisecond (a periodic one, then the final one) would be duplicate
        # samples with other values, which the receiver refuses: timestamps only move forward.
        with self._lock:
            timestamp = self._last_timestamp = max(int(time.time() * 1000), self._last_timestamp + 1)
        message = encode_write_request(series, timestamp)
        return bytes(self._compress(message))

    def _send(self, body: bytes, timeout: float) -> None:
        request = urllib.request.Request(self.url, data=body, headers=_HEADERS, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
