"""The base every named hook shares: cached by name, bound lazily to the current pipeline.

A hook subclass implements :meth:`Hook._bind`, which pre-binds its series on a pipeline's
registry and returns them (any object); the hook's methods call :meth:`Hook._current` and do
nothing when it returns None (not configured, disabled, shut down).
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, TypeVar

from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.runtime import STATE, Pipeline
from otel_pipeline._internal.validation import check_count, check_name  # re-exported: hooks import them here

__all__ = ["Hook", "check_count", "check_name", "get_hook", "hooks_of"]

H = TypeVar("H", bound="Hook")
_HOOKS_LOCK = threading.Lock()


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
        if pipeline is not None and pipeline.enabled:
            try:
                bound = self._bind(pipeline)
            except Exception:
                warn_once(
                    f"bind:{self.kind}:{self.name}",
                    "otel_pipeline: %s %r could not bind",
                    self.kind,
                    self.name,
                )
                logger.debug("bind failure", exc_info=True)
        with _HOOKS_LOCK:
            # Threads that raced here all use the first bind: hooks keep per-pipeline state on it.
            if generation > self._generation:
                self._bound = bound
                self._generation = generation

    def _bind(self, pipeline: Pipeline) -> Any:
        """Pre-bind this hook's series on ``pipeline.registry``; subclasses override it."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def get_hook(cls: type[H], name: str) -> H:
    """The cached hook of ``cls`` named ``name``, created on first use.

    Called inline on every use (``op.queue("emails").processing()``), so the hit path is one
    dictionary lookup in the class's own cache.
    """
    if type(name) is not str:  # a clear TypeError, not "unhashable type"; a str subclass as a str
        name = str.__str__(check_name(f"{cls.kind} name", name))
    hook: H | None = cls._instances.get(name)
    if hook is not None:
        return hook
    with _HOOKS_LOCK:
        hook = cls._instances.get(name)
        if hook is None:
            hook = cls._instances[name] = cls(name)
    return hook


def hooks_of(cls: type[H]) -> list[H]:
    """Every hook of exactly ``cls`` made so far (e.g. for an observable callback to walk)."""
    return list(cls._instances.values())


def forget_hooks() -> None:
    """Forget every cached hook, so the next ``op.queue(name)`` makes a new one (test isolation).

    Hooks hold what users registered on them (depth and size callbacks, observed pools); a test
    suite calls this between tests so that one test's registrations never reach another's data.
    """
    pending = [Hook]
    with _HOOKS_LOCK:
        while pending:
            cls = pending.pop()
            pending.extend(cls.__subclasses__())
            cls._instances.clear()
