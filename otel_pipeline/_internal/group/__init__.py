"""Worker groups: one ``/metrics`` with the exact totals of every process of a service on a host.

Processes of one service that configure the same Prometheus port serve one ``/metrics`` (and
``/health``, ``/stats``, ``/trends``) for all of them.

The design and its guarantees are in docs/operations.md ("Multi-process workers"). In short:

- ``wire.py``: the group's abstract Unix socket (the election: whoever binds it is the hub) and
  its length-prefixed JSON messages;
- ``snapshot.py``: a process's collection as plain lists (a member's hand-over);
- ``merge.py``: the hub's merge, per metric rule from the catalogue, with the departed accumulator;
- ``export.py``: the group's one OTLP stream (``group_export="merged"``), pushed by the hub;
- ``hub.py``: the serving process's side; ``node.py``: one process's role, election, hand-overs
  and take-over of the port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otel_pipeline._internal.group import wire
from otel_pipeline._internal.group.node import Group

if TYPE_CHECKING:
    from otel_pipeline._internal.runtime import Runtime
    from otel_pipeline.config import Config

__all__ = ["Group", "after_fork_in_child", "merged_otlp", "serve", "wanted"]


def wanted(pipeline: Runtime) -> bool:
    """Whether ``pipeline`` is part of a worker group (not: opted out, port 0, not Linux).

    A group serves /metrics (``exporter="prometheus"``), pushes one merged OTLP stream
    (``exporter="otlp"`` with ``group_export="merged"``), or both (``"prometheus,otlp"``).
    """
    config = pipeline.config
    if not (config.worker_group and config.prometheus_port != 0 and wire.available()):
        return False
    names = set(config.exporters)
    return names == {"prometheus"} or (merged_otlp(config) and names <= {"prometheus", "otlp"})


def merged_otlp(config: Config) -> bool:
    """Whether ``config`` asks for the group's one merged OTLP stream (``group_export="merged"``)."""
    return config.worker_group and config.group_export == "merged" and config.exports("otlp")


def serve(pipeline: Runtime, reader: Any) -> None:
    """Serve /metrics for ``pipeline``: alone, or as the hub or a member of its worker group.

    A process that only pushes OTLP serves nothing: ``reader`` is then its group's hand-over.
    """
    if not wanted(pipeline):
        if not pipeline.config.exports("prometheus"):
            return
        from otel_pipeline._internal.group.node import _start_server

        pipeline.server = _start_server(pipeline, reader)
        return
    group = Group(pipeline, reader)
    try:
        group.elect()
    except BaseException:
        group.abandon()  # nothing was opened but its own wake-up sockets
        raise
    pipeline.group = group
    pipeline.on_shutdown.append(group.close)


def after_fork_in_child(parent: Runtime, child: Runtime) -> bool:
    """In a forked child: drop the parent's group sockets; the child joins the group. True if it did."""
    group = parent.group
    if not isinstance(group, Group):
        return False
    group.abandon()
    reader = child.scrape_reader
    if reader is None or not wanted(child):
        return False
    joined = Group(child, reader)
    joined.join_forked()
    child.group = joined
    child.on_shutdown.append(joined.close)
    return True
