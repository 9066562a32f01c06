"""Checks on the values callers pass and hooks record, in one place, cheap on the hot path.

The rule (docs/core.md, "Values: what is checked where"):

* Record time never raises. An argument of a call that records something on an existing hook
  (a count, a timestamp, a size, a priority, a reason, an id, a flag) is checked at the call,
  configured or not; a bad one is dropped with one warning per hook kind, method, argument and
  kind of problem, naming the hook, the call, the value (:func:`safe_repr`) and what is allowed
  (:func:`amount`, :func:`label`, :func:`identifier`, :func:`flag`). What is dropped is what
  that argument would have recorded: a bad count drops the call; a bad attribute value is
  recorded as :data:`INVALID`; a bad id, timestamp or flag is left out of what the call records.
* Hook creation and configuration raise. A hook's name, a capacity, an interval, a timeout,
  an option, a function to register: a wrong type raises ``TypeError``, a value out of range
  ``ValueError``, each naming the value and what is allowed (:func:`check_name`,
  :func:`check_count`, :func:`check_seconds`, :func:`check_flag`). These are found at start-up.
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
from collections.abc import Callable
from typing import Any, Protocol

from otel_pipeline._internal.errors import warn_once

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "INVALID",
    "MAX_AMOUNT",
    "MAX_SECONDS",
    "Named",
    "amount",
    "check_count",
    "check_flag",
    "check_name",
    "check_seconds",
    "check_timeout",
    "check_whole",
    "checked_function",
    "checked_seconds",
    "checked_ttl",
    "countable",
    "drop_point",
    "dropped",
    "exportable",
    "finite",
    "flag",
    "identifier",
    "is_amount",
    "label",
    "observed",
    "safe_repr",
]

#: The largest count (or amount, or timestamp) one call takes: 2**53 = 9007199254740992.
MAX_AMOUNT = 2**53
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The longest timeout or interval, in seconds (31.7 years; below every platform's wait limit).
MAX_SECONDS = min(1e9, threading.TIMEOUT_MAX)
#: What a bad attribute value given at record time (a priority, a reason, an event type) is
#: recorded as, so that totals stay exact and the problem shows on dashboards too.
INVALID = "_INVALID"
_REPR_LIMIT = 200
_NAME_LIMIT = 255
_LABEL_INT_LIMIT = 10**_NAME_LIMIT  # an int attribute value has at most 255 digits
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


def checked_seconds(what: str, value: object) -> float:
    """A number of seconds > 0 (``timeout``, ``interval``); TypeError/ValueError naming the bad value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"otel_pipeline: {what} must be a number, got {type(value).__name__} {safe_repr(value)}"
        )
    return check_seconds(what, value)


def checked_ttl(value: object) -> float:
    """How long a result is reused: seconds >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"otel_pipeline: ttl must be a number, got {type(value).__name__} {safe_repr(value)}")
    return check_seconds("ttl", value, zero=True)


def checked_function(what: str, function: object) -> Callable[[], Any]:
    """``function`` if it is callable; TypeError naming it otherwise."""
    if not callable(function):
        raise TypeError(
            f"otel_pipeline: {what} must be a function, got {type(function).__name__} {safe_repr(function)}"
        )
    return function


def check_timeout(timeout: object) -> float | None:
    """None (no limit) or a finite number of seconds > 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"otel_pipeline: timeout must be a number of seconds or None, got {type(timeout).__name__} "
            f"{safe_repr(timeout)}"
        )
    return check_seconds("timeout", timeout)


