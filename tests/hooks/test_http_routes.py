"""http.route from the framework: the template as users write it, converters left out (Starlette, FastAPI)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import otel_pipeline as op
from otel_pipeline.testing import Capture


async def order(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"order {request.path_params['id'] + 1}")


async def file(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.path_params["name"])


async def ping(request: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


def routes_of(capture: Capture) -> dict[tuple[str | None, int], int]:
    found: dict[tuple[str | None, int], int] = {}
    for point in capture.points("http.server.request.duration"):
        key = (point.attributes.get("http.route"), point.attributes["http.response.status_code"])
        found[key] = found.get(key, 0) + point.count
    return found


async def get(app: Any, *paths: str) -> list[int]:
    transport = httpx.ASGITransport(app=op.ASGIMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        return [(await client.get(path)).status_code for path in paths]


async def test_starlette_converters_are_left_out_of_the_route(capture: Capture) -> None:
    app = Starlette(
        routes=[
            Route("/orders/{id:int}", order),
            Route("/files/{name:path}", file),
            Route("/ping", ping),
        ]
    )
    statuses = await get(app, "/orders/41", "/orders/7", "/files/a/b.txt", "/ping", "/nowhere")
    assert statuses == [200, 200, 200, 200, 404]
    assert routes_of(capture) == {
        ("/orders/{id}", 200): 2,
        ("/files/{name}", 200): 1,
        ("/ping", 200): 1,
        (None, 404): 1,  # no route matched: none recorded
    }
    assert sorted(span.name for span in capture.spans()) == [
        "GET",
        "GET /files/{name}",
        "GET /orders/{id}",
        "GET /orders/{id}",
        "GET /ping",
    ]


async def test_a_route_left_as_a_string_loses_its_converters_too(capture: Capture) -> None:
    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Any],
        send: Callable[[MutableMapping[str, Any]], Any],
    ) -> None:
        scope["route"] = "/users/{user_id:uuid}/orders/{n:int}"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    assert await get(app, "/users/x/orders/1") == [204]
    assert routes_of(capture) == {("/users/{user_id}/orders/{n}", 204): 1}


@pytest.mark.parametrize("resolved", ["/orders/{id:int}", "/orders/<int:id>"])
async def test_a_resolver_s_route_is_used_as_given(capture: Capture, resolved: str) -> None:
    """A route=... resolver says what the template is; otel_pipeline does not rewrite it."""
    starlette = Starlette(routes=[Route("/orders/{id:int}", order)])
    app = op.ASGIMiddleware(starlette, route=lambda scope: resolved)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        assert (await client.get("/orders/1")).status_code == 200
    assert routes_of(capture) == {(resolved, 200): 1}


async def test_a_mounted_app_s_route_is_the_inner_template(capture: Capture) -> None:
    """Starlette leaves the innermost route in scope["route"]: its template, relative to the mount."""
    app = Starlette(routes=[Mount("/api", routes=[Route("/orders/{id:int}", order)])])
    assert await get(app, "/api/orders/2") == [200]
    assert routes_of(capture) == {("/orders/{id}", 200): 1}
