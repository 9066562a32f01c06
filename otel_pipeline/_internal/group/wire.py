"""The group's socket: an abstract-namespace Unix socket, length-prefixed JSON messages.

An abstract socket (Linux) has a name but no file: it disappears with the last process holding
it, so a group leaves nothing behind whatever way it ends (SIGKILL included). Binding the name
is atomic, which makes it the group's election: whoever binds it is the hub. Only processes of
the same user may talk to it (checked on both ends with ``SO_PEERCRED``): the kernel does not
apply file permissions to abstract names.

A message is 4 bytes of big-endian length, then a JSON object whose ``"t"`` says what it is.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import struct
import sys
from typing import Any

__all__ = [
    "MAX_MESSAGE",
    "PROTOCOL",
    "Decoder",
    "abstract_name",
    "available",
    "bind",
    "connect",
    "encode",
    "peer_uid",
    "receive",
    "recv_message",
    "send_fds",
]

#: Bumped when messages change incompatibly; a hub refuses members of another version.
PROTOCOL = 1
#: The largest message accepted (a snapshot of a few thousand series is a few MB).
MAX_MESSAGE = 256 * 1024 * 1024
_LENGTH = struct.Struct(">I")
_CREDENTIALS = struct.Struct("3i")


def available() -> bool:
    """Abstract Unix sockets exist on Linux only; elsewhere every process serves alone."""
    return sys.platform.startswith("linux") and hasattr(socket, "AF_UNIX")


def abstract_name(port: int, uid: int | None = None) -> bytes:
    """The group's socket name for a Prometheus port (one group per user and port on a host)."""
    return f"\0otel-pipeline/{os.getuid() if uid is None else uid}/{port}".encode()


def otlp_name(port: int, service: str, uid: int | None = None) -> bytes:
    """The socket name of a group that only pushes OTLP: per user, service and key (``port``).

    Not the port's name: nothing is served on the port, and another service may use it.
    """
    digest = hashlib.sha256(service.encode()).hexdigest()[:32]
    return abstract_name(port, uid) + f"/otlp/{digest}".encode()


def bind(name: bytes) -> socket.socket | None:
    """A listening socket on ``name``, or None when another process holds it (lost the election)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            return None
        raise
    sock.listen(128)
    return sock


def connect(name: bytes, timeout: float) -> socket.socket | None:
    """A connection to the hub on ``name``, or None when nobody listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(name)
    except (ConnectionRefusedError, FileNotFoundError, TimeoutError, BlockingIOError):
        sock.close()
        return None
    except OSError:
        sock.close()
        raise
    if peer_uid(sock) != os.getuid():
        sock.close()
        return None
    return sock


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end (-1 when the kernel does not say)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    except OSError:
        return -1
    return int(_CREDENTIALS.unpack(raw)[1])


def encode(message: dict[str, Any]) -> bytes:
    """One framed message."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=True).encode()
    return _LENGTH.pack(len(body)) + body


class Decoder:
    """Splits a byte stream into messages; raises ValueError on a malformed or oversized one."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > MAX_MESSAGE:
                raise ValueError(f"group message of {length} bytes is over the limit")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            message = json.loads(bytes(self._buffer[_LENGTH.size : end]))
            del self._buffer[:end]
            if not isinstance(message, dict) or not isinstance(message.get("t"), str):
                raise ValueError("group message without a type")
            messages.append(message)
        return messages


#: The most descriptors one read takes (a hub hands over two: the group's socket and the port's).
MAX_FDS = 4


def receive(sock: socket.socket, fds: list[int]) -> bytes:
    """Read what is there; descriptors passed along (``SCM_RIGHTS``) go to ``fds``."""
    data, received, _, _ = socket.recv_fds(sock, 1 << 20, MAX_FDS)
    fds.extend(received)
    return data


def send_fds(sock: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
    """Send a small message with descriptors attached."""
    data = encode(message)
    sent = socket.send_fds(sock, [data], fds)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_message(
    sock: socket.socket, decoder: Decoder, pending: list[dict[str, Any]], fds: list[int]
) -> dict[str, Any] | None:
    """The next message from a blocking socket (None at end of stream); ``pending`` keeps extras."""
    while not pending:
        data = receive(sock, fds)
        if not data:
            return None
        pending.extend(decoder.feed(data))
    return pending.pop(0)
