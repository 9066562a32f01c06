"""Checks on the values callers pass and hooks record, in one place, cheap on the hot path.

The rule (docs/core.md, "Values: what is checked where"):

* An argument of a hook call (a name, a count, a timestamp, a timeout, an option) is checked at
  the call, configured or not: a wrong type raises ``TypeError``, a value out of range
  (negative, nan, inf, past :data:`MAX_AMOUNT`) raises ``ValueError``, each naming the value
  (:func:`safe_repr`) and what is allowed. These are programming errors, found at once.
* A value otel_pipeline reads itself (an observer function, a cache's ``cache_info()``, a
  ``count_items()`` result, a resource sample) never raises: a bad one is dropped with one
  warning naming the hook and the value (:func:`observed`).
* At collection, a point that cannot be exported (a non-finite value, an integer outside
  int64) is dropped with one warning, never the collection (:func:`exportable`).

A count is at most 2**53 per call (the largest integer a float holds exactly), so that no single
call can overflow what an exporter encodes; an integer sum that still outgrows int64 (OTLP's
``as_int``) after many such calls is dropped at collection.
"""

from __future__ import annotations

import math
import threading

from otel_pipeline._internal.errors import warn_once

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_AMOUNT",
    "MAX_SECONDS",
    "check_count",
    "check_flag",
    "check_name",
    "check_seconds",
    "countable",
    "drop_point",
    "exportable",
    "finite",
    "is_amount",
    "observed",
    "safe_repr",
]

#: The largest count (or amount, or timestamp) one call takes: 2**53 = 9007199254740992.
MAX_AMOUNT = 2**53
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The longest timeout or interval, in seconds (31.7 years; below every platform's wait limit).
MAX_SECONDS = min(1e9, threading.TIMEOUT_MAX)
_REPR_LIMIT = 200
_FLOAT_LIMIT = 2**1024  # ints from here on have no float


def safe_repr(value: object, limit: int = _REPR_LIMIT) -> str:
    """``repr(value)`` for a message: never raises, at most ``limit`` characters.

    >>> safe_repr(10**400)
    '<int of 1329 bits>'
    >>> class Bad:
    ...     def __repr__(self) -> str:
    ...         raise RuntimeError("no")
    >>> safe_repr(Bad())
    '<Bad object (repr failed)>'
    >>> len(safe_repr("x" * 500))
    200
    """
    if type(value) is int and value.bit_length() > 128:  # also past Python's int-to-str digit limit
        return f"<int of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object (repr failed)>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _what(value: object) -> str:
    """``type value`` for a TypeError message."""
    return f"{type(value).__name__} {safe_repr(value)}"


def check_name(what: str, name: object) -> str:
    """A hook or attribute name: a non-empty string of at most 255 characters.

    >>> check_name("queue name", {})
    Traceback (most recent call last):
    ...
    TypeError: otel_pipeline: queue name must be a str, got dict {}
    """
    if not isinstance(name, str):
        raise TypeError(f"otel_pipeline: {what} must be a str, got {_what(name)}")
    if not name.strip() or len(name) > 255:
        raise ValueError(
            f"otel_pipeline: {what}={safe_repr(name)} is not valid; use a non-empty name of at most "
            "255 characters"
        )
    return name


def check_count(what: str, value: object) -> int | float:
    """A count, amount or timestamp: an int or float (not bool), finite, from 0 to :data:`MAX_AMOUNT`.

    >>> check_count("count", 3)
    3
    >>> check_count("count", 10**400)
    Traceback (most recent call last):
    ...
    ValueError: otel_pipeline: count=<int of 1329 bits> is not valid; use a number >= 0 (finite, ...)
    """
    cls = type(value)  # the usual int or float takes two identity tests
    if (cls is not int and cls is not float) and (cls is bool or not isinstance(value, (int, float))):
        raise TypeError(f"otel_pipeline: {what} must be a number, got {_what(value)}")
    if not 0 <= value <= MAX_AMOUNT:  # type: ignore[operator]  # nan fails every comparison
        raise ValueError(
            f"otel_pipeline: {what}={safe_repr(value)} is not valid; use a number >= 0 (finite, at most "
            f"2**53 = {MAX_AMOUNT})"
        )
    return value  # type: ignore[return-value]


def check_flag(what: str, value: object) -> bool:
    """A yes/no option: True or False exactly (a truthy object could raise, or mean something else).

    >>> check_flag("requeued", 1)
    Traceback (most recent call last):
    ...
    TypeError: otel_pipeline: requeued must be True or False, got int 1
    """
    if value is not True and value is not False:
        raise TypeError(f"otel_pipeline: {what} must be True or False, got {_what(value)}")
    return value


def check_seconds(what: str, value: object, *, zero: bool = False) -> float:
    """A timeout or interval: a finite number of seconds > 0 (``zero``: >= 0), at most :data:`MAX_SECONDS`.

    >>> check_seconds("interval", 10**400)
    Traceback (most recent call last):
    ...
    ValueError: otel_pipeline: interval=<int of 1329 bits> is not valid; use a number of seconds > 0 ...
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"otel_pipeline: {what} must be a number of seconds, got {_what(value)}")
    low_ok = value >= 0 if zero else value > 0
    if not (low_ok and value <= MAX_SECONDS):
        raise ValueError(
            f"otel_pipeline: {what}={safe_repr(value)} is not valid; use a number of seconds "
            f"{'>=' if zero else '>'} 0 (finite, at most {MAX_SECONDS:g})"
        )
    return float(value)


def finite(value: object) -> bool:
    """True for an int or float (not bool) with a finite float value.

    >>> finite(1.5), finite(math.inf), finite(10**400), finite(True), finite("1")
    (True, False, False, False, False)
    """
    if type(value) is float:
        return value - value == 0.0  # inf - inf and nan - nan are nan
    if type(value) is int:
        return -_FLOAT_LIMIT < value < _FLOAT_LIMIT
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) if isinstance(value, float) else -_FLOAT_LIMIT < value < _FLOAT_LIMIT


def exportable(value: object) -> bool:
    """True for a value every exporter encodes: a finite float, or an int within int64.

    >>> exportable(2**63 - 1), exportable(2**63), exportable(1e308), exportable(math.nan)
    (True, False, True, False)
    """
    if type(value) is int:
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, int) and not isinstance(value, bool):
        return INT64_MIN <= value <= INT64_MAX
    return finite(value)


def is_amount(value: object) -> bool:
    """True when :func:`check_count` accepts ``value`` (the check that does not raise).

    >>> is_amount(3), is_amount(2**53 + 1), is_amount(math.inf), is_amount(True)
    (True, False, False, False)
    """
    return isinstance(value, (int, float)) and finite(value) and 0 <= value <= MAX_AMOUNT


def countable(value: object) -> bool:
    """True for an exportable number >= 0 (a depth, a size, a count read from a function).

    >>> countable(0), countable(-1), countable(math.nan), countable(2**64), countable(False)
    (True, False, False, False, False)
    """
    return isinstance(value, (int, float)) and exportable(value) and value >= 0


def drop_point(metric: str, value: object, attributes: object) -> None:
    """Say once per metric that a point was dropped because no exporter can encode its value."""
    warn_once(
        f"unexportable:{metric}",
        "metric %s: value %s (attributes %s) is not a finite number within int64; the point is dropped",
        metric,
        safe_repr(value),
        safe_repr(attributes),
    )


def observed(hook: str, name: str, what: str, value: object, *, minimum: float | None = 0) -> float | None:
    """A value read at collection from a user's function: ``value`` if valid, else None (warned once).

    Valid: None (no value now, no warning), or a finite number (not bool) within int64 when an
    int, and >= ``minimum`` unless that is None.

    >>> observed("queue", "emails", "depth", 3)
    3
    >>> observed("queue", "emails", "depth", -1) is None
    True
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and exportable(value) and (minimum is None or value >= minimum):
        return value
    allowed = "a finite number" if minimum is None else f"a finite number >= {minimum:g}"
    warn_once(
        f"observed:{hook}:{name}:{what}",
        "%s %r: %s is %s, not %s; dropped",
        hook,
        name,
        what,
        safe_repr(value),
        allowed,
    )
    return None
