"""A real OTLP collector agent, rotel (PyPI ``rotel``, a dev dependency), on free loopback ports.

It receives OTLP over gRPC and HTTP and either drops the data (``blackhole``) or forwards it
over OTLP to ``forward_to`` (for example an in-test :class:`~tests.support.otlp_receiver.OtlpReceiver`),
so a test proves both that a real collector accepts what we send and exactly what arrived.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support import LocalServer, MissingBinaryError, OtlpEndpoints, free_port, port_open

__all__ = ["Rotel", "rotel_binary"]


def rotel_binary() -> str:
    """The ``rotel-agent`` executable shipped inside the ``rotel`` wheel."""
    try:
        import rotel  # only its location matters
    except ImportError:
        raise MissingBinaryError("rotel is not installed: run `make test` (it installs '.[dev]')") from None
    path = Path(rotel.__file__).parent / "rotel-agent"
    if not os.access(path, os.X_OK):
        found = shutil.which("rotel-agent")
        if found is None:
            raise MissingBinaryError(f"{path} is missing or not executable: reinstall with `make test`")
        return found
    return str(path)


class Rotel(LocalServer, OtlpEndpoints):
    """``rotel-agent start`` on loopback; :meth:`stop` ends it by its PID.

    ``forward_to`` is an OTLP endpoint URL and ``forward_protocol`` ``grpc`` or ``http``; without
    ``forward_to`` the data goes to rotel's blackhole exporter.
    """

    name = "rotel"

    def __init__(
        self,
        forward_to: str | None = None,
        *,
        forward_protocol: str = "grpc",
        batch_timeout: str = "100ms",
        ready_timeout: float = 30.0,
    ) -> None:
        if forward_protocol not in ("grpc", "http"):
            raise ValueError(f"forward_protocol={forward_protocol!r}; use 'grpc' or 'http'")
        super().__init__(ready_timeout)
        self.binary = rotel_binary()
        self.forward_to = forward_to
        self.forward_protocol = forward_protocol
        self.batch_timeout = batch_timeout
        self.grpc_port = 0
        self.http_port = 0

    def start(self) -> Rotel:
        self._make_dir()
        self.grpc_port, self.http_port = free_port(), free_port()
        argv = [
            self.binary,
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            "--batch-timeout",
            self.batch_timeout,
        ]
        if self.forward_to is None:
            argv += ["--exporter", "blackhole"]
        else:
            argv += [
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                self.forward_to,
                "--otlp-exporter-protocol",
                self.forward_protocol,
            ]
        # rotel reads ROTEL_* variables too: run it with only what it needs.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTEL_", "OTEL_"))}
        self._launch(argv, self._ready, interval=0.1, env=env)
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        self._process.check_running("rotel-agent")
        return port_open(self.grpc_port) and port_open(self.http_port)

    def log(self) -> str:
        """What rotel has written so far."""
        return "" if self._process is None else self._process.log_tail(200)