def check_whole(what: str, value: object) -> int:
    """An integer >= 1 (``unhealthy_after``, ``window``); ValueError naming the bad value."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AMOUNT:
        raise ValueError(f"otel_pipeline: {what}={safe_repr(value)} is not valid; use an integer >= 1")
    return value


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


# -- record time: a bad argument is dropped with one warning, never raised ------------------------


class Named(Protocol):
    """What a record-time check names in its warning: a hook (its kind and name)."""

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...


_AMOUNT_ALLOWED = f"a number >= 0 (an int or float, finite, at most 2**53 = {MAX_AMOUNT})"
#: What a dropped count costs; the other outcomes are given by the calls.
NOT_RECORDED = "nothing is recorded for this call"


def dropped(
    hook: Named, method: str, argument: str, value: object, problem: str, allowed: str, outcome: str
) -> None:
    """Say once per (hook kind, method, argument, problem) that a record-time argument was dropped.

    The key holds no hook name and no value, so a program passing a million bad values to a
    million hooks still keeps one key per place and kind of mistake (memory stays bounded).
    """
    warn_once(
        f"dropped:{hook.kind}:{method}:{argument}:{problem}",
        "%s %r: %s(%s=%s) is not valid (%s): %s must be %s; %s (said once per %s method and problem)",
        hook.kind,
        hook.name,
        method,
        argument,
        safe_repr(value),
        problem,
        argument,
        allowed,
        outcome,
        hook.kind,
    )


def amount(
    hook: Named, method: str, argument: str, value: object, outcome: str = NOT_RECORDED
) -> float | None:
    """A count, amount or timestamp given at record time: the value, or None when it is dropped.

    Valid: an int or float (not bool), finite, from 0 to :data:`MAX_AMOUNT`; a subclass's value
    comes back as an exact int or float. Anything else is None, with one warning (:func:`dropped`).
    The usual int or float takes one type test and one comparison; nan fails every comparison.
    """
    cls = type(value)
    if (cls is int or cls is float) and 0 <= value <= MAX_AMOUNT:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    exact, problem = _exact_amount(value)
    if exact is None:
        dropped(hook, method, argument, value, problem, _AMOUNT_ALLOWED, outcome)
    return exact


def _exact_amount(value: object) -> tuple[float | None, str]:
    """(``value`` as an exact int or float, "") when valid, else (None, the kind of problem)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, "wrong type"
    # The base class's own conversion: a subclass's overrides are never called.
    exact: float = int.__int__(value) if isinstance(value, int) else float.__float__(value)
    if isinstance(exact, float) and exact - exact != 0.0:
        return None, "not finite"
    if exact < 0:
        return None, "negative"
    if exact > MAX_AMOUNT:
        return None, "too large"
    return exact, ""


def label(
    hook: Named, method: str, argument: str, value: object, *, ints: bool = False, placeholder: str = INVALID
) -> str:
    """An attribute value given at record time (a priority, a reason, an event type, an action).

    Valid: a non-empty str of at most 255 characters, not only spaces (with ``ints``, also an int
    (not bool), kept as its decimal text). Anything else is recorded as ``placeholder``
    (:data:`INVALID` unless the attribute has a convention of its own), with one warning.
    """
    if type(value) is str and 0 < len(value) <= _NAME_LIMIT and not value.isspace():
        return value
    text: str | None = None
    problem = "wrong type"
    if isinstance(value, str):
        text = str.__str__(value)  # an exact str; a subclass's __str__ is never called
    elif ints and isinstance(value, int) and not isinstance(value, bool):
        number = int.__int__(value)  # an exact int; a subclass's comparisons are never called
        text = int.__repr__(number) if -_LABEL_INT_LIMIT < number < _LABEL_INT_LIMIT else ""
    if text is not None:
        if 0 < len(text) <= _NAME_LIMIT and not text.isspace():
            return text
        problem = "empty or too long"
    allowed = "a non-empty str of at most 255 characters" + (" or an int" if ints else "")
    dropped(hook, method, argument, value, problem, allowed, f"recorded as {placeholder!r}")
    return placeholder


def identifier(hook: Named, method: str, argument: str, value: object) -> str | None:
    """An id for a span attribute (a job or event id): its text, or None (left off, one warning)."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int.__repr__(value)
        except ValueError:  # past Python's int-to-str digit limit
            problem = "too large"
    else:
        problem = "wrong type"
    dropped(hook, method, argument, value, problem, "a str or an int", "left off the span")
    return None


def flag(hook: Named, method: str, argument: str, value: object, outcome: str) -> bool | None:
    """A yes/no argument given at record time: True or False exactly, else None (one warning)."""
    if value is True or value is False:
        return value
    dropped(hook, method, argument, value, "wrong type", "True or False", outcome)
    return None
