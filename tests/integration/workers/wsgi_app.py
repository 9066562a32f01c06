"""A WSGI app behind op.WSGIMiddleware, configured at import (as in each gunicorn worker or the master)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import otel_pipeline as op

op.configure(service_name="web", prometheus_port=int(os.environ["METRICS_PORT"]))


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/breaker":  # the worker that serves this has its breaker open
        op.circuit_breaker("payments").record_state("open")
    else:
        op.events("orders").process("order.created").__enter__().__exit__(None, None, None)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


app = op.WSGIMiddleware(hello, route=lambda environ: str(environ["PATH_INFO"]))
