"""Circuit breakers: state, transitions, trips and calls by outcome (success, failure, rejected).

>>> import otel_pipeline as op
>>> breaker = op.circuit_breaker("payments")
>>> breaker.failure()
>>> breaker.record_state("open")
>>> breaker.rejected()

Breakers of the ``pybreaker`` library report through :meth:`CircuitBreaker.pybreaker_listener`
or :func:`instrument_pybreaker` (extra ``otel_pipeline[pybreaker]``). An open or half-open
breaker makes ``/health`` degraded.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any, cast

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import never_raises
from otel_pipeline._internal.hook import Health, Hook, check_name, get_hook
from otel_pipeline._internal.registry import Adds
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.validation import dropped

if TYPE_CHECKING:
    import pybreaker

__all__ = ["STATES", "CircuitBreaker", "circuit_breaker", "instrument_pybreaker", "uninstrument_pybreaker"]

HOOK = "circuit_breaker"
#: State names and the value the state gauge takes for each.
STATES = {"closed": 0, "open": 1, "half_open": 2}
_ALIASES = {"half-open": "half_open", "halfopen": "half_open"}
_NAME = "circuit_breaker.name"

STATE_GAUGE = declare(
    "circuit_breaker.state",
    Kind.GAUGE,
    "1",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
    [_NAME],
    hook=HOOK,
    merge="per_process",
)
TRANSITIONS = declare(
    "circuit_breaker.transitions",
    Kind.COUNTER,
    "{transition}",
    "Circuit breaker state changes, by the state left and the state entered.",
    [_NAME, "circuit_breaker.state.from", "circuit_breaker.state.to"],
    hook=HOOK,
)
TRIPS = declare(
    "circuit_breaker.trips",
    Kind.COUNTER,
    "{trip}",
    "Times the circuit breaker opened.",
    [_NAME],
    hook=HOOK,
)
CALLS = declare(
    "circuit_breaker.calls",
    Kind.COUNTER,
    "{call}",
    "Calls through the circuit breaker, by outcome: success, failure, or rejected while open.",
    [_NAME, "outcome"],
    hook=HOOK,
)


def _state_name(hook: CircuitBreaker, state: object) -> str | None:
    """The state's name, or None when it is not one (dropped with one warning)."""
    name = None
    if isinstance(state, str):
        lower = str.lower(state)
        name = _ALIASES.get(lower, lower)
    if name in STATES:
        return name
    problem = "not a state" if isinstance(state, str) else "wrong type"
    allowed = "one of " + ", ".join(map(repr, STATES))
    dropped(hook, "record_state", "state", state, problem, allowed, "the state is not recorded")
    return None


class _Bound:
    """One breaker's series and current state on one pipeline."""

    __slots__ = ("attributes", "calls", "gauge", "lock", "registry", "state", "transitions", "trips")

    def __init__(self, hook: CircuitBreaker, pipeline: Runtime) -> None:
        registry = pipeline.registry
        assert registry is not None
        self.registry = registry
        self.attributes = {_NAME: hook.name}
        self.lock = threading.Lock()
        self.state = "closed"
        self.gauge = registry.instrument(STATE_GAUGE).bind(self.attributes)
        self.gauge.set(STATES["closed"])
        self.trips = registry.instrument(TRIPS).bind(self.attributes)
        self.calls = {
            outcome: registry.instrument(CALLS).bind({**self.attributes, "outcome": outcome})
            for outcome in ("success", "failure", "rejected")
        }
        self.transitions: dict[tuple[str, str], Adds] = {}

    def sync(self, state: str) -> None:
        """Take ``state`` as the current one without counting a transition (it was not seen)."""
        with self.lock:
            self.state = state
            self.gauge.set(STATES[state])

    def move_to(self, state: str) -> None:
        with self.lock:
            previous, self.state = self.state, state
            self.gauge.set(STATES[state])
        if previous == state:
            return
        series = self.transitions.get((previous, state))
        if series is None:
            attributes = {
                **self.attributes,
                "circuit_breaker.state.from": previous,
                "circuit_breaker.state.to": state,
            }
            series = self.transitions[(previous, state)] = self.registry.instrument(TRANSITIONS).bind(
                attributes
            )
        series.add(1)
        if state == "open":
            self.trips.add(1)


class CircuitBreaker(Hook[_Bound]):
    """A named circuit breaker. Get it with :func:`otel_pipeline.circuit_breaker`.

    >>> import otel_pipeline as op
    >>> op.circuit_breaker("ollama").record_state("half_open")
    """

    kind = "circuit breaker"

    def _bind(self, pipeline: Runtime) -> _Bound:
        return _Bound(self, pipeline)

    @classmethod
    def _installed(cls, pipeline: Runtime) -> None:
        """A new pipeline reports the instrumented pybreaker breakers at once, in their current state."""
        for breaker, hook in list(_INSTRUMENTED.items()):
            _sync(breaker, hook)

    def _health(self, state: _Bound) -> Health:
        """/health: a breaker used on this pipeline is degraded while open or half-open."""
        current = state.state
        return (
            f"circuit_breaker:{self.name}",
            "healthy" if current == "closed" else "degraded",
            {"state": current},
        )

    def record_state(self, state: str) -> None:
        """The breaker is now in ``state`` (``"closed"``, ``"open"`` or ``"half_open"``).

        A change of state counts a transition (and a trip when it is to open); recording the
        current state again only refreshes the gauge. Another value is not recorded (one
        warning).
        """
        name = _state_name(self, state)
        if name is None:
            return
        try:
            bound = self._current()
            if bound is not None:
                bound.move_to(name)
        except Exception as exc:
            internal_error("circuit_breaker.record_state", exc)

    def success(self) -> None:
        """Count a call that went through and succeeded."""
        self._count("success")

    def failure(self) -> None:
        """Count a call that went through and failed."""
        self._count("failure")

    def rejected(self) -> None:
        """Count a call refused because the breaker is open."""
        self._count("rejected")

    def _count(self, outcome: str) -> None:
        try:
            bound = self._current()
            if bound is not None:
                bound.calls[outcome].add(1)
        except Exception as exc:
            internal_error(f"circuit_breaker.{outcome}", exc)

    def pybreaker_listener(self) -> pybreaker.CircuitBreakerListener:
        """A ``pybreaker.CircuitBreakerListener`` reporting state changes, successes and failures here.

        pybreaker refuses calls on an open breaker before it notifies listeners, so a listener
        alone cannot count rejected calls: :func:`instrument_pybreaker` adds that.

        >>> import pybreaker, otel_pipeline as op
        >>> breaker = pybreaker.CircuitBreaker(listeners=[op.circuit_breaker("db").pybreaker_listener()])
        """
        listener: pybreaker.CircuitBreakerListener = _listener_class()(self)
        return listener


