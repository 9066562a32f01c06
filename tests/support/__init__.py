"""Test support: real servers (Prometheus, rotel) and an in-test OTLP receiver, started on loopback.

Every server here binds 127.0.0.1 on a free port, keeps its files in a temporary directory and
is stopped by its PID; none is ever left behind. A missing binary is a failure naming the cure
(``bash scripts/system-deps.sh`` or ``make test``), never a skip.
"""

from __future__ import annotations

import abc
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, TypeVar

__all__ = [
    "LocalServer",
    "ManagedProcess",
    "MissingBinaryError",
    "OtlpEndpoints",
    "free_port",
    "port_open",
    "require_binary",
    "wait_until",
]

T = TypeVar("T")
S = TypeVar("S", bound="LocalServer")


class MissingBinaryError(RuntimeError):
    """A server binary the tests need is not installed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, *, hint: str = "run `bash scripts/system-deps.sh` (or `make test`)") -> str:
    """The path of the executable ``name``; :class:`MissingBinaryError` saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MissingBinaryError(f"{name!r} is not installed: {hint}")
    return path


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something other than None/False; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
        except Exception as error:  # probes talk to servers that may not be up yet
            last_error = error
            result = None
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}{detail}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if the test process dies without stopping it (Linux)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class ManagedProcess:
    """A server process with its output in ``log_path``; :meth:`stop` ends it by its PID."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self, what: str) -> None:
        """Raise RuntimeError with the log's tail if the process has exited."""
        if not self.running():
            raise RuntimeError(
                f"{what} exited with code {self.process.returncode}: {' '.join(self.argv)}\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


class LocalServer(abc.ABC):
    """A server binary run on loopback from a temporary directory, stopped by its PID.

    Subclasses build the command line in :meth:`start` and call :meth:`_launch`.
    """

    #: Names the temporary directory, the log file and the messages.
    name: ClassVar[str]

    def __init__(self, ready_timeout: float) -> None:
        self.ready_timeout = ready_timeout
        self._dir: Path | None = None
        self._process: ManagedProcess | None = None

    @abc.abstractmethod
    def start(self: S) -> S:
        """Start the server and wait until it is ready."""

    def _make_dir(self) -> Path:
        self._dir = Path(tempfile.mkdtemp(prefix=f"otel-pipeline-{self.name}-"))
        return self._dir

    def _launch(
        self, argv: list[str], ready: Callable[[], bool], interval: float, env: dict[str, str] | None = None
    ) -> None:
        """Run ``argv`` and wait for ``ready()``; RuntimeError with the server's log if it never is."""
        directory = self._dir or self._make_dir()
        self._process = ManagedProcess(argv, directory / f"{self.name}.log", env=env)
        try:
            wait_until(ready, timeout=self.ready_timeout, interval=interval, what=f"{self.name} to be ready")
        except Exception:
            log = self._process.log_tail()
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready:\n{log}") from None

    def stop(self) -> None:
        """Stop by PID and remove the temporary directory; idempotent."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class OtlpEndpoints:
    """The endpoints of something listening for OTLP on loopback (``grpc_port``, ``http_port``)."""

    grpc_port = 0
    http_port = 0

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The base URL; the exporters append ``/v1/metrics`` and ``/v1/traces``."""
        return f"http://127.0.0.1:{self.http_port}"

    def endpoint(self, protocol: str) -> str:
        """Where to send for an ``otlp_protocol`` value (``grpc`` or ``http/protobuf``)."""
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint
