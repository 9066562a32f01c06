"""Caches: hits, misses, hit ratio, evictions, and size in entries and bytes.

>>> import otel_pipeline as op
>>> users = op.cache("users")
>>> users.hit()
>>> users.miss()
>>> users.set_size(entries=120, bytes=48_000)

A ``functools.lru_cache`` (or anything with ``cache_info()``) is instrumented without touching
its call sites: ``get_user = op.cache("users").wrap(get_user)``.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.hook import Hook, Points, get_hook, observes
from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.validation import MAX_AMOUNT, amount, countable, safe_repr

__all__ = ["Cache", "cache"]

F = TypeVar("F", bound=Callable[..., Any])
HOOK = "cache"
_ATTRS = ["cache.name"]
HITS = declare("cache.hits", Kind.COUNTER, "{hit}", "Cache lookups that found the entry.", _ATTRS, hook=HOOK)
MISSES = declare(
    "cache.misses", Kind.COUNTER, "{miss}", "Cache lookups that did not find the entry.", _ATTRS, hook=HOOK
)
EVICTIONS = declare(
    "cache.evictions",
    Kind.COUNTER,
    "{eviction}",
    "Entries the cache removed to make room or because they expired.",
    _ATTRS,
    hook=HOOK,
)
HIT_RATIO = declare(
    "cache.hit_ratio",
    Kind.OBSERVABLE_GAUGE,
    "1",
    "Hits / (hits + misses) since the process started recording; absent before the first lookup.",
    _ATTRS,
    hook=HOOK,
    merge="ratio:cache.hits/cache.hits+cache.misses",
)
ENTRIES = declare(
    "cache.entries",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{entry}",
    "Entries in the cache now.",
    _ATTRS,
    hook=HOOK,
)
ENTRIES_LIMIT = declare(
    "cache.entries.limit",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{entry}",
    "The most entries the cache holds (a bounded cache's maxsize).",
    _ATTRS,
    hook=HOOK,
)
SIZE = declare(
    "cache.size", Kind.OBSERVABLE_UP_DOWN_COUNTER, "By", "Memory the cache's entries use.", _ATTRS, hook=HOOK
)


class _Source:
    """A wrapped cache with ``cache_info()``, held weakly where it can be (a dropped cache is forgotten)."""

    __slots__ = ("_ref",)

    def __init__(self, function: Any) -> None:
        try:
            self._ref: Callable[[], Any] = weakref.ref(function)
        except TypeError:
            self._ref = lambda: function

    def info(self) -> Any:
        """Its ``cache_info()`` (``hits``, ``misses``, ``maxsize``, ``currsize``), or None once it is gone."""
        function = self._ref()
        return None if function is None else function.cache_info()

    def clear(self) -> None:
        function = self._ref()
        if function is not None:
            function.cache_clear()


class _State:
    """A cache's series and running totals on one pipeline's registry."""

    def __init__(self, hook: Cache, registry: Registry) -> None:
        attributes = {"cache.name": hook.name}
        self.attributes = attributes
        self.hits = registry.instrument(HITS).bind(attributes)
        self.misses = registry.instrument(MISSES).bind(attributes)
        self.evictions = registry.instrument(EVICTIONS).bind(attributes)
        self.lock = threading.Lock()
        self.hit_total: float = 0
        self.miss_total: float = 0
        #: Sizes set with set_size() on this pipeline ("entries", "bytes", "max_entries").
        self.sizes: dict[str, float] = {}
        #: The last (hits, misses) seen per wrapped cache; deltas since then go to the counters.
        self.seen: dict[int, tuple[int, int]] = {}

    def count(self, hits: float, misses: float) -> None:
        if hits:
            self.hits.add(hits)
        if misses:
            self.misses.add(misses)
        with self.lock:
            self.hit_total += hits
            self.miss_total += misses

    def track(self, source: _Source) -> None:
        """Start counting ``source``'s lookups from now on."""
        with self.lock:
            info = source.info()
            if info is not None:
                self.seen.setdefault(id(source), (info.hits, info.misses))

    def sync(self, sources: list[_Source], clear: _Source | None = None) -> None:
        """Move the lookups the wrapped caches counted since last time into the counters.

        ``clear`` is cleared after its lookups are taken (its counts restart at zero).
        """
        hits = misses = 0
        with self.lock:
            for source in sources:
                info = source.info()  # read under the lock, so successive reads never go backwards
                if info is None:
                    self.seen.pop(id(source), None)
                    continue
                if not (countable(info.hits) and countable(info.misses)):
                    _bad_info(self.attributes["cache.name"], info)
                    continue
                last_hits, last_misses = self.seen.get(id(source), (info.hits, info.misses))
                if info.hits < last_hits or info.misses < last_misses:
                    last_hits = last_misses = 0  # cleared behind our back: its counts restarted
                hits += info.hits - last_hits
                misses += info.misses - last_misses
                self.seen[id(source)] = (info.hits, info.misses)
            if clear is not None:
                clear.clear()
                self.seen[id(clear)] = (0, 0)
        self.count(hits, misses)


