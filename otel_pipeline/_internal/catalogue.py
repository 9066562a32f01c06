"""The metric catalogue: every metric any hook can emit, declared once, in code.

Docs (docs/metrics.md), dashboards and alert rules are generated from or checked against it.
Hooks declare their metrics at import time with :func:`declare`; the list of every metric, with
every hook module imported first, is :func:`otel_pipeline.hooks.all_metrics` (the layer above).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, overload

from otel_pipeline._internal.spec import (
    GaugeSpec,
    HistogramSpec,
    Kind,
    MetricSpec,
    ObservableSpec,
    SumSpec,
)

_CATALOGUE: dict[str, MetricSpec] = {}


@overload
def declare(
    name: str,
    kind: Literal[Kind.COUNTER, Kind.UP_DOWN_COUNTER],
    unit: str,
    description: str,
    attributes: Iterable[str] = (),
    *,
    hook: str,
    merge: str = "",
) -> SumSpec: ...


@overload
def declare(
    name: str,
    kind: Literal[Kind.HISTOGRAM],
    unit: str,
    description: str,
    attributes: Iterable[str] = (),
    *,
    hook: str,
    merge: str = "",
) -> HistogramSpec: ...


@overload
def declare(
    name: str,
    kind: Literal[Kind.GAUGE],
    unit: str,
    description: str,
    attributes: Iterable[str] = (),
    *,
    hook: str,
    merge: str = "",
) -> GaugeSpec: ...


@overload
def declare(
    name: str,
    kind: Literal[Kind.OBSERVABLE_COUNTER, Kind.OBSERVABLE_UP_DOWN_COUNTER, Kind.OBSERVABLE_GAUGE],
    unit: str,
    description: str,
    attributes: Iterable[str] = (),
    *,
    hook: str,
    merge: str = "",
) -> ObservableSpec: ...


@overload
def declare(
    name: str,
    kind: Kind,
    unit: str,
    description: str,
    attributes: Iterable[str] = (),
    *,
    hook: str,
    merge: str = "",
) -> MetricSpec: ...


def declare(
    name: str,
    kind: Kind,
    unit: str,
    description: str,
    attributes: Iterable[str] = (),
    *,
    hook: str,
    merge: str = "",
) -> MetricSpec:
    """Add a metric to the catalogue (idempotent for an identical declaration) and return it.

    ``merge``: how a worker group merges its members' points (default: by kind, see ``spec.py``).
    The spec is typed by its kind (``SumSpec``, ``HistogramSpec``...: the same object at runtime).
    """
    spec = MetricSpec(name, kind, unit, description, tuple(attributes), hook, merge)
    existing = _CATALOGUE.get(name)
    if existing is not None and existing != spec:
        raise ValueError(f"metric {name!r} is declared twice with different definitions")
    _CATALOGUE[name] = spec
    return spec


def find(name: str) -> MetricSpec | None:
    """The declared metric named ``name``, or None (an application's own instrument)."""
    return _CATALOGUE.get(name)


def declared() -> list[MetricSpec]:
    """The metrics declared so far, in declaration order (this module imports no hook module)."""
    return list(_CATALOGUE.values())
