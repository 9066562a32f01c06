"""Snapshots of the JSON endpoints: each response computed once, then sent as prepared bytes.

``/health``, ``/stats``, ``/stats/{name}`` and ``/trends`` are wrapped by one
:class:`SnapshotCache` per server (see :func:`install_snapshots`). A request for a path finds
either a *fresh* snapshot, one taken at most ``max_age`` seconds ago, whose bytes (status
line, headers, body; one version for GET, one for HEAD) the server sends as they are from its
selector thread; or none, and a worker computes a new one. Computations are one at a time per
path: requests arriving meanwhile wait for that one and share its result. So a reader sees data
taken at most ``max_age`` seconds (default :data:`MAX_AGE`, 1 s) before its request arrived,
and a busy endpoint costs one computation per ``max_age`` whatever the request rate. Nothing is
computed while nobody asks. The ``Date`` header of a response is when its snapshot was taken.

Fixed responses (the page) are pinned: prepared once, never stale. The cache is bounded
(:data:`MAX_ENTRIES` paths, :data:`MAX_BYTES` of bodies; the oldest snapshots go first), since
``/stats/{name}`` paths come from clients. At shutdown the cache is closed: every snapshot is
dropped and nothing more is kept, so no old data is served by a server that is stopping.
Registering or removing a health check or a stats collector drops the snapshots too
(:func:`invalidate`): the next request shows the change.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from otel_pipeline._internal.server import MetricsServer, Response, Route, wire_response

if TYPE_CHECKING:
    from otel_pipeline._internal.runtime import Runtime

__all__ = [
    "CACHED_ROUTES",
    "MAX_AGE",
    "MAX_BYTES",
    "MAX_ENTRIES",
    "Snapshot",
    "SnapshotCache",
    "install_snapshots",
    "invalidate",
]

#: Seconds a snapshot is served for.
MAX_AGE = 1.0
#: Snapshots kept at most, and the total size of their bodies.
MAX_ENTRIES = 256
MAX_BYTES = 16 * 1024 * 1024
#: (path, prefix) of the routes served from snapshots: none depends on the request's headers.
CACHED_ROUTES = (("/health", False), ("/stats", False), ("/stats/", True), ("/trends", False))


class Snapshot(NamedTuple):
    """One prepared response: when it was taken (``time.monotonic()``), the route's answer, its bytes."""

    taken: float
    response: Response
    wire: tuple[bytes, bytes]


