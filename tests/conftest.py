"""Shared test configuration: the otel_capture fixture comes from the otel_pipeline.testing plugin.

Every test starts unconfigured and leaves nothing configured behind. ``configure()`` in a test
never sets the OpenTelemetry global providers (they can be set once per process): the calls are
recorded in ``global_providers`` instead; tests of the real globals run in a subprocess.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from otel_pipeline._internal import runtime
from otel_pipeline._internal.errors import reset_warnings
from otel_pipeline._internal.hook import forget_hooks
from otel_pipeline.summary import _forget_final


@pytest.fixture(autouse=True)
def global_providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, Any]]]:
    """The (meter provider, tracer provider) pairs configure() made global during the test."""
    calls: list[tuple[Any, Any]] = []
    monkeypatch.setattr(runtime, "_globals_set", False)
    monkeypatch.setattr(
        runtime, "set_global_providers", lambda meters, tracers: calls.append((meters, tracers))
    )
    reset_warnings()
    yield calls
    runtime.shutdown(timeout=5)
    forget_hooks()
    _forget_final()
    left = signal.getsignal(signal.SIGTERM)
    if left is not _SIGTERM_AT_START:
        # A handler left behind would be inherited by every later test's forked children.
        signal.signal(signal.SIGTERM, _SIGTERM_AT_START)
        pytest.fail(f"the test left SIGTERM handled by {left!r} after shutdown()")


_SIGTERM_AT_START = signal.getsignal(signal.SIGTERM)
