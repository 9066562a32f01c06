"""The merged OTLP stream of a worker group: the option, the group's identity, the exporter's roles.

The stream itself, from real processes through rotel, is tested in
tests/integration/test_worker_group_otlp.py.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData, ResourceMetrics
from opentelemetry.sdk.resources import Resource

import otel_pipeline as op
from otel_pipeline._internal import group
from otel_pipeline._internal.group import wire
from otel_pipeline._internal.group.export import NAMESPACE, GroupExporter, group_resource, instance_id
from otel_pipeline._internal.providers import metric_readers
from otel_pipeline.config import Config


def test_group_export_defaults_to_per_process_and_takes_merged() -> None:
    assert Config.resolve({}).group_export == "per_process"
    assert Config.resolve({}, group_export="merged").group_export == "merged"
    assert Config.resolve({"OTEL_PIPELINE_GROUP_EXPORT": " merged "}).group_export == "merged"
    # An argument wins over the variable.
    environ = {"OTEL_PIPELINE_GROUP_EXPORT": "merged"}
    assert Config.resolve(environ, group_export="per_process").group_export == "per_process"


@pytest.mark.parametrize("value", ["mergd", "MERGED", "", 1, ("merged",)])
def test_a_bad_group_export_names_the_value_and_what_is_allowed(value: Any) -> None:
    with pytest.raises(ValueError, match="group_export") as raised:
        Config.resolve({}, group_export=value)
    assert str(raised.value) == (
        f"otel_pipeline: group_export={value!r} is not valid; use one of 'merged', 'per_process'"
    )


def test_a_bad_group_export_variable_is_named() -> None:
    with pytest.raises(ValueError, match="OTEL_PIPELINE_GROUP_EXPORT") as raised:
        Config.resolve({"OTEL_PIPELINE_GROUP_EXPORT": "both"})
    assert str(raised.value) == (
        "otel_pipeline: group_export='both' is not valid; use one of 'merged', 'per_process' "
        "(set by the environment variable OTEL_PIPELINE_GROUP_EXPORT)"
    )


def test_configure_takes_group_export_and_suggests_it() -> None:
    with pytest.raises(ValueError, match="group_export='all' is not valid"):
        op.configure(exporter="none", group_export="all")
    with pytest.raises(TypeError, match=r"group_exports \(did you mean group_export\?\)"):
        op.configure(exporter="none", group_exports="merged")


def test_the_instance_id_is_a_uuid5_of_what_names_the_group() -> None:
    made = instance_id("orders", "web-1", 9464, uid=1000)
    assert made == str(uuid.uuid5(NAMESPACE, "orders\0web-1\x001000\x009464"))
    assert uuid.UUID(made).version == 5
    assert instance_id("orders", "web-1", 9464, uid=1000) == made  # every process, every restart
    others = {
        instance_id("billing", "web-1", 9464, uid=1000),
        instance_id("orders", "web-2", 9464, uid=1000),
        instance_id("orders", "web-1", 9465, uid=1000),
        instance_id("orders", "web-1", 9464, uid=1001),
    }
    assert len(others) == 4
    assert made not in others


def test_the_group_resource_has_the_group_id_and_no_pid() -> None:
    process = Resource(
        {"service.name": "orders", "host.name": "web-1", "process.pid": 42, "service.instance.id": "p-42"}
    )
    made = group_resource(process, 9464)
    assert dict(made.attributes) == {
        "service.name": "orders",
        "host.name": "web-1",
        "service.instance.id": instance_id("orders", "web-1", 9464),
    }
    # A service.instance.id the user set is the same in every process already: it stays.
    assert group_resource(process, 9464, keep_id=True).attributes["service.instance.id"] == "p-42"


def _pipeline(**options: Any) -> Any:
    return SimpleNamespace(config=Config.resolve({}, **options))


@pytest.mark.parametrize(
    ("options", "in_group"),
    [
        ({"exporter": "prometheus"}, True),
        ({"exporter": "otlp"}, False),  # per_process: each process alone, as before
        ({"exporter": "otlp", "group_export": "merged"}, True),
        ({"exporter": "prometheus,otlp"}, False),
        ({"exporter": "prometheus,otlp", "group_export": "merged"}, True),
        ({"exporter": "otlp,console", "group_export": "merged"}, False),
        ({"exporter": "otlp", "group_export": "merged", "worker_group": False}, False),
        ({"exporter": "otlp", "group_export": "merged", "prometheus_port": 0}, False),
    ],
)
def test_which_configurations_form_a_group(options: dict[str, Any], in_group: bool) -> None:
    assert wire.available()  # Linux
    assert group.wanted(_pipeline(**options)) is in_group


def test_an_otlp_only_group_has_its_own_socket_name_per_service() -> None:
    assert wire.otlp_name(9464, "orders", uid=7).startswith(wire.abstract_name(9464, uid=7) + b"/otlp/")
    assert wire.otlp_name(9464, "orders", uid=7) != wire.otlp_name(9464, "billing", uid=7)
    assert len(wire.otlp_name(9464, "x" * 500)) < 108  # the limit of a socket name


def test_the_otlp_exporter_is_wrapped_only_for_merged() -> None:
    merged = metric_readers(Config.resolve({}, exporter="otlp", group_export="merged"))
    exporters = [exporter for _, exporter in merged.export_state.exporters]
    assert [type(exporter) for exporter in exporters] == [GroupExporter]
    assert exporters[0].reader is merged.readers[0]
    assert merged.prometheus_registry is not None  # the hand-over's reader, served nowhere
    alone = metric_readers(Config.resolve({}, exporter="otlp"))
    assert [type(exporter).__name__ for _, exporter in alone.export_state.exporters] == ["OTLPMetricExporter"]
    assert alone.prometheus_registry is None


class _Inner:
    _preferred_temporality: dict[type, Any] = {}
    _preferred_aggregation: dict[type, Any] = {}

    def __init__(self) -> None:
        self.sent: list[MetricsData] = []
        self._session = "pool"

    def export(self, data: MetricsData, timeout_millis: float = 10_000) -> MetricExportResult:
        self.sent.append(data)
        return MetricExportResult.SUCCESS


def _data(pid: int) -> MetricsData:
    resource = Resource({"service.name": "orders", "host.name": "h", "process.pid": pid})
    return MetricsData(resource_metrics=[ResourceMetrics(resource, [], "")])


def test_the_exporter_pushes_by_the_process_role() -> None:
    inner = _Inner()
    exporter = GroupExporter(inner, 9464)
    assert exporter._session == "pool"  # the wrapped one's (a forked child closes its pool)
    own = _data(1)
    assert exporter.export(own) is MetricExportResult.SUCCESS
    assert inner.sent == [own]  # not in a group: its own stream, as before
    merged = _data(1)
    answers: dict[str, MetricsData | None] = {"member": None, "hub": merged}
    for role, answer in answers.items():
        exporter.group = SimpleNamespace(export_data=lambda data, answer=answer: answer)  # type: ignore[assignment]
        inner.sent.clear()
        assert exporter.export(own) is MetricExportResult.SUCCESS, role
        if answer is None:
            assert inner.sent == []  # a member pushes nothing: the hub does
        else:
            (sent,) = inner.sent
            attributes = dict(sent.resource_metrics[0].resource.attributes)
            assert attributes == {
                "service.name": "orders",
                "host.name": "h",
                "service.instance.id": instance_id("orders", "h", 9464),
            }