class SnapshotCache:
    """Responses per path, each reused for ``max_age`` seconds (see the module docs).

    >>> now = [0.0]
    >>> cache = SnapshotCache(max_age=1.0, clock=lambda: now[0])
    >>> route = cache.wrap(lambda path, headers: (200, "text/plain", f"{path} at {now[0]}".encode()))
    >>> route("/x", {})[2]
    b'/x at 0.0'
    >>> now[0] = 1.0  # still fresh: the same body
    >>> route("/x", {})[2], cache.lookup("/x", 1.0)[0].endswith(b"/x at 0.0")
    (b'/x at 0.0', True)
    >>> now[0] = 1.5  # stale: computed again
    >>> route("/x", {})[2], cache.computed
    (b'/x at 1.5', 2)
    """

    def __init__(
        self,
        max_age: float = MAX_AGE,
        *,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        #: path -> snapshot, oldest first. Read without the lock (one dict lookup, atomic).
        self._snapshots: dict[str, Snapshot] = {}
        self._pinned: dict[str, tuple[bytes, bytes]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        #: path -> the lock held while that path's snapshot is computed.
        self._computing: dict[str, threading.Lock] = {}
        self._closed = False
        #: Snapshots computed so far (for tests and benchmarks).
        self.computed = 0
        _CACHES.add(self)

    def lookup(self, path: str, now: float) -> tuple[bytes, bytes] | None:
        """The (GET, HEAD) bytes for ``path`` if its snapshot is fresh at ``now``; what the server calls."""
        pinned = self._pinned.get(path)
        if pinned is not None:
            return pinned
        snapshot = self._snapshots.get(path)
        if snapshot is not None and now - snapshot.taken <= self.max_age:
            return snapshot.wire
        return None

    def pin(self, path: str, response: Response) -> None:
        """Serve ``response`` for ``path`` for good (a fixed page); prepared once."""
        status, content_type, body = response
        self._pinned[path] = wire_response(status, content_type, body)

    def wrap(self, route: Route) -> Route:
        """``route`` answered from snapshots: computed at most once per ``max_age`` per path."""

        def cached(path: str, headers: dict[str, str]) -> Response:
            return self.get(path, lambda: route(path, headers)).response

        return cached

    def get(self, path: str, compute: Callable[[], Response]) -> Snapshot:
        """The fresh snapshot of ``path``, computing it (once, whoever else asks meanwhile) if needed."""
        snapshot = self._fresh(path)
        if snapshot is not None:
            return snapshot
        with self._lock:
            computing = self._computing.setdefault(path, threading.Lock())
        with computing:
            snapshot = self._fresh(path)  # computed by the request we waited for
            if snapshot is not None:
                return snapshot
            taken, date = self._clock(), time.time()
            try:
                response = compute()
            except BaseException:
                with self._lock:  # nothing kept for this path: forget its lock too
                    if path not in self._snapshots:
                        self._computing.pop(path, None)
                raise
            status, content_type, body = response
            snapshot = Snapshot(taken, response, wire_response(status, content_type, body, date=date))
            self._keep(path, snapshot)
            return snapshot

    def _fresh(self, path: str) -> Snapshot | None:
        snapshot = self._snapshots.get(path)
        if snapshot is not None and self._clock() - snapshot.taken <= self.max_age:
            return snapshot
        return None

    def _keep(self, path: str, snapshot: Snapshot) -> None:
        with self._lock:
            self.computed += 1
            if self._closed:
                self._computing.pop(path, None)
                return
            old = self._snapshots.pop(path, None)
            if old is not None:
                self._bytes -= len(old.response[2])
            self._snapshots[path] = snapshot  # the newest last
            self._bytes += len(snapshot.response[2])
            while self._snapshots and (
                len(self._snapshots) > self.max_entries or self._bytes > self.max_bytes
            ):
                oldest = next(iter(self._snapshots))
                self._bytes -= len(self._snapshots.pop(oldest).response[2])
                self._computing.pop(oldest, None)

    def __len__(self) -> int:
        return len(self._snapshots)

    @property
    def size(self) -> int:
        """The bytes of the bodies kept."""
        return self._bytes

    def clear(self) -> None:
        """Drop every snapshot (not the pinned responses): the next request of each path computes it."""
        with self._lock:
            self._snapshots = {}
            self._bytes = 0

    def close(self) -> None:
        """Drop every snapshot and keep no more (shutdown): each request then computes its answer."""
        with self._lock:
            self._closed = True
            self._snapshots = {}
            self._computing = {}
            self._bytes = 0


#: Every cache alive, for invalidate().
_CACHES: weakref.WeakSet[SnapshotCache] = weakref.WeakSet()


def invalidate() -> None:
    """Drop the snapshots of every server (the health checks or stats collectors changed)."""
    for cache in list(_CACHES):
        cache.clear()


def install_snapshots(
    server: MetricsServer, pipeline: Runtime, max_age: float | None = None
) -> SnapshotCache:
    """Serve the server's :data:`CACHED_ROUTES` from snapshots; closed when the pipeline shuts down."""
    cache = SnapshotCache(MAX_AGE if max_age is None else max_age)
    for path, prefix in CACHED_ROUTES:
        route = server.route(path, prefix=prefix)
        if route is not None:
            server.add_route(path, cache.wrap(route), prefix=prefix)
    server.cache = cache
    pipeline.on_shutdown.append(cache.close)
    return cache
