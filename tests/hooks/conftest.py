"""Fixtures the hook tests share: a capture per instrument mode, and a clock timers read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_pipeline._internal import timed as timed_module
from otel_pipeline.testing import Capture
from tests.hooks import FakeClock


@pytest.fixture(params=["core", "sdk"])
def capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    """A fresh in-memory capture, once in each instrument mode."""
    with Capture(instrument_mode=request.param) as captured:
        yield captured


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock timed hooks measure durations with: it moves only when told."""
    fake = FakeClock()
    monkeypatch.setattr(timed_module, "perf_counter", fake)
    return fake
