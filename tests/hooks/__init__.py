"""Tests of the hooks, and helpers they share."""

from __future__ import annotations

from otel_pipeline.config import DEFAULT_DURATION_BUCKETS


class FakeClock:
    """A clock that moves only when told: durations measured against it are exact."""

    def __init__(self, now: float = 1024.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def buckets(*values: float) -> tuple[int, ...]:
    """The bucket counts the default duration buckets give ``values``."""
    counts = [0] * (len(DEFAULT_DURATION_BUCKETS) + 1)
    for value in values:
        counts[sum(1 for bound in DEFAULT_DURATION_BUCKETS if bound < value)] += 1
    return tuple(counts)
