"""A tiny HTTP client for tests: status, headers and body of one request, any status accepted."""

from __future__ import annotations

import http.client
import urllib.parse
from dataclasses import dataclass

__all__ = ["Reply", "request"]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes = b"") -> Reply:
    """Send one request on a fresh connection and read the whole reply."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path or "/", body=body or None, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()
