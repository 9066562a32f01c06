"""The base every named hook shares: cached by name, bound lazily to the current pipeline.

A hook subclass implements :meth:`Hook._bind`, which pre-binds its series on a pipeline's
registry and returns them (any object); the hook's methods call :meth:`Hook._current` and do
nothing when it returns None (not configured, disabled, shut down).

Names are bounded like attribute values: each hook kind (class) keeps at most
``hook_name_limit`` names (see :func:`get_hook`); past it, new names share one hook named
:data:`OVERFLOW_NAME`. What a hook keeps per pipeline lives on that pipeline's registry
(:func:`state_on`), and hooks let go of a pipeline at its shutdown, so a shut-down pipeline is
freed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import islice
from typing import Any, ClassVar, TypeVar

from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.runtime import STATE, Pipeline
from otel_pipeline._internal.validation import check_count, check_name  # re-exported: hooks import them here

__all__ = [
    "DEFAULT_NAME_LIMIT",
    "OVERFLOW_NAME",
    "Hook",
    "check_count",
    "check_name",
    "get_hook",
    "hooks_of",
    "name_limit",
    "state_on",
    "warn_names",
]

H = TypeVar("H", bound="Hook")
S = TypeVar("S")
_HOOKS_LOCK = threading.Lock()
#: Guards the per-registry states; reentrant, since making one state may make another.
_STATES_LOCK = threading.RLock()
#: The name of the hook that names past a kind's limit share: the series cap's overflow marker.
OVERFLOW_NAME = "otel.metric.overflow"
#: Names per hook kind while no pipeline is configured (the default of ``hook_name_limit``).
DEFAULT_NAME_LIMIT = 500


class Hook:
    """Base class of named hooks (see module docs)."""

    kind: ClassVar[str] = "hook"
    #: This class's hooks by name (see :func:`get_hook`); each subclass gets its own.
    _instances: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = {}

    def __init__(self, name: str) -> None:
        self.name = check_name(f"{self.kind} name", name)
        self._generation = -1
        self._bound: Any = None

    def _current(self) -> Any:
        """The bound series for the current pipeline, or None when instrumentation is off."""
        if self._generation != STATE.generation:
            self._refresh()
        return self._bound

    def _refresh(self) -> None:
        generation = STATE.generation
        pipeline = STATE.pipeline
        bound = None
        if pipeline is None and generation == 0:
            _hint_not_configured(self)
        if pipeline is not None and pipeline.enabled:
            try:
                bound = self._bind(pipeline)
            except Exception:
                warn_once(
                    f"bind:{self.kind}:{self.name}",
                    "%s %r could not bind",
                    self.kind,
                    self.name,
                )
                logger.debug("bind failure", exc_info=True)
        with _HOOKS_LOCK:
            # Threads that raced here all use the first bind: hooks keep per-pipeline state on it.
            if generation > self._generation:
                self._bound = bound
                self._generation = generation
        if bound is not None and pipeline is not None:
            _release_at_shutdown(pipeline)

    def _bind(self, pipeline: Pipeline) -> Any:
        """Pre-bind this hook's series on ``pipeline.registry``; subclasses override it."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def name_limit() -> int:
    """Names per hook kind: the current pipeline's ``hook_name_limit``, else the default."""
    pipeline = STATE.pipeline
    return DEFAULT_NAME_LIMIT if pipeline is None else pipeline.config.hook_name_limit


_hinted = False


def _hint_not_configured(hook: Hook) -> None:
    """Say once per process why nothing is recorded: a hook was used before any configure().

    Runs from :meth:`Hook._refresh` only (once per hook and pipeline change, never per call), and
    only while no pipeline was ever installed: not after shutdown(), not under a test capture.
    """
    global _hinted
    if _hinted:
        return
    _hinted = True
    logger.warning(
        "%s %r was used before otel_pipeline.configure(): hooks record nothing until it is called; "
        "call it once at start-up (configure(enabled=False) turns instrumentation off on purpose)",
        hook.kind,
        hook.name,
    )


