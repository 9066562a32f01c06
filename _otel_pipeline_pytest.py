"""otel_pipeline's pytest plugin: the ``otel_capture`` fixture (see ``otel_pipeline.testing``).

The ``pytest11`` entry point loads this module into every pytest run of every project that has
otel_pipeline installed, so it stays light: it lives outside the ``otel_pipeline`` package (whose
import brings in the OpenTelemetry SDK) and imports it only when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from otel_pipeline.testing import Capture

__all__ = ["otel_capture", "pytest_addoption"]

STRICT_INI = "otel_pipeline_strict_internal_errors"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        STRICT_INI,
        "otel_capture: an internal fault of otel_pipeline fails the test instead of being logged",
        type="bool",
        default=False,
    )


@pytest.fixture
def otel_capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    """A fresh in-memory :class:`otel_pipeline.testing.Capture`, current for the duration of the test.

    Parametrize it indirectly with an instrument mode or a dict of options::

        @pytest.mark.parametrize("otel_capture", ["core", "sdk"], indirect=True)
        def test_both_modes(otel_capture): ...

    With the ini option ``otel_pipeline_strict_internal_errors = true`` (or the option
    ``strict_internal_errors=True``), an internal fault of otel_pipeline fails the test.
    """
    from otel_pipeline.testing import Capture

    param = getattr(request, "param", None)
    options: dict[str, Any] = {"instrument_mode": param} if isinstance(param, str) else dict(param or {})
    if request.config.getini(STRICT_INI):
        options.setdefault("strict_internal_errors", True)
    with Capture(**options) as capture:
        yield capture