def circuit_breaker(name: str) -> CircuitBreaker:
    """The circuit breaker hook named ``name`` (same name, same object).

    >>> import otel_pipeline as op
    >>> op.circuit_breaker("ollama") is op.circuit_breaker("ollama")
    True
    """
    return get_hook(CircuitBreaker, name)


@functools.cache
def _listener_class() -> Any:
    """The pybreaker listener class (defined on first use: pybreaker is an optional extra)."""
    try:
        import pybreaker
    except ImportError as error:
        raise ImportError(
            "otel_pipeline: reporting pybreaker breakers needs the pybreaker package; "
            "install the extra: pip install 'otel_pipeline[pybreaker]'"
        ) from error

    class Listener(pybreaker.CircuitBreakerListener):
        """Reports one pybreaker breaker's events to an otel_pipeline circuit breaker hook."""

        def __init__(self, hook: CircuitBreaker) -> None:
            self.hook = hook
            self.local = threading.local()

        @never_raises("pybreaker listener")
        def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
            self.hook.record_state(new_state.name)

        @never_raises("pybreaker listener")
        def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
            self.local.admitted = True

        @never_raises("pybreaker listener")
        def failure(self, cb: Any, exc: BaseException) -> None:
            self.hook.failure()

        @never_raises("pybreaker listener")
        def success(self, cb: Any) -> None:
            self.hook.success()

    return Listener


def instrument_pybreaker(breaker: pybreaker.CircuitBreaker, name: str | None = None) -> CircuitBreaker:
    """Report a ``pybreaker.CircuitBreaker`` without changing the code that uses it.

    Adds a listener (state, successes, failures) and wraps the breaker's ``call`` so that calls
    refused while it is open count as rejected (``breaker.call``, ``with breaker.calling()`` and
    ``@breaker`` all go through it; Tornado's ``call_async`` is not counted). The hook is named
    ``name``, else the breaker's own name. Returns the hook; instrumenting twice is a no-op.

    >>> import pybreaker, otel_pipeline as op
    >>> hook = op.instrument_pybreaker(pybreaker.CircuitBreaker(name="search"))
    >>> hook.name
    'search'
    """
    listener_class = _listener_class()
    import pybreaker

    if not isinstance(breaker, pybreaker.CircuitBreaker):
        raise TypeError(
            "otel_pipeline: instrument_pybreaker() needs a pybreaker.CircuitBreaker, "
            f"got {type(breaker).__name__}"
        )
    hook_name = name if name is not None else breaker.name
    if hook_name is None:
        raise ValueError(
            "otel_pipeline: this pybreaker breaker has no name; pass name=... to instrument_pybreaker()"
        )
    hook = circuit_breaker(check_name("circuit breaker name", hook_name))
    if any(isinstance(known, listener_class) and known.hook is hook for known in breaker.listeners):
        return hook
    listener = listener_class(hook)
    breaker.add_listener(listener)
    _INSTRUMENTED[breaker] = hook
    _sync(breaker, hook)
    original = type(breaker).call
    owner = weakref.ref(breaker)  # the wrapper lives on the breaker: no reference cycle

    def call(func: Any, *args: Any, **kwargs: Any) -> Any:
        listener.local.admitted = False
        try:
            return original(cast(Any, owner()), func, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            if not listener.local.admitted:
                hook.rejected()
            raise

    call.otel_pipeline_listener = listener  # type: ignore[attr-defined]
    breaker.call = call  # type: ignore[method-assign]
    return hook


def uninstrument_pybreaker(breaker: pybreaker.CircuitBreaker) -> None:
    """Undo :func:`instrument_pybreaker`: remove its listener and call wrapper (no-op if none).

    >>> import pybreaker, otel_pipeline as op
    >>> breaker = pybreaker.CircuitBreaker(name="search")
    >>> hook = op.instrument_pybreaker(breaker)
    >>> op.uninstrument_pybreaker(breaker)
    >>> breaker.listeners
    ()
    """
    listener_class = _listener_class()
    for listener in breaker.listeners:
        if isinstance(listener, listener_class):
            breaker.remove_listener(listener)
    if hasattr(breaker.__dict__.get("call"), "otel_pipeline_listener"):
        del breaker.call
    _INSTRUMENTED.pop(breaker, None)


#: pybreaker breakers instrumented, and their hooks: their state is taken again by each new pipeline.
_INSTRUMENTED: weakref.WeakKeyDictionary[Any, CircuitBreaker] = weakref.WeakKeyDictionary()


@never_raises("pybreaker state")
def _sync(breaker: Any, hook: CircuitBreaker) -> None:
    bound = hook._current()
    name = _state_name(hook, breaker.current_state)
    if bound is not None and name is not None:
        bound.sync(name)
