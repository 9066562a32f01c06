"""The hub: the group member that serves the port, and collects the others' snapshots.

One selector thread owns the group socket and every member connection: it accepts (same user
only), answers ``hello`` (same service and host, same protocol, else refused with the reason),
stores each member's latest ``snap``, folds a member's last snapshot into the departed
accumulator when its connection ends (graceful exit or crash alike), and folds an ``inherit``
(what a previous hub handed over) the same way.

Before a scrape, :meth:`Hub.refresh` asks every member for a fresh snapshot and waits for the
answers, at most ``timeout`` seconds: a stuck member is represented by its last snapshot. The
request is issued by the selector thread after it has read everything already waiting on the
sockets, so a member that connected or exited before the scrape began is counted.

:meth:`Hub.close` ends the hub; given what the group would lose (the departed accumulator and
the hub's own final totals) it hands that over to one member first, the *heir*, which brings it
to the next hub.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
import time
import uuid
from typing import Any

from otel_pipeline._internal.errors import logger
from otel_pipeline._internal.group import wire
from otel_pipeline._internal.group.merge import Merger, Source
from otel_pipeline._internal.group.snapshot import decode

__all__ = ["Hub"]

#: How long the hub waits for a member to take an ``inherit`` message at close.
_HANDOVER_TIMEOUT = 5.0
#: How long a closing hub with totals to hand over and no member waits for one to arrive (the
#: replacements of workers recycled together with it, which boot in about a second).
HEIR_WAIT = 3.0


class _Peer:
    """One member connection."""

    __slots__ = ("answered", "decoder", "leaving", "pid", "sock", "source", "welcomed")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = wire.Decoder()
        self.pid = 0
        self.welcomed = False
        self.source: Source | None = None
        #: The newest refresh request this member answered.
        self.answered = 0
        #: It sent its final snapshot: never the heir.
        self.leaving = False


class _Ticket:
    """One refresh: the members asked (filled in by the selector thread) and when to give up."""

    __slots__ = ("issued", "number", "peers")

    def __init__(self, number: int) -> None:
        self.number = number
        self.peers: list[_Peer] = []
        self.issued = False


class Hub:
    """The serving member's side of the group socket."""

    def __init__(
        self, listener: socket.socket, *, service: str, host: str, limit: int, grouped: bool = False
    ) -> None:
        self.id = uuid.uuid4().hex
        #: Whether this process has been in a group with others (then its totals are worth an heir).
        self.grouped = grouped
        self.service = service
        self.host = host
        self.merger = Merger(limit)
        self._listener = listener
        listener.setblocking(False)
        self._peers: dict[socket.socket, _Peer] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests = 0
        self._pending: list[_Ticket] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        #: Closing: members leaving are not folded any more (the heir takes the totals).
        self._closing = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="otel-pipeline-group-hub", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- what the merge reads -------------------------------------------------------------

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def sources(self) -> list[Source]:
        """The members' latest snapshots (call with :attr:`lock` held), by pid."""
        found = [peer.source for peer in self._peers.values() if peer.source is not None]
        return sorted(found, key=lambda source: source.pid)

    def members(self) -> list[int]:
        """The pids of the members connected now (the hub's own excluded)."""
        with self._lock:
            return sorted(peer.pid for peer in self._peers.values() if peer.welcomed)

    def ask(self) -> _Ticket | None:
        """Ask every member for a fresh snapshot (answers awaited with :meth:`wait`)."""
        with self._lock:
            if self._closing:
                return None
            self._requests += 1
            ticket = _Ticket(self._requests)
            self._pending.append(ticket)
        self._wake()
        return ticket

    def wait(self, ticket: _Ticket | None, timeout: float) -> bool:
        """Wait for the answers to ``ticket``; True when every member asked answered in time."""
        if ticket is None:
            return False
        with self._changed:
            return self._changed.wait_for(
                lambda: (
                    ticket.issued
                    and all(
                        peer.answered >= ticket.number or peer.sock not in self._peers
                        for peer in ticket.peers
                    )
                ),
                timeout,
            )

    # -- the selector thread --------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _loop(self) -> None:
        try:
            while not self._stopped:
                self._handle(self._selector.select())
                if self._pending:
                    # Everything already waiting first: connections, hellos, last snapshots.
                    for _ in range(1000):
                        events = [e for e in self._selector.select(0) if e[0].fileobj is not self._wake_r]
                        if not events:
                            break
                        self._handle(events)
                    self._issue()
        except Exception:  # the hub must not die silently: scrapes would hang on it
            logger.exception("the worker group's hub thread failed; members are no longer merged")

    def _handle(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _ in events:
            if key.fileobj is self._listener:
                self._accept()
            elif key.fileobj is self._wake_r:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            else:
                self._read(key.data)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                logger.debug("accepting a group member failed", exc_info=True)
                return
            if wire.peer_uid(sock) != os.getuid():
                sock.close()  # another user's process: never a member
                continue
            sock.setblocking(False)
            peer = _Peer(sock)
            with self._lock:
                self._peers[sock] = peer
            self._selector.register(sock, selectors.EVENT_READ, peer)

    def _read(self, peer: _Peer) -> bool:
        """Read what ``peer`` sent; True when something was read (more may be waiting)."""
        if peer.sock not in self._peers:
            return False
        try:
            data = peer.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._gone(peer)
            return False
        try:
            for message in peer.decoder.feed(data):
                if peer.sock not in self._peers:
                    return False
                self._message(peer, message)
        except Exception:
            logger.warning(
                "a group member (pid %d) sent a message the hub cannot read; it is dropped", peer.pid
            )
            logger.debug("bad group message", exc_info=True)
            self._gone(peer)
            return False
        return True

    def _message(self, peer: _Peer, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "hello":
            self._hello(peer, message)
        elif not peer.welcomed:
            raise ValueError(f"{kind!r} before hello")
        elif kind == "snap":
            source = Source(peer.pid, decode(message["metrics"]), time.time(), message.get("health"))
            with self._changed:
                source.carry_exemplars(peer.source)
                peer.source = source
                peer.answered = max(peer.answered, int(message.get("id", 0)))
                peer.leaving = peer.leaving or bool(message.get("final"))
                self._changed.notify_all()
        elif kind == "inherit":
            self.inherit(message)
            # Until this arrives the member keeps the totals, for the next hub if this one is closing.
            self._send(peer, {"t": "inherited", "id": message.get("id")})

    def inherit(self, message: dict[str, Any]) -> None:
        """Fold what a previous hub handed over (its departed and its own final totals)."""
        logger.debug(
            "worker group: hub %d folds totals of %s departed members", os.getpid(), message.get("members")
        )
        with self._lock:
            self.merger.fold(decode(message.get("departed") or []), 0)
            self.merger.fold(decode(message.get("final") or []), int(message.get("members", 0)))

    def _hello(self, peer: _Peer, message: dict[str, Any]) -> None:
        reply: dict[str, Any]
        if message.get("v") != wire.PROTOCOL:
            reply = {
                "t": "refuse",
                "reason": f"protocol {message.get('v')!r}, the hub speaks {wire.PROTOCOL}",
            }
        elif message.get("service") != self.service or message.get("host") != self.host:
            reply = {
                "t": "refuse",
                "reason": f"the port is served by the worker group of service {self.service!r} on host "
                f"{self.host!r}, not {message.get('service')!r} on {message.get('host')!r}",
            }
        else:
            reply = {"t": "welcome", "hub": self.id, "pid": os.getpid()}
        if reply["t"] == "welcome":
            peer.pid = int(message.get("pid", 0))
            peer.welcomed = True
            self.grouped = True
            # Not read by a member that already said all and left: what it sent still counts.
            self._send(peer, reply)
            with self._changed:
                self._changed.notify_all()  # a closing hub may be waiting for an heir
        else:
            self._send(peer, reply)
            self._gone(peer, fold=False)

    def _send(self, peer: _Peer, message: dict[str, Any]) -> bool:
        """Send a small message without blocking; False (and the peer dropped) if it does not fit."""
        data = wire.encode(message)
        try:
            sent = peer.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False  # the member is gone: its end of stream, still to be read, says so
        if sent != len(data):
            logger.warning("a group member (pid %d) does not read its socket; it is dropped", peer.pid)
            self._gone(peer)
            return False
        return True

    def _issue(self) -> None:
        with self._lock:
            tickets, self._pending = self._pending, []
            peers = [peer for peer in self._peers.values() if peer.welcomed]
        number = max(ticket.number for ticket in tickets)
        for peer in peers:
            self._send(peer, {"t": "collect", "id": number})
        with self._changed:
            for ticket in tickets:
                ticket.peers = peers
                ticket.issued = True
            self._changed.notify_all()

    def _gone(self, peer: _Peer, *, fold: bool = True) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(peer.sock)
        peer.sock.close()
        with self._changed:
            if self._peers.pop(peer.sock, None) is None:
                return
            if fold and peer.source is not None:
                self.merger.fold(peer.source.metrics)
            self._changed.notify_all()

    # -- the end --------------------------------------------------------------------------

    def close(self, final: list[Any] | None = None, port: socket.socket | None = None) -> int | None:
        """Stop; hand the departed and ``final`` (the hub's own last totals) to an heir.

        With ``port`` (the listening socket of /metrics) the heir gets that and the group's socket
        too, and becomes the hub at once; the other members connect to it. Returns the heir's pid,
        or None when no member could take it (the totals end with the group; the members elect).
        """
        with self._changed:
            if self._closing:
                return None
            self._closing = True
            self._changed.notify_all()
            if (final and self.grouped) or self.merger.departed:
                # Totals to hand over: a member that arrives meanwhile (welcomed as usual) takes them.
                self._changed.wait_for(lambda: any(peer.welcomed for peer in self._peers.values()), HEIR_WAIT)
            self._stopped = True
        self._wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        # What members sent and the thread did not read yet: an inherit, a last snapshot.
        for peer in list(self._peers.values()):
            while self._read(peer):
                pass
        with self._lock:
            peers = sorted(
                (peer for peer in self._peers.values() if peer.welcomed and not peer.leaving),
                key=lambda peer: -(peer.source.time if peer.source else 0.0),
            )
            message = {
                "t": "inherit",
                "id": uuid.uuid4().hex,
                "departed": self.merger.departed_wire(),
                "final": final or [],
                "members": self.merger.departed_members + 1,
            }
        heir = None
        data = wire.encode(message) if final or self.merger.departed else b""
        for peer in peers:
            if not data and port is None:
                break  # nothing to hand over: the members elect the next hub among themselves
            try:
                peer.sock.settimeout(_HANDOVER_TIMEOUT)
                peer.sock.sendall(data)
                if port is not None:
                    wire.send_fds(peer.sock, {"t": "takeover"}, [self._listener.fileno(), port.fileno()])
            except OSError:
                continue
            heir = peer.pid
            break
        logger.debug("worker group: hub %d closed; the group's totals went to %s", os.getpid(), heir)
        for peer in list(self._peers.values()):
            peer.sock.close()
        self._peers.clear()
        for resource in (self._listener, self._wake_r, self._wake_w, self._selector):
            resource.close()
        return heir

    def abandon(self) -> None:
        """In a forked child: close the inherited sockets (the parent's), say nothing on them."""
        self._closing = self._stopped = True
        for sock in list(self._peers):
            sock.close()
        for resource in (self._listener, self._wake_r, self._wake_w):
            resource.close()
        with contextlib.suppress(Exception):
            self._selector.close()
