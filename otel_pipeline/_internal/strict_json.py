"""Strict JSON for every document otel_pipeline writes: /stats, /trends, /health, the summary file.

``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which is not JSON (RFC 8259): browsers,
``jq`` and most JSON libraries refuse the whole document. Collectors and health checks return
whatever the application gives them, so the document is made JSON-safe first (:func:`jsonable`),
then written with ``allow_nan=False``:

* a float that is not finite, or an int too large for a float, becomes ``null``;
* keys become strings; tuples, lists and sets become lists;
* any other object becomes its ``str()`` (its safe ``repr`` if ``str()`` raises);
* nesting deeper than :data:`MAX_DEPTH` (a cycle, say) becomes a string, not a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from otel_pipeline._internal.validation import finite, safe_repr

__all__ = ["MAX_DEPTH", "dumps", "jsonable"]

MAX_DEPTH = 32


def _text(value: object) -> str:
    if isinstance(value, str):
        return str.__str__(value)
    try:
        return str(value)
    except Exception:
        return safe_repr(value)


def _key(key: object) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, (int, float)):
        return json.dumps(jsonable(key))
    return _text(key)


def jsonable(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` always writes (see module docs).

    >>> jsonable({"rate": float("nan"), 1: (2, float("inf")), "big": 10**400, "ok": [1.5, None]})
    {'rate': None, '1': [2, None], 'big': None, 'ok': [1.5, None]}
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if not finite(value):
            return None
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if depth >= MAX_DEPTH:
        return safe_repr(value)
    try:
        if isinstance(value, Mapping):
            return {_key(key): jsonable(item, depth + 1) for key, item in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [jsonable(item, depth + 1) for item in value]
    except Exception:  # a container that fails to iterate is shown, not raised
        return safe_repr(value)
    return _text(value)


def dumps(payload: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`jsonable` ``(payload)``, with ``allow_nan=False``.

    >>> dumps({"b": float("inf"), "a": 1}, sort_keys=True)
    '{"a": 1, "b": null}'
    """
    return json.dumps(jsonable(payload), allow_nan=False, **options)
