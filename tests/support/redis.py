"""A real Redis (Debian package ``redis-server``) on a free loopback port, for one test.

No persistence (``--save ""``, no AOF), its files in a temporary directory; :meth:`stop` ends it
by its PID.

>>> with Redis() as redis:                                               # doctest: +SKIP
...     redis.url  # 'redis://127.0.0.1:<port>/0'
"""

from __future__ import annotations

import socket

from tests.support import LocalServer, free_port, require_binary

__all__ = ["Redis"]


class Redis(LocalServer):
    """``redis-server`` on 127.0.0.1 with no persistence; ready once it answers ``PING``."""

    name = "redis"

    def __init__(self, ready_timeout: float = 20.0) -> None:
        super().__init__(ready_timeout)
        self.binary = require_binary("redis-server")
        self.port = 0

    @property
    def url(self) -> str:
        """The URL of database 0 (``redis://127.0.0.1:<port>/0``)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        directory = self._make_dir()
        self.port = free_port()
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--loglevel",
            "warning",
        ]
        self._launch(argv, self._ready, interval=0.05)
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        self._process.check_running("redis-server")
        return self.command("PING") == b"+PONG"

    def command(self, *words: str) -> bytes:
        """Send one command (inline protocol) and return its first reply line, e.g. ``b"+PONG"``."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.rstrip(b"\r\n")
