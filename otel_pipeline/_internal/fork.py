"""Forked children start clean: empty aggregates, their own service.instance.id, no double export.

After ``os.fork()`` (multiprocessing's fork start method, pre-forking servers) the child holds a
copy of everything the parent recorded. Exporting it again would count it twice. So the child
abandons the copied pipeline without flushing it (its readers go quiet, see ``merge.py``) and
builds a fresh one from the same options: new resource (new ``service.instance.id``), empty
registry, its own exporter threads. The parent's ``/metrics`` port belongs to the parent: a
child of a Prometheus-exporting process joins the parent's worker group as a member (its hub
serves what the child records, see ``group/``), or with the group off serves nothing.

Nothing of the parent's stays open in the child: the server closes its listening socket and
client connections (``server.py``'s own at-fork handler), and the copied exporters' pooled HTTP
connections to the receiver are closed here (close, never shut down: the parent still uses them).
The copied exporter threads do not exist in the child; gRPC channels hold no socket there. A
connection that an export was using at the very moment of the fork is not in the pool: its copy
stays open in the child (never used) until the child exits.
"""

from __future__ import annotations

import os
import threading
import uuid

from opentelemetry.sdk.resources import Resource

from otel_pipeline._internal import boundary, errors, group, runtime
from otel_pipeline._internal.exemplars import TRACKER

__all__ = ["register"]

_registered = False


def _in_child() -> None:
    # Locks held by other threads at fork time would never be released in the child.
    runtime._lock = threading.RLock()
    errors._seen_lock = threading.Lock()
    boundary._lock = threading.Lock()
    TRACKER.active = 0
    TRACKER._lock = threading.Lock()
    # Held until the child's own pipeline is current: a SIGTERM arriving meanwhile (a pool
    # terminated right after it forked a replacement worker) runs its flush on a thread, which
    # would otherwise shut down the parent's pipeline, copied with locks its threads held.
    with runtime._lock:
        _rebuild()


def _rebuild() -> None:
    pipeline = runtime.STATE.pipeline
    if pipeline is None or not pipeline.enabled:
        return
    _release_exporters(pipeline)
    try:
        # Resource.create() runs detectors on a thread pool, which must not be used in an at-fork
        # handler; the parent's resource with a new identity is what the child needs anyway.
        identity: dict[str, str | int] = {
            "service.instance.id": str(uuid.uuid4()),
            "process.pid": os.getpid(),
        }
        resource = pipeline.resource.merge(Resource(identity)) if pipeline.resource is not None else None
        fresh = runtime.build_pipeline(
            pipeline.config, serve=False, resource=resource, forked=True, wiring=pipeline.wiring
        )
    except Exception:
        errors.logger.exception("could not rebuild the pipeline in a forked child")
        runtime.install(None)
        return
    if pipeline.config.exports("pushgateway"):
        errors.warn_once(
            "fork-pushgateway",
            "forked child (pid %d) does not push to the Pushgateway: its pushes would replace the "
            "parent's group; use exporter='otlp' for multi-process workers",
            os.getpid(),
        )
    if group.after_fork_in_child(pipeline, fresh):
        pass  # a member of the parent's worker group: its hub serves what the child records
    elif pipeline.config.exports("prometheus"):
        errors.warn_once(
            "fork-prometheus",
            "forked child (pid %d) of a process serving /metrics serves none itself (the worker group "
            "is off: worker_group=False, port 0 or not Linux); see docs/operations.md",
            os.getpid(),
        )
    runtime.install(fresh)


#: Where the OTLP/HTTP exporters keep their connection pool (the attribute moved between releases).
_POOLS = (("_session",), ("_client", "_transport"), ("_client", "_session"))


def _release_exporters(pipeline: runtime.Runtime) -> None:
    """Close the copied exporters' pooled keep-alive connections to the receiver."""
    for _, exporter in pipeline.export_state.exporters:
        for path in _POOLS:
            pool: object = exporter
            for attribute in path:
                pool = getattr(pool, attribute, None)
            close = getattr(pool, "close", None)
            if pool is None or not callable(close):
                continue
            try:
                close()
            except Exception:
                errors.logger.debug("closing an inherited exporter connection failed", exc_info=True)
            break


def register() -> None:
    """Install the at-fork handler (once per process)."""
    global _registered
    if not _registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_in_child)
        _registered = True
