"""What a metric is: name, kind, unit, description and attribute keys (the catalogue's rows)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-/]{0,254}$")


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

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r} is not a valid OpenTelemetry instrument name")
        if not self.description:
            raise ValueError(
                f"metric {self.name!r} needs a description (promtool rejects metrics without HELP)"
            )
