"""A bare ASGI app behind op.ASGIMiddleware, configured at import (each uvicorn worker)."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

import otel_pipeline as op

op.configure(service_name="web", prometheus_port=int(os.environ["METRICS_PORT"]))


async def hello(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    with op.events("orders").process("order.created"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


app = op.ASGIMiddleware(hello, route=lambda scope: "/hello")
