"""Shared test configuration: the otel_capture fixture comes from the otel_pipeline.testing plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_pipeline._internal import runtime
from otel_pipeline._internal.errors import reset_warnings


@pytest.fixture(autouse=True)
def _isolated_state() -> Iterator[None]:
    """Every test starts unconfigured and leaves nothing configured behind."""
    reset_warnings()
    yield
    runtime.shutdown(timeout=5)
