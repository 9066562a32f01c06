"""Build the OpenTelemetry resource, readers, exporters and providers for a :class:`Config`."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, cast

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
    _Gauge,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from otel_pipeline._internal.exemplars import TRACKER
from otel_pipeline._internal.export_state import ExportState
from otel_pipeline._internal.spans import PresetIdGenerator
from otel_pipeline.config import Config

__all__ = [
    "Built",
    "build_meter_provider",
    "build_resource",
    "build_tracer_provider",
    "cardinality_limits",
    "metric_exporter",
    "metric_readers",
    "otlp_metric_exporter",
    "otlp_span_exporter",
]

_INSTRUMENT_CLASSES = (
    Counter,
    UpDownCounter,
    Histogram,
    _Gauge,
    ObservableCounter,
    ObservableUpDownCounter,
    ObservableGauge,
)


def build_resource(config: Config) -> Resource:
    """service.name/version/instance.id, host.name, process.pid, plus OTEL_RESOURCE_ATTRIBUTES.

    ``service.instance.id`` comes from the SDK's detector: one id per process, a new one in a
    forked child; a value given in the resource attributes wins.
    """
    attributes: dict[str, Any] = {"host.name": socket.gethostname()}
    attributes.update(config.resource_attributes)
    attributes.update({"service.name": config.service_name, "process.pid": os.getpid()})
    if config.service_version:
        attributes["service.version"] = config.service_version
    return Resource.create(attributes)


def cardinality_limits(config: Config) -> dict[type, int]:
    return dict.fromkeys(_INSTRUMENT_CLASSES, config.cardinality_limit)


def _cumulative() -> dict[type, AggregationTemporality]:
    return dict.fromkeys(_INSTRUMENT_CLASSES, AggregationTemporality.CUMULATIVE)


def _insecure(endpoint: str) -> bool:
    return endpoint.startswith("http://")


def otlp_metric_exporter(config: Config) -> Any:
    endpoint = config.resolved_otlp_endpoint
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=endpoint,
            insecure=_insecure(endpoint),
            timeout=config.export_timeout,
            preferred_temporality=_cumulative(),
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(
        endpoint=endpoint.rstrip("/") + "/v1/metrics",
        timeout=config.export_timeout,
        preferred_temporality=_cumulative(),
    )


def otlp_span_exporter(config: Config) -> SpanExporter:
    endpoint = config.resolved_otlp_endpoint
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(
            endpoint=endpoint, insecure=_insecure(endpoint), timeout=config.export_timeout
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=config.export_timeout)


@dataclass
class Built:
    """What :func:`metric_readers` made: the readers, and the Prometheus collector registry if any."""

    readers: list[MetricReader] = field(default_factory=list)
    prometheus_registry: Any = None
    local_reader: InMemoryMetricReader | None = None
    export_state: ExportState = field(default_factory=ExportState)


#: The signal name each periodically exporting exporter's results are recorded under (/health).
_SIGNALS = {
    "otlp": "metrics",
    "console": "metrics",
    "pushgateway": "pushgateway",
    "remote_write": "remote_write",
}


def metric_exporter(name: str, config: Config) -> MetricExporter:
    """The exporter behind a periodic reader for one of ``config.exporters`` (not prometheus/none)."""
    if name == "otlp":
        return cast("MetricExporter", otlp_metric_exporter(config))
    if name == "pushgateway":
        from otel_pipeline._internal.push import PushgatewayExporter

        assert config.pushgateway_url is not None  # validated by Config
        return PushgatewayExporter(
            config.pushgateway_url,
            config.service_name,
            grouping=dict(config.pushgateway_grouping),
            timeout=config.export_timeout,
            delete_on_shutdown=config.pushgateway_delete_on_shutdown,
        )
    if name == "remote_write":
        from otel_pipeline._internal.remote_write import RemoteWriteExporter

        assert config.remote_write_url is not None  # validated by Config
        return RemoteWriteExporter(config.remote_write_url, timeout=config.export_timeout)
    return ConsoleMetricExporter()


def metric_readers(config: Config, *, forked: bool = False) -> Built:
    """A reader for each of ``config.exporters``, plus a local reader for summaries and /stats.

    They all belong to one MeterProvider (the caller's), so every exporter sees the same
    instruments and the same instrument core. In a forked child (``forked``) the Pushgateway is
    left out: the child's pushes would replace the parent's group.
    """
    built = Built()
    limits = cardinality_limits(config)
    from otel_pipeline._internal.group import merged_otlp

    merged = merged_otlp(config)
    for name in config.exporters:
        if name == "prometheus":
            from otel_pipeline._internal.exposition import ScrapeReader

            # Collected by the /metrics scrape itself; OpenMetrics scrapes get exemplars.
            built.prometheus_registry = ScrapeReader(cardinality_limits=limits)
            built.readers.append(built.prometheus_registry)
        elif name == "none" or (forked and name == "pushgateway"):
            continue
        else:
            exporter = metric_exporter(name, config)
            if merged and name == "otlp":
                exporter = _group_exporter(exporter, config)
            built.export_state.watch(exporter, _SIGNALS[name])
            reader = PeriodicExportingMetricReader(
                exporter,
                export_interval_millis=config.export_interval * 1000.0,
                export_timeout_millis=config.export_timeout * 1000.0,
                cardinality_limits=limits,
            )
            if merged and name == "otlp":
                exporter.reader = reader  # type: ignore[attr-defined]
            built.readers.append(reader)
    if merged and built.prometheus_registry is None:
        from otel_pipeline._internal.exposition import ScrapeReader

        # Not served: what this process hands over to its group's hub (see group/export.py).
        built.prometheus_registry = ScrapeReader(cardinality_limits=limits)
        built.readers.append(built.prometheus_registry)
    built.local_reader = InMemoryMetricReader(preferred_temporality=_cumulative(), cardinality_limits=limits)
    built.readers.append(built.local_reader)
    return built


def _group_exporter(exporter: MetricExporter, config: Config) -> MetricExporter:
    """The OTLP exporter wrapped to push the worker group's merged stream from the hub only."""
    from otel_pipeline._internal.group.export import GroupExporter

    keep_id = "service.instance.id" in config.resource_attributes
    return GroupExporter(exporter, config.prometheus_port, keep_id=keep_id)


def build_meter_provider(resource: Resource, readers: list[MetricReader]) -> MeterProvider:
    # Our own exit handler shuts down within a bound; the SDK's would not be bounded.
    return MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)