class Cache(Hook[_State]):
    """A named cache. Get it with :func:`otel_pipeline.cache`.

    >>> import otel_pipeline as op
    >>> op.cache("users").hit(3)
    """

    kind = "cache"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        #: The registries this cache has a state on (the base keeps the states there).
        self._registries: weakref.WeakSet[Registry] = weakref.WeakSet()
        self._states_lock = threading.Lock()
        self._sources: list[_Source] = []
        #: "entries" / "bytes" / "max_entries" -> the function that observes it.
        self._observed: dict[str, Callable[[], float]] = {}

    # -- binding ----------------------------------------------------------------------------

    def _bind(self, pipeline: Runtime) -> _State:
        registry = pipeline.registry
        assert registry is not None
        state = _State(self, registry)
        with self._states_lock:
            self._registries.add(registry)
            sources = list(self._sources)
        for source in sources:
            state.track(source)
        return state

    def _binds_at_install(self) -> bool:
        return bool(self._sources or self._observed)

    # -- recording --------------------------------------------------------------------------

    def hit(self, count: int = 1) -> None:
        """Count ``count`` lookups that found their entry."""
        # The usual int passes without a call; anything else is amount()'s to check (or drop).
        if type(count) is not int or not 0 <= count <= MAX_AMOUNT:  # noqa: SIM102
            if amount(self, "hit", "count", count) is None:
                return
        try:
            state = self._current()
            if state is not None:
                state.count(count, 0)
        except Exception as exc:
            internal_error("cache.hit", exc)

    def miss(self, count: int = 1) -> None:
        """Count ``count`` lookups that did not find their entry."""
        # The usual int passes without a call; anything else is amount()'s to check (or drop).
        if type(count) is not int or not 0 <= count <= MAX_AMOUNT:  # noqa: SIM102
            if amount(self, "miss", "count", count) is None:
                return
        try:
            state = self._current()
            if state is not None:
                state.count(0, count)
        except Exception as exc:
            internal_error("cache.miss", exc)

    def evicted(self, count: int = 1) -> None:
        """Count ``count`` entries removed to make room (or expired)."""
        # The usual int passes without a call; anything else is amount()'s to check (or drop).
        if type(count) is not int or not 0 <= count <= MAX_AMOUNT:  # noqa: SIM102
            if amount(self, "evicted", "count", count) is None:
                return
        try:
            state = self._current()
            if state is not None:
                state.evictions.add(count)
        except Exception as exc:
            internal_error("cache.evicted", exc)

    def set_size(
        self, *, entries: float | None = None, bytes: float | None = None, max_entries: float | None = None
    ) -> None:
        """Set the cache's current size: entries, bytes used, and its capacity in entries.

        A value set replaces a function given to :meth:`observe_size` for the same size; one
        that is None is not set. One that is not a number >= 0 is dropped (one warning) and
        the others are set.

        >>> import otel_pipeline as op
        >>> op.cache("users").set_size(entries=10, bytes=4096, max_entries=1000)
        """
        given: dict[str, float] = {}
        for key, value in (("entries", entries), ("bytes", bytes), ("max_entries", max_entries)):
            if value is not None:
                exact = amount(self, "set_size", key, value, "that size is not set")
                if exact is not None:
                    given[key] = exact
        for key in given:
            self._observed.pop(key, None)
        try:
            state = self._current()
            if state is not None:
                state.sizes.update(given)
        except Exception as exc:
            internal_error("cache.set_size", exc)

    def observe_size(
        self,
        *,
        entries: Callable[[], float] | None = None,
        bytes: Callable[[], float] | None = None,
        max_entries: Callable[[], float] | None = None,
    ) -> None:
        """Read the cache's size from functions called at each collection.

        They stay registered across ``configure()``/``shutdown()``; a function that raises or
        returns something other than a number >= 0 is logged once and its value skipped.

        >>> import otel_pipeline as op
        >>> store: dict[str, bytes] = {}
        >>> op.cache("blobs").observe_size(
        ...     entries=lambda: len(store), bytes=lambda: sum(map(len, store.values()))
        ... )
        """
        given = _given(entries=entries, bytes=bytes, max_entries=max_entries)
        for key, function in given.items():
            if not callable(function):
                raise TypeError(
                    f"otel_pipeline: observe_size({key}=...) needs a function returning a number, "
                    f"got {type(function).__name__} {safe_repr(function)}"
                )
        self._observed.update(given)
        try:
            state = self._current()
            if state is not None:
                for key in given:
                    state.sizes.pop(key, None)
        except Exception as exc:
            internal_error("cache.observe_size", exc)

    def wrap(self, function: F) -> F:
        """Instrument ``function``, a ``functools.lru_cache`` or anything with ``cache_info()``.

        Returns a wrapper with the same results, ``cache_info()`` and ``cache_clear()``. Hits and
        misses are taken from ``cache_info()`` at each collection, entries and capacity from its
        ``currsize`` and ``maxsize``; evictions are not reported (``cache_info()`` has none).

        >>> import functools
        >>> import otel_pipeline as op
        >>> @op.cache("squares").wrap
        ... @functools.lru_cache(maxsize=128)
        ... def square(x: int) -> int:
        ...     return x * x
        >>> square(3), square(3), square.cache_info().hits
        (9, 9, 1)
        """
        _check_cache_info(function)
        source = _Source(function)
        with self._states_lock:
            self._sources.append(source)
            registries = list(self._registries)
        for registry in registries:
            state = registry.hook_states.get(self)
            if state is not None:
                state.track(source)
        self._bind_now()  # so that the configured pipeline reports it
        hook = self

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            hook._bind_now()  # to a pipeline configured since, so that it is reported
            return function(*args, **kwargs)

        def cache_clear() -> None:
            try:
                state = hook._current()
            except Exception as exc:
                internal_error("cache.cache_clear", exc)
                state = None
            if state is None:
                source.clear()
            else:
                state.sync(list(hook._sources), clear=source)

        wrapper.cache_info = function.cache_info  # type: ignore[attr-defined]
        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    # -- observed values (read at each collection, once the wrapped caches' lookups are taken) ----

    @observes(HIT_RATIO)
    def _hit_ratio(self, state: _State) -> Points:
        self._sync(state)
        with state.lock:
            hits, lookups = state.hit_total, state.hit_total + state.miss_total
        if lookups:
            yield hits / lookups, state.attributes

    @observes(ENTRIES)
    def _entries(self, state: _State) -> Points:
        self._sync(state)
        value = self._size(state, "entries")
        if value is None and self._sources:
            infos = self._infos()
            value = sum(info.currsize for info in infos) if infos else None
        if value is not None:
            yield value, state.attributes

    @observes(ENTRIES_LIMIT)
    def _entries_limit(self, state: _State) -> Points:
        self._sync(state)
        value = self._size(state, "max_entries")
        if value is None and self._sources:
            limits = [info.maxsize for info in self._infos()]
            value = None if not limits or None in limits else sum(limits)
        if value is not None:
            yield value, state.attributes

    @observes(SIZE)
    def _size_bytes(self, state: _State) -> Points:
        self._sync(state)
        value = self._size(state, "bytes")
        if value is not None:
            yield value, state.attributes

    def _sync(self, state: _State) -> None:
        """Bring the counts of the wrapped caches up to date on ``state``."""
        if self._sources:
            state.sync(list(self._sources))

    def _size(self, state: _State, key: str) -> float | None:
        """A size set on ``state``, else observed by its function, else None."""
        value = state.sizes.get(key)
        function = self._observed.get(key)
        if value is not None or function is None:
            return value
        try:
            observed = function()
        except Exception:
            warn_once(
                f"cache-size:{self.name}:{key}", "cache %r: the %s function raised; skipped", self.name, key
            )
            logger.debug("size function failure", exc_info=True)
            return None
        if not countable(observed):  # finite, >= 0, within int64
            warn_once(
                f"cache-size:{self.name}:{key}",
                "cache %r: the %s function returned %s, not a number >= 0; skipped",
                self.name,
                key,
                safe_repr(observed),
            )
            return None
        return observed

    def _infos(self) -> list[Any]:
        """``cache_info()`` of every wrapped cache still alive; the ones gone are forgotten."""
        infos = []
        with self._states_lock:
            sources = list(self._sources)
        for source in sources:
            info = source.info()
            if info is None:
                with self._states_lock:
                    if source in self._sources:
                        self._sources.remove(source)
            else:
                infos.append(info)
        return infos


