"""The jobs the RQ tests enqueue (importable by name, as RQ requires); how each ends is in its name."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rq import Retry

__all__ = ["OBSERVER", "boom", "dies", "observed", "ok", "retry_forever", "retry_once", "traced"]


#: Called by observed(), in the process that runs the job (a test sets it).
OBSERVER: Callable[[], Any] | None = None


def observed(x: int) -> int:
    if OBSERVER is not None:
        OBSERVER()
    return x


def ok(x: int) -> int:
    return x


def boom(x: int) -> int:
    raise ValueError(x)


def retry_once(x: int) -> Retry | int:
    """Asks for another attempt the first time, succeeds the second."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None and not job.number_of_retries:
        return Retry(max=1)
    return x


def retry_forever(x: int) -> Retry:
    """Asks for another attempt every time: past Retry's max, RQ fails it."""
    return Retry(max=1)


def dies(x: int) -> int:
    """The work horse ends without a word (as if killed)."""
    os._exit(3)


def traced(x: int) -> int:
    """Makes a span of its own inside the job (the work horse's, in a forking worker)."""
    from opentelemetry import trace

    with trace.get_tracer("jobs").start_as_current_span(f"job code {x}"):
        return x
