"""Checks the value tests share: /metrics answers and parses, JSON is strict, OTLP encodes.

Each one fails with what went wrong, so a fuzz case that breaks an export names the break.
"""

from __future__ import annotations

import json
import math
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client.parser import text_string_to_metric_families

import otel_pipeline as op
from tests.support.http import request

__all__ = ["encode_otlp", "get_json", "samples", "scrape", "strict_loads"]


def _refuse(constant: str) -> Any:
    raise AssertionError(f"not JSON: {constant}")


def strict_loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` (RFC 8259 JSON only)."""
    return json.loads(text, parse_constant=_refuse)


def scrape(pipeline: op.Pipeline, *, openmetrics: bool = False) -> dict[tuple[str, tuple[Any, ...]], float]:
    """GET /metrics: it answers 200 and parses; every sample value is finite. Samples by (name, labels)."""
    assert pipeline.metrics_url is not None
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    reply = request(pipeline.metrics_url, headers=accept)
    assert reply.status == 200, reply.body[:500]
    text = reply.text
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

        families = list(parse_om(text))  # type: ignore[no-untyped-call]
    else:
        families = list(text_string_to_metric_families(text))
    found: dict[tuple[str, tuple[Any, ...]], float] = {}
    for family in families:
        for sample in family.samples:
            assert math.isfinite(sample.value), sample
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def samples(found: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> list[float]:
    """The values of the samples named ``name`` whose labels include ``labels``."""
    return [
        value
        for (sample, pairs), value in found.items()
        if sample == name and labels.items() <= dict(pairs).items()
    ]


def get_json(pipeline: op.Pipeline, path: str) -> tuple[int, Any]:
    """GET ``path``: (status, body parsed as strict JSON)."""
    assert pipeline.metrics_url is not None
    reply = request(pipeline.metrics_url.replace("/metrics", path))
    return reply.status, strict_loads(reply.body)


def encode_otlp(data: MetricsData | None) -> int:
    """Encode ``data`` as the OTLP exporters do (protobuf, int64 ``as_int``); its size in bytes."""
    if data is None:
        return 0
    return len(encode_metrics(data).SerializeToString())
