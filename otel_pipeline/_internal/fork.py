"""Forked children start clean: empty aggregates, their own service.instance.id, no double export.

After ``os.fork()`` (multiprocessing's fork start method, pre-forking servers) the child holds a
copy of everything the parent recorded. Exporting it again would count it twice. So the child
abandons the copied pipeline without flushing it (its readers go quiet, see ``merge.py``) and
builds a fresh one from the same options: new resource (new ``service.instance.id``), empty
registry, its own exporter threads. The parent's ``/metrics`` port belongs to the parent, so a
child of a Prometheus-exporting process serves no endpoint of its own (use OTLP for
multi-process workers, see docs/operations.md).
"""

from __future__ import annotations

import os
import threading
import uuid

from opentelemetry.sdk.resources import Resource

from otel_pipeline._internal import errors, runtime
from otel_pipeline._internal.exemplars import TRACKER

__all__ = ["register"]

_registered = False


def _in_child() -> None:
    # Locks held by other threads at fork time would never be released in the child.
    runtime._lock = threading.RLock()
    errors._seen_lock = threading.Lock()
    TRACKER.active = 0
    TRACKER._lock = threading.Lock()
    pipeline = runtime.STATE.pipeline
    if pipeline is None or not pipeline.enabled:
        return
    try:
        # Resource.create() runs detectors on a thread pool, which must not be used in an at-fork
        # handler; the parent's resource with a new identity is what the child needs anyway.
        identity: dict[str, str | int] = {
            "service.instance.id": str(uuid.uuid4()),
            "process.pid": os.getpid(),
        }
        resource = pipeline.resource.merge(Resource(identity)) if pipeline.resource is not None else None
        fresh = runtime.build_pipeline(pipeline.config, serve=False, resource=resource, forked=True)
    except Exception:
        errors.logger.exception("otel_pipeline: could not rebuild the pipeline in a forked child")
        runtime.install(None)
        return
    if pipeline.config.exports("pushgateway"):
        errors.warn_once(
            "fork-pushgateway",
            "forked child (pid %d) does not push to the Pushgateway: its pushes would replace the "
            "parent's group; use exporter='otlp' for multi-process workers",
            os.getpid(),
        )
    if pipeline.config.exports("prometheus"):
        errors.warn_once(
            "fork-prometheus",
            "otel_pipeline: forked child (pid %d) of a process serving /metrics serves none itself; "
            "use exporter='otlp' for multi-process workers",
            os.getpid(),
        )
    runtime.install(fresh)


def register() -> None:
    """Install the at-fork handler (once per process)."""
    global _registered
    if not _registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_in_child)
        _registered = True
