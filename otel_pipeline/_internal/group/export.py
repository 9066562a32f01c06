"""The worker group's one OTLP stream (``group_export="merged"``): the hub pushes the merged totals.

Every process of the group has its OTLP metric exporter wrapped in a :class:`GroupExporter`. On
each export interval it looks at its process's role in the group:

- the hub: it pushes the group's merged points (the same merge as ``/metrics``,
  :meth:`Group.merged`), under the group's resource: ``service.instance.id`` derived from what
  names the group (:func:`instance_id`), no ``process.pid``;
- a member: it pushes nothing (its totals reach the hub by its hand-overs) and reports success;
- the hub that closed with nobody to hand the group to (the group ends): the final export is
  the group's final totals; a hub that handed over to an heir pushes nothing more, the heir
  continues the stream on its own interval;
- not in a group (yet, or any more): the process's own points, as with ``per_process``.

Spans are not touched: they stay per process.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    ResourceMetrics,
)
from opentelemetry.sdk.resources import Resource

if TYPE_CHECKING:
    from otel_pipeline._internal.group.node import Group

__all__ = ["NAMESPACE", "GroupExporter", "group_resource", "instance_id"]

#: The uuid5 namespace of the groups' instance ids (a fixed, random uuid of this package).
NAMESPACE = uuid.UUID("6f1d1c52-3c0e-4f43-9a55-0f6f6c1e5a27")


def instance_id(service: str, host: str, key: int, uid: int | None = None) -> str:
    """The group's ``service.instance.id``: the same for every process, hub and restart of the group.

    A uuid5 of what names the group: the service, the host, the user and the group's key (the
    ``prometheus_port``), so a hub change or recycled workers keep the one series.

    >>> instance_id("orders", "web-1", 9464, uid=1000) == instance_id("orders", "web-1", 9464, uid=1000)
    True
    >>> instance_id("orders", "web-1", 9464, uid=1000) == instance_id("orders", "web-2", 9464, uid=1000)
    False
    >>> instance_id("orders", "web-1", 9464, uid=1000)
    '48831af5-cae1-5645-98a2-4f02c17ea300'
    """
    user = os.getuid() if uid is None else uid
    return str(uuid.uuid5(NAMESPACE, f"{service}\0{host}\0{user}\0{key}"))


def group_resource(resource: Resource, key: int, *, keep_id: bool = False) -> Resource:
    """``resource`` (a process's) as the group's: the group's instance id, no ``process.pid``.

    ``keep_id``: the user set ``service.instance.id`` (``resource_attributes``,
    ``OTEL_RESOURCE_ATTRIBUTES``): it is the same in every process already, and stays.

    >>> made = group_resource(Resource({"service.name": "a", "host.name": "h", "process.pid": 7}), 9464)
    >>> sorted(made.attributes) == ["host.name", "service.instance.id", "service.name"]
    True
    """
    attributes = {k: v for k, v in resource.attributes.items() if k != "process.pid"}
    if not keep_id or "service.instance.id" not in attributes:
        attributes["service.instance.id"] = instance_id(
            str(attributes.get("service.name", "")), str(attributes.get("host.name", "")), key
        )
    return Resource(attributes, resource.schema_url)


class GroupExporter(MetricExporter):
    """An OTLP metric exporter that pushes the group's merged stream, from its hub only."""

    def __init__(self, inner: Any, key: int, *, keep_id: bool = False) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.key = key
        self.keep_id = keep_id
        #: The process's group, set when it joins or becomes the hub (:meth:`attach`).
        self.group: Group | None = None
        #: The periodic reader this exporter is behind (set by whoever builds the reader).
        self.reader: MetricReader | None = None

    def attach(self, group: Group, resource: Resource | None) -> None:
        """Push for ``group`` from now on; ``resource``: this process's.

        A process that recorded nothing collects nothing, and its reader then exports nothing:
        the hub (a pool's parent, often) must still push the group's totals, so its reader gets an
        empty collection to merge into.
        """
        self.group = group
        reader = self.reader
        original: Any = getattr(reader, "_collect", None)
        if reader is None or original is None or resource is None:
            return
        empty = MetricsData(resource_metrics=[ResourceMetrics(resource, [], resource.schema_url)])

        def collect(
            reader_: MetricReader, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricsData | None:
            data: MetricsData | None = original(reader_, timeout_millis=timeout_millis, **kwargs)
            return empty if data is None and self.group is not None else data

        reader._set_collect_callback(collect)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # The wrapped exporter's own attributes (its connection pool, for a forked child to close).
        return getattr(self.__dict__["inner"], name)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        group = self.group
        data: MetricsData | None = metrics_data
        if group is not None:
            data = group.export_data(metrics_data)
            if data is None:
                return MetricExportResult.SUCCESS  # a member: the hub pushes its totals
            if data is not metrics_data:
                data = MetricsData(
                    resource_metrics=[
                        ResourceMetrics(
                            resource=group_resource(rm.resource, self.key, keep_id=self.keep_id),
                            scope_metrics=rm.scope_metrics,
                            schema_url=rm.schema_url,
                        )
                        for rm in data.resource_metrics
                    ]
                )
        result: MetricExportResult = self.inner.export(data, timeout_millis=timeout_millis, **kwargs)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis=timeout_millis))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
