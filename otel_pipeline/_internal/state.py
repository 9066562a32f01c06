"""The process-wide state the hooks read: the current pipeline and its generation.

A module of its own, below ``runtime.py`` (which installs pipelines into it), so that the
lower layers (the worker group's exit hand-over) can read the current pipeline without
importing the runtime that builds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_pipeline._internal.runtime import Runtime

__all__ = ["STATE", "current"]


@dataclass
class _State:
    pipeline: Runtime | None = None
    generation: int = 0


STATE = _State()


def current() -> Runtime | None:
    """The pipeline hooks record into, or None."""
    return STATE.pipeline
