"""The one error boundary of record time: an internal fault is logged once and the call does nothing.

Instrumentation never raises into user code. Every record-time entry point (a hook method, a
context manager's ``__enter__``/``__exit__``, a decorator's wrapper, an integration's signal
handler, an observable callback) contains its own faults with an inline ``try`` (free on the
happy path since Python 3.11: no wrapper call per operation) and hands them to
:func:`internal_error`::

    def enqueued(self, count: int = 1) -> None:
        try:
            bound = self._current()
            if bound is None:
                return
            bound.enqueued.add(count)
        except Exception as exc:
            internal_error("queue.enqueued", exc)

A method that hands out a context manager returns what it returns when instrumentation is off::

        except Exception as exc:
            internal_error("queue.processing", exc)
            return Noop(self.processing)

Cold entry points (signal handlers, pool callbacks) may use the decorator :func:`contained`.

Three things are *not* internal faults, and do not come here:

* the user's own exception passing through a ``with`` block or a decorated function: ``__exit__``
  receives it as arguments, so the ``try`` around our recording never sees it, and it propagates
  unchanged (recorded as the operation's outcome);
* a bad argument: ``_internal/validation.py`` drops it with one warning and never raises;
* the application's code or data raising when we use it (an observer function, a health check,
  a carrier mapping whose ``get`` raises): that is the application's fault, logged once through
  :func:`application_error`, never strict.

:func:`internal_error` logs the first fault of each ``site`` at ERROR with its traceback, later
ones at DEBUG (also with it), and returns. In **strict mode** it raises :class:`InternalError`
(from the fault) instead, and remembers the fault (:func:`take_faults`), so that a test fails
even when something between swallowed the raise (the OpenTelemetry SDK around an observable
callback, a background thread). Strict mode is on when :func:`set_strict` says so (see
``Capture(strict_internal_errors=True)``), else when the environment variable
``OTEL_PIPELINE_STRICT_INTERNAL_ERRORS`` is ``1`` when the fault happens (the project's own test
suite sets it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "STRICT_ENV",
    "InternalError",
    "application_error",
    "contained",
    "internal_error",
    "reset",
    "set_strict",
    "strict",
    "take_faults",
]

logger = logging.getLogger("otel_pipeline")

#: The environment variable that turns strict mode on (``1``, ``true``, ``yes``, ``on``).
STRICT_ENV = "OTEL_PIPELINE_STRICT_INTERNAL_ERRORS"
_TRUE = frozenset({"1", "true", "yes", "on"})
_MAX_SITES = 10_000
_MAX_FAULTS = 100

F = TypeVar("F", bound=Callable[..., Any])

_seen: set[str] = set()
_lock = threading.Lock()
#: True/False: set by set_strict() (a test capture); None: the environment variable decides.
_override: bool | None = None
#: The faults strict mode raised, oldest first (bounded), until take_faults().
_faults: list[tuple[str, BaseException]] = []


class InternalError(Exception):
    """An internal fault of otel_pipeline at record time, raised only in strict mode (tests).

    Its ``__cause__`` is the fault; ``site`` names the entry point it happened in.
    """

    def __init__(self, site: str) -> None:
        super().__init__(f"otel_pipeline: internal error in {site} (raised because strict mode is on)")
        self.site = site


def strict() -> bool:
    """Whether an internal fault raises (see module docs); read when a fault happens."""
    override = _override
    if override is not None:
        return override
    return os.environ.get(STRICT_ENV, "").strip().lower() in _TRUE


def set_strict(value: bool | None) -> bool | None:
    """Force strict mode on or off (None: the environment decides); returns the previous setting."""
    global _override
    with _lock:
        previous, _override = _override, value
    return previous


def _first(site: str) -> bool:
    with _lock:
        if site in _seen or len(_seen) >= _MAX_SITES:
            return False
        _seen.add(site)
        return True


def _log(site: str, exc: BaseException, level: int, message: str, args: tuple[object, ...]) -> None:
    # The boundary itself never raises (logging reports its handlers' errors on its own).
    with contextlib.suppress(Exception):
        logger.log(level if _first(site) else logging.DEBUG, message, *args, exc_info=exc)


def internal_error(site: str, exc: BaseException, message: str | None = None, *args: object) -> None:
    """Call from the ``except Exception as exc`` clause of a record-time entry point named ``site``.

    Logs ``exc`` once per site (``message % args``, by default "internal error in <site>; it is
    ignored") and returns, so the caller degrades to what it does when instrumentation is off.
    In strict mode it raises :class:`InternalError` from ``exc`` instead.
    """
    if strict():
        if isinstance(exc, InternalError):  # raised by a boundary further in: once is enough
            raise exc
        with _lock:
            if len(_faults) < _MAX_FAULTS:
                _faults.append((site, exc))
        raise InternalError(site) from exc
    if message is None:
        message, args = "internal error in %s; it is ignored", (site,)
    _log(site, exc, logging.ERROR, message, args)


def application_error(site: str, exc: BaseException, message: str, *args: object) -> None:
    """The application's code or data raised when otel_pipeline used it: log once, go on.

    Not an internal fault (strict mode does not raise it): the first time per ``site`` at
    WARNING, later at DEBUG, each with the traceback.
    """
    _log(site, exc, logging.WARNING, message, args)


def contained(site: str, default: Any = None) -> Callable[[F], F]:
    """Decorate a cold record-time function: an internal fault goes to :func:`internal_error`.

    The call then returns ``default``. (Hot paths use the inline ``try`` of the module docs.)
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                internal_error(site, exc)
                return default

        return guarded  # type: ignore[return-value]

    return decorate


def take_faults() -> list[tuple[str, BaseException]]:
    """The ``(site, fault)`` pairs strict mode raised since the last call, oldest first; forgets them."""
    with _lock:
        faults = list(_faults)
        _faults.clear()
    return faults


def reset() -> None:
    """Forget which sites were logged and the faults recorded (tests)."""
    with _lock:
        _seen.clear()
        _faults.clear()
