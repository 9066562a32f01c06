"""Warnings logged once to the ``otel_pipeline`` logger; internal faults go to ``boundary``."""

from __future__ import annotations

import threading

from otel_pipeline._internal import boundary
from otel_pipeline._internal.boundary import contained, logger

__all__ = ["logger", "never_raises", "reset_warnings", "warn_once"]

_seen: set[str] = set()
_seen_lock = threading.Lock()
_MAX_KEYS = 10_000


def warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning the first time ``key`` is seen (bounded memory)."""
    with _seen_lock:
        if key in _seen or len(_seen) >= _MAX_KEYS:
            return
        _seen.add(key)
    logger.warning(message, *args)


def reset_warnings() -> None:
    """Forget which warnings and internal faults were logged (tests)."""
    with _seen_lock:
        _seen.clear()
    boundary.reset()


#: The decorator of cold record-time functions (see :mod:`otel_pipeline._internal.boundary`).
never_raises = contained
