"""Shared test configuration: the otel_capture fixture comes from the otel_pipeline.testing plugin.

Every test starts unconfigured and leaves nothing configured behind. ``configure()`` in a test
never sets the OpenTelemetry global providers (they can be set once per process): the calls are
recorded in ``global_providers`` instead; tests of the real globals run in a subprocess.

Strict mode is on for the whole suite (and the subprocesses it starts): an internal fault of the
package raises :class:`~otel_pipeline._internal.boundary.InternalError` where it happens, and one
swallowed on its way (the SDK around a callback, a thread) fails the test when it ends. A test
that injects a fault on purpose to check that it is contained is marked
``@pytest.mark.contains_internal_errors``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from otel_pipeline._internal import boundary, runtime
from otel_pipeline._internal.errors import reset_warnings
from otel_pipeline._internal.hook import forget_hooks
from otel_pipeline.summary import _forget_final

os.environ[boundary.STRICT_ENV] = "1"


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


@pytest.fixture(autouse=True)
def strict_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Internal faults fail the test, unless it is marked ``contains_internal_errors``."""
    contained = request.node.get_closest_marker("contains_internal_errors") is not None
    previous = boundary.set_strict(False) if contained else None
    boundary.take_faults()
    yield
    if contained:
        boundary.set_strict(previous)
    faults = boundary.take_faults()
    if faults and not contained:
        site, fault = faults[0]
        pytest.fail(
            f"{len(faults)} internal fault(s) of otel_pipeline, the first in {site}: {fault!r}", pytrace=False
        )