def build_tracer_provider(
    config: Config,
    resource: Resource,
    processors: list[SpanProcessor] | None = None,
    export_state: ExportState | None = None,
) -> tuple[TracerProvider, PresetIdGenerator]:
    """A tracer provider with parent-based ratio sampling, our id generator and exporters."""
    ids = PresetIdGenerator()
    provider = TracerProvider(
        resource=resource,
        sampler=ParentBased(TraceIdRatioBased(config.trace_sample_rate)),
        id_generator=ids,
        shutdown_on_exit=False,
    )
    provider.add_span_processor(TRACKER)
    if processors is not None:
        for processor in processors:
            provider.add_span_processor(processor)
    else:
        if _spans_over_otlp(config):
            provider.add_span_processor(
                BatchSpanProcessor(
                    (export_state or ExportState()).watch(otlp_span_exporter(config), "spans"),
                    schedule_delay_millis=min(config.export_interval, 5.0) * 1000.0,
                    export_timeout_millis=config.export_timeout * 1000.0,
                )
            )
        if config.exports("console"):
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return provider, ids


def _spans_over_otlp(config: Config) -> bool:
    """Spans go over OTLP with the otlp exporter, or with an ``otlp_endpoint`` next to a Prometheus one."""
    prometheus = ("prometheus", "pushgateway", "remote_write")
    return config.exports("otlp") or (
        bool(config.otlp_endpoint) and any(config.exports(name) for name in prometheus)
    )
