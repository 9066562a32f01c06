"""Internal fault handling: log once to the ``otel_pipeline`` logger, never raise into user code."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger("otel_pipeline")

_seen: set[str] = set()
_seen_lock = threading.Lock()
_MAX_KEYS = 10_000

F = TypeVar("F", bound=Callable[..., Any])


def warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning the first time ``key`` is seen (bounded memory)."""
    with _seen_lock:
        if key in _seen or len(_seen) >= _MAX_KEYS:
            return
        _seen.add(key)
    logger.warning(message, *args)


def reset_warnings() -> None:
    """Forget which warnings were logged (tests)."""
    with _seen_lock:
        _seen.clear()


def never_raises(key: str) -> Callable[[F], F]:
    """Decorate a record-time function so that an internal fault is logged once and swallowed."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except Exception:  # instrumentation must never break the host program
                with _seen_lock:
                    first = key not in _seen
                    _seen.add(key)
                if first:
                    logger.exception("internal error in %s; it is ignored", key)
                return None

        return guarded  # type: ignore[return-value]

    return decorate