def get_hook(cls: type[H], name: str) -> H:
    """The cached hook of ``cls`` named ``name``, created on first use.

    Called inline on every use (``op.queue("emails").processing()``), so the hit path is one
    dictionary lookup in the class's own cache. Once ``cls`` has :func:`name_limit` names, a new
    name gets the one hook named :data:`OVERFLOW_NAME` (not cached under the new name, so the
    cache stays bounded), and the first time a warning names the kind and a few of the names.
    """
    if type(name) is not str:  # a clear TypeError, not "unhashable type"; a str subclass as a str
        name = str.__str__(check_name(f"{cls.kind} name", name))
    hook: H | None = cls._instances.get(name)
    if hook is not None:
        return hook
    return _new_hook(cls, name)


def _new_hook(cls: type[H], name: str) -> H:
    check_name(f"{cls.kind} name", name)  # a bad name raises, also past the limit
    instances = cls._instances
    limit = name_limit()
    if len(instances) >= limit:
        overflow: H | None = instances.get(OVERFLOW_NAME)
        if overflow is not None:  # the common case past the limit: no lock
            return overflow
    examples: list[str] = []
    with _HOOKS_LOCK:
        hook = instances.get(name)
        if hook is None:
            if len(instances) < limit:
                hook = instances[name] = cls(name)
            else:
                hook = instances.get(OVERFLOW_NAME)
                if hook is None:
                    examples = [*reversed(list(islice(reversed(instances), 3))), name]
                    hook = instances[OVERFLOW_NAME] = cls(OVERFLOW_NAME)
    if examples:
        warn_names(cls.kind, limit, examples)
    return hook


def warn_names(kind: str, limit: int, examples: list[str]) -> None:
    """The one warning when hooks of ``kind`` reach ``limit`` names (``examples``: the latest ones)."""
    warn_once(
        f"hook-names:{kind}",
        "%s hooks reached hook_name_limit=%d distinct names (the latest: %s); new names are recorded "
        "as the one %s named %r. Names built from ids? Put ids on spans, or raise hook_name_limit",
        kind,
        limit,
        ", ".join(map(repr, examples)),
        kind,
        OVERFLOW_NAME,
    )


def state_on(registry: Registry, key: Any, make: Callable[[], S]) -> S:
    """What ``key`` (usually a hook) keeps on ``registry``, made by ``make()`` the first time.

    It lives on the registry, not in the hook: it is freed with its pipeline. (A hook-side map
    keyed weakly by registry, whose values refer to their registry, would never be.)
    """
    states = registry.hook_states
    state: S | None = states.get(key)
    if state is None:
        with _STATES_LOCK:
            state = states.get(key)
            if state is None:
                state = states[key] = make()
    return state


def _release_at_shutdown(pipeline: Pipeline) -> None:
    """Once per pipeline: at its shutdown, every hook lets go of what it bound on it."""
    registry = pipeline.registry
    if registry is not None and _release_stale not in registry.hook_states:
        with _STATES_LOCK:
            if _release_stale not in registry.hook_states:
                registry.hook_states[_release_stale] = True
                pipeline.on_shutdown.append(_release_stale)


def _hook_classes() -> list[type[Hook]]:
    found, pending = [], [Hook]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _release_stale() -> None:
    """Hooks bound on a pipeline that is no longer current drop it (they rebind on next use)."""
    with _HOOKS_LOCK:
        generation = STATE.generation
        for cls in _hook_classes():
            for hook in cls._instances.values():
                if hook._generation != generation:
                    hook._bound = None
                    hook._generation = -1


def hooks_of(cls: type[H]) -> list[H]:
    """Every hook of exactly ``cls`` made so far (e.g. for an observable callback to walk)."""
    return list(cls._instances.values())


def forget_hooks() -> None:
    """Forget every cached hook, so the next ``op.queue(name)`` makes a new one (test isolation).

    Hooks hold what users registered on them (depth and size callbacks, observed pools); a test
    suite calls this between tests so that one test's registrations never reach another's data.
    """
    with _HOOKS_LOCK:
        for cls in _hook_classes():
            cls._instances.clear()
