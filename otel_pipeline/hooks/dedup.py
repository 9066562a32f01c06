"""Deduplication: items checked, duplicates found, and the duplicate ratio.

>>> import otel_pipeline as op
>>> seen: set[str] = set()
>>> for key in ["a", "b", "a"]:
...     if op.dedup("events").check(duplicate=key in seen):
...         continue
...     seen.add(key)
"""

from __future__ import annotations

import threading

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.hook import Hook, Points, get_hook, observes
from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.validation import NOT_RECORDED, flag

__all__ = ["Dedup", "dedup"]

HOOK = "dedup"
_ATTRS = ["dedup.name"]
CHECKS = declare(
    "dedup.checks", Kind.COUNTER, "{check}", "Items checked for being a duplicate.", _ATTRS, hook=HOOK
)
DUPLICATES = declare(
    "dedup.duplicates", Kind.COUNTER, "{duplicate}", "Items found to be duplicates.", _ATTRS, hook=HOOK
)
DUPLICATE_RATIO = declare(
    "dedup.duplicate_ratio",
    Kind.OBSERVABLE_GAUGE,
    "1",
    "Duplicates / checks since the process started recording; absent before the first check.",
    _ATTRS,
    hook=HOOK,
    merge="ratio:dedup.duplicates/dedup.checks",
)


class _State:
    """A dedup's series and running totals on one pipeline's registry."""

    __slots__ = ("attributes", "checks", "duplicates", "lock", "totals")

    def __init__(self, hook: Dedup, registry: Registry) -> None:
        self.attributes = {"dedup.name": hook.name}
        self.checks = registry.instrument(CHECKS).bind(self.attributes)
        self.duplicates = registry.instrument(DUPLICATES).bind(self.attributes)
        self.lock = threading.Lock()
        #: [checks, duplicates] recorded on this registry, for the ratio.
        self.totals = [0, 0]


class Dedup(Hook[_State]):
    """A named deduplication step. Get it with :func:`otel_pipeline.dedup`.

    >>> import otel_pipeline as op
    >>> op.dedup("events").check(duplicate=False)
    False
    """

    kind = "dedup"

    def _bind(self, pipeline: Runtime) -> _State:
        registry = pipeline.registry
        assert registry is not None
        return _State(self, registry)

    @observes(DUPLICATE_RATIO)
    def _ratio(self, state: _State) -> Points:
        with state.lock:
            checks, duplicates = state.totals
        if checks:
            yield duplicates / checks, state.attributes

    def check(self, *, duplicate: bool) -> bool:
        """Count one item checked, and a duplicate if ``duplicate``; returns ``duplicate``.

        >>> import otel_pipeline as op
        >>> op.dedup("events").check(duplicate=True)
        True
        """
        if duplicate is not True and duplicate is not False:
            flag(self, "check", "duplicate", duplicate, NOT_RECORDED)
            return duplicate
        try:
            state = self._current()
            if state is not None:
                state.checks.add(1)
                if duplicate:
                    state.duplicates.add(1)
                with state.lock:
                    state.totals[0] += 1
                    state.totals[1] += duplicate
        except Exception as exc:
            internal_error("dedup.check", exc)
        return duplicate


def dedup(name: str) -> Dedup:
    """The dedup hook named ``name`` (same name, same object).

    >>> import otel_pipeline as op
    >>> op.dedup("events") is op.dedup("events")
    True
    """
    return get_hook(Dedup, name)
