"""The base every named hook shares: cached by name, bound lazily to the current pipeline.

A hook kind subclasses ``Hook[S]`` and implements :meth:`Hook._bind`, which pre-binds its series
on a pipeline's registry and returns them as its state ``S``; the hook's methods call
:meth:`Hook._current` and do nothing when it returns None (not configured, disabled, shut down).
The base keeps that state on the pipeline's registry (one per hook and registry, freed with the
pipeline), so a hook bound again to the same pipeline finds its counts where it left them.

What else a kind declares, the base wires:

* observable metrics: a method marked ``@observes(SPEC)`` yields the ``(value, attributes)``
  points of one hook state; the base registers each such metric once per registry and, at each
  collection, walks the states bound there (copied under the lock, read outside it, as
  prometheus_client's collectors do), a state that fails is logged once and skipped;
* :meth:`Hook._binds_at_install`: a hook with values to report before it is used (a function
  observing a depth...) is bound to each new pipeline when it is installed;
* :meth:`Hook._health`: a component of ``/health`` per hook state (see :func:`hook_health`).

Kinds are found through the base (every subclass registers itself: :func:`hook_kinds`).

Names are bounded like attribute values: each hook kind (class) keeps at most
``hook_name_limit`` names (see :func:`get_hook`); past it, new names share one hook named
:data:`OVERFLOW_NAME`. Hooks let go of a pipeline at its shutdown, so a shut-down pipeline is
freed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from itertools import count, islice
from typing import Any, ClassVar, Generic
from typing import TypeVar as _TypeVar

from typing_extensions import TypeVar

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.registry import AttributeValue, Registry
from otel_pipeline._internal.runtime import STATE, Runtime
from otel_pipeline._internal.spec import MetricSpec
from otel_pipeline._internal.validation import check_count, check_name  # re-exported: hooks import them here

__all__ = [
    "DEFAULT_NAME_LIMIT",
    "OVERFLOW_NAME",
    "Health",
    "Hook",
    "Points",
    "bind_at_install",
    "check_count",
    "check_name",
    "get_hook",
    "hook_health",
    "hook_kinds",
    "hooks_of",
    "name_limit",
    "observes",
    "state_on",
    "warn_names",
]

H = _TypeVar("H", bound="Hook[Any]")
#: A hook's state type; a kind that does not say (``class X(Hook)``) keeps untyped state.
S = TypeVar("S", default=Any)
F = _TypeVar("F", bound=Callable[..., Any])
#: What an observable method yields for one hook state.
Points = Iterable[tuple[float, Mapping[str, AttributeValue]]]
#: One ``/health`` component: (name, status: "healthy", "degraded" or "unhealthy", details).
Health = tuple[str, str, dict[str, Any]]
_HOOKS_LOCK = threading.Lock()
#: Guards the per-registry states; reentrant, since making one state may make another.
_STATES_LOCK = threading.RLock()
#: The name of the hook that names past a kind's limit share: the series cap's overflow marker.
OVERFLOW_NAME = "otel.metric.overflow"
#: Names per hook kind while no pipeline is configured (the default of ``hook_name_limit``).
DEFAULT_NAME_LIMIT = 500
#: Every hook kind, in the order defined (weakly: a kind defined in a test goes with it).
_KINDS: weakref.WeakValueDictionary[int, type[Hook[Any]]] = weakref.WeakValueDictionary()
_KIND_ORDER = count()
_OBSERVES = "_otel_pipeline_observes"


def observes(spec: MetricSpec) -> Callable[[F], F]:
    """Mark a hook method as the reader of the observable metric ``spec``.

    The method takes one state of its hook (what ``_bind`` returned) and yields points::

        @observes(HIT_RATIO)
        def _hit_ratio(self, state: _State) -> Points:
            yield state.ratio(), state.attributes
    """
    if not spec.kind.observable:
        raise ValueError(f"metric {spec.name!r} is not observable: a hook binds it in _bind()")

    def mark(method: F) -> F:
        setattr(method, _OBSERVES, spec)
        return method

    return mark


class Hook(Generic[S]):
    """Base class of named hooks; ``S`` is what one hook keeps per pipeline (see module docs)."""

    kind: ClassVar[str] = "hook"
    #: This class's hooks by name (see :func:`get_hook`); each subclass gets its own.
    _instances: ClassVar[dict[str, Any]] = {}
    #: The observable metrics of this kind, and the names of the methods that read them.
    _observables: ClassVar[tuple[tuple[MetricSpec, str], ...]] = ()
    #: Whether this kind overrides :meth:`_health`.
    _reports_health: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = {}
        found: dict[str, tuple[MetricSpec, str]] = {}
        for klass in reversed(cls.__mro__):  # a subclass's method replaces its base's
            for attribute, value in vars(klass).items():
                spec = getattr(value, _OBSERVES, None)
                if isinstance(spec, MetricSpec):
                    found[spec.name] = (spec, attribute)
        cls._observables = tuple(found.values())
        cls._reports_health = cls._health is not Hook._health
        _KINDS[next(_KIND_ORDER)] = cls

    def __init__(self, name: str) -> None:
        self.name = check_name(f"{self.kind} name", name)
        self._generation = -1
        self._bound: S | None = None

    def _current(self) -> S | None:
        """The state of this hook on the current pipeline, or None when instrumentation is off."""
        if self._generation != STATE.generation:
            self._refresh()
        return self._bound

    def _refresh(self) -> None:
        generation = STATE.generation
        pipeline = STATE.pipeline
        bound = None
        if pipeline is None and generation == 0:
            _hint_not_configured(self)
        if pipeline is not None and pipeline.enabled and pipeline.registry is not None:
            try:
                bound = self._state_on(pipeline, pipeline.registry)
            except Exception as exc:
                internal_error(f"bind:{self.kind}", exc, "%s %r could not bind", self.kind, self.name)
        with _HOOKS_LOCK:
            # Threads that raced here all use the first bind: hooks keep per-pipeline state on it.
            if generation > self._generation:
                self._bound = bound
                self._generation = generation
        if bound is not None and pipeline is not None:
            _release_at_shutdown(pipeline)

    def _bind_now(self) -> None:
        """Bind to the current pipeline now (a hook given something to report); never raises."""
        try:
            self._current()
        except Exception as exc:
            internal_error(f"{self.kind}.bind", exc)

    def _state_on(self, pipeline: Runtime, registry: Registry) -> S:
        """The state of this hook on ``registry`` (``pipeline``'s): bound the first time, then the same."""
        states = registry.hook_states
        state: S | None = states.get(self)
        if state is None:
            made = self._bind(pipeline)  # outside the lock: binding may take others' locks
            with _STATES_LOCK:  # threads that bound at once all keep the first state
                state = states.setdefault(self, made)
            _observe_kind(type(self), registry)
        return state

    def _bind(self, pipeline: Runtime) -> S:
        """Pre-bind this hook's series on ``pipeline.registry``: its state there."""
        raise NotImplementedError(f"{type(self).__name__} must implement _bind()")

    def _binds_at_install(self) -> bool:
        """True when this hook has values to report before it is used (observed through functions).

        Such hooks are bound to each pipeline when it is installed, so that it reports them.
        """
        return False

    @classmethod
    def _installed(cls, pipeline: Runtime) -> None:
        """A pipeline was installed: bind the hooks of this kind that report before they are used."""
        for hook in hooks_of(cls):
            if hook._binds_at_install():
                hook._current()

    def _health(self, state: S) -> Health | None:
        """The ``/health`` component of this hook on a pipeline it is bound to (None: it has none)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def hook_kinds() -> list[type[Hook[Any]]]:
    """Every hook kind defined so far (the subclasses of :class:`Hook`), in definition order."""
    return list(_KINDS.values())


def _observe_kind(cls: type[Hook[Any]], registry: Registry) -> None:
    """Register the observable metrics of ``cls`` on ``registry`` (once: later calls do nothing)."""
    if not cls._observables:
        return
    key = (_observe_kind, cls)
    if key in registry.hook_states:
        return
    with _STATES_LOCK:
        if key in registry.hook_states:
            return
        registry.hook_states[key] = True
    for spec, method in cls._observables:
        registry.observe(spec, _walker(cls, spec, method, registry))


def _walker(
    cls: type[Hook[Any]], spec: MetricSpec, method: str, registry: Registry
) -> Callable[[], list[tuple[float, Mapping[str, AttributeValue]]]]:
    """The collection callback of ``spec``: every state of a ``cls`` hook on ``registry``, read."""

    def observe() -> list[tuple[float, Mapping[str, AttributeValue]]]:
        states = registry.hook_states
        hooks = list(cls._instances.values())  # a copy in C: safe while another thread adds a hook
        with _STATES_LOCK:
            bound = [(hook, states[hook]) for hook in hooks if hook in states]
        found: list[tuple[float, Mapping[str, AttributeValue]]] = []
        for hook, state in bound:
            try:
                found.extend(getattr(hook, method)(state))
            except Exception as exc:  # the application's functions are contained where they are called
                internal_error(
                    f"observe:{spec.name}",
                    exc,
                    "%s %r: reading %s failed; skipped",
                    hook.kind,
                    hook.name,
                    spec.name,
                )
        return found

    return observe


def hook_health(pipeline: Runtime) -> list[Health]:
    """The ``/health`` components of the hooks bound to ``pipeline`` (kinds with :meth:`Hook._health`)."""
    registry = pipeline.registry
    if registry is None or STATE.pipeline is not pipeline:
        return []
    states = registry.hook_states
    found: list[Health] = []
    for cls in hook_kinds():
        if not cls._reports_health:
            continue
        hooks = list(cls._instances.values())
        with _STATES_LOCK:
            bound = [(hook, states[hook]) for hook in hooks if hook in states]
        for hook, state in bound:
            component = hook._health(state)
            if component is not None:
                found.append(component)
    return found


def bind_at_install(pipeline: Runtime) -> None:
    """A pipeline was installed: each kind binds the hooks that report before they are used."""
    for cls in hook_kinds():
        try:
            cls._installed(pipeline)
        except Exception as exc:
            internal_error(
                f"install:{cls.kind}", exc, "binding the %s hooks to the new pipeline failed", cls.kind
            )


def name_limit() -> int:
    """Names per hook kind: the current pipeline's ``hook_name_limit``, else the default."""
    pipeline = STATE.pipeline
    return DEFAULT_NAME_LIMIT if pipeline is None else pipeline.config.hook_name_limit


_hinted = False


def _hint_not_configured(hook: Hook[Any]) -> None:
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


def _release_at_shutdown(pipeline: Runtime) -> None:
    """Once per pipeline: at its shutdown, every hook lets go of what it bound on it."""
    registry = pipeline.registry
    if registry is not None and _release_stale not in registry.hook_states:
        with _STATES_LOCK:
            if _release_stale not in registry.hook_states:
                registry.hook_states[_release_stale] = True
                pipeline.on_shutdown.append(_release_stale)


def _release_stale() -> None:
    """Hooks bound on a pipeline that is no longer current drop it (they rebind on next use)."""
    with _HOOKS_LOCK:
        generation = STATE.generation
        for cls in hook_kinds():
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
        for cls in hook_kinds():
            cls._instances.clear()
