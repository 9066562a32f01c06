"""What a metric is: name, kind, unit, description, attributes, group merge rule (the catalogue's rows)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import NewType

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-/]{0,254}$")
#: How a worker group merges the members' points of one metric (docs/operations.md, docs/metrics.md).
MERGE_RULES = ("sum", "live_sum", "last", "max", "min", "per_process", "ratio")


class Kind(enum.Enum):
    """The OpenTelemetry instrument kind a metric is exported as."""

    COUNTER = "counter"
    UP_DOWN_COUNTER = "updowncounter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    OBSERVABLE_COUNTER = "observable_counter"
    OBSERVABLE_UP_DOWN_COUNTER = "observable_updowncounter"
    OBSERVABLE_GAUGE = "observable_gauge"

    @property
    def observable(self) -> bool:
        return self.value.startswith("observable")


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the catalogue. ``attributes`` lists the attribute keys its points may carry."""

    name: str
    kind: Kind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    hook: str = ""
    #: The worker-group merge rule; "" takes the kind's default (see :func:`default_merge`). A ratio
    #: is ``"ratio:NUM/DEN+DEN..."``, each term a metric name with an optional ``{key=value}`` filter.
    merge: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r} is not a valid OpenTelemetry instrument name")
        if not self.description:
            raise ValueError(
                f"metric {self.name!r} needs a description (promtool rejects metrics without HELP)"
            )
        if self.merge:
            rule = self.merge.partition(":")[0]
            if rule not in MERGE_RULES or (rule == "ratio") != (":" in self.merge):
                raise ValueError(
                    f"metric {self.name!r}: merge={self.merge!r} is not valid; use one of "
                    f"{', '.join(MERGE_RULES[:-1])} or 'ratio:NUM/DEN+DEN'"
                )
            if rule == "ratio":
                parse_ratio(self.merge)

    @property
    def merge_rule(self) -> str:
        """The merge rule in effect: the declared one, else the kind's default."""
        return self.merge.partition(":")[0] if self.merge else default_merge(self.kind)


#: A spec as :func:`catalogue.declare` types it by kind (the same object at runtime): the registry
#: hands a counter or up-down counter spec an instrument whose series ``add``, a histogram's
#: ``record``, a gauge's ``set``, so that mypy catches a series used as another kind.
SumSpec = NewType("SumSpec", MetricSpec)
HistogramSpec = NewType("HistogramSpec", MetricSpec)
GaugeSpec = NewType("GaugeSpec", MetricSpec)
ObservableSpec = NewType("ObservableSpec", MetricSpec)


def default_merge(kind: Kind) -> str:
    """The merge rule of a kind when the catalogue declares none.

    Counters and histograms sum over every member, departed ones too; up-down counters over the
    live members; gauges take the latest observation.
    """
    if kind in (Kind.COUNTER, Kind.OBSERVABLE_COUNTER, Kind.HISTOGRAM):
        return "sum"
    if kind in (Kind.UP_DOWN_COUNTER, Kind.OBSERVABLE_UP_DOWN_COUNTER):
        return "live_sum"
    return "last"


#: One term of a ratio: a metric name and the attribute values its points must have.
RatioTerm = tuple[str, tuple[tuple[str, str], ...]]
_TERM = re.compile(r"^([A-Za-z][A-Za-z0-9_.\-/]*)(?:\{([^}]*)\})?$")


def parse_ratio(merge: str) -> tuple[RatioTerm, tuple[RatioTerm, ...]]:
    """``"ratio:a/b+c{k=v}"`` -> (numerator term, denominator terms).

    >>> parse_ratio("ratio:cache.hits/cache.hits+cache.misses")
    (('cache.hits', ()), (('cache.hits', ()), ('cache.misses', ())))
    """
    numerator, slash, denominator = merge.partition(":")[2].partition("/")
    if not slash or not denominator:
        raise ValueError(f"merge={merge!r}: a ratio needs 'ratio:NUM/DEN'")
    terms = [_term(merge, text) for text in (numerator, *denominator.split("+"))]
    return terms[0], tuple(terms[1:])


def _term(merge: str, text: str) -> RatioTerm:
    found = _TERM.match(text.strip())
    if found is None:
        raise ValueError(f"merge={merge!r}: {text!r} is not a metric name with an optional {{key=value}}")
    pairs = []
    for item in (found.group(2) or "").split(","):
        if item.strip():
            key, equals, value = item.partition("=")
            if not equals:
                raise ValueError(f"merge={merge!r}: {item!r} is not key=value")
            pairs.append((key.strip(), value.strip()))
    return found.group(1), tuple(sorted(pairs))