def cache(name: str) -> Cache:
    """The cache hook named ``name`` (same name, same object).

    >>> import otel_pipeline as op
    >>> op.cache("users") is op.cache("users")
    True
    """
    return get_hook(Cache, name)


def _given(**values: Any) -> dict[str, Any]:
    given = {key: value for key, value in values.items() if value is not None}
    if not given:
        raise ValueError("otel_pipeline: give at least one of entries=, bytes=, max_entries=")
    return given


def _bad_info(name: str, info: Any) -> None:
    warn_once(
        f"cache-info:{name}",
        "cache %r: cache_info() returned %s, whose hits and misses are not counts >= 0; skipped",
        name,
        safe_repr(info),
    )


def _check_cache_info(function: Any) -> None:
    cache_info = getattr(function, "cache_info", None)
    cache_clear = getattr(function, "cache_clear", None)
    if not callable(function) or not callable(cache_info) or not callable(cache_clear):
        raise TypeError(
            "otel_pipeline: cache.wrap() needs a function with cache_info() and cache_clear(), such as "
            f"functools.lru_cache; got {type(function).__name__} {safe_repr(function)}"
        )
    info = cache_info()
    for field in ("hits", "misses", "currsize", "maxsize"):
        if not hasattr(info, field):
            raise TypeError(
                f"otel_pipeline: cache.wrap(): {safe_repr(function)}.cache_info() returned "
                f"{safe_repr(info)}, which has no {field!r}; it must look like functools' "
                "CacheInfo(hits, misses, maxsize, currsize)"
            )
