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
from otel_pipeline._internal.group.snapshot import decode, to_wire

__all__ = ["Hub"]

#: How long the hub waits for a member to take an ``inherit`` message at close.
_HANDOVER_TIMEOUT = 5.0
#: How long a closing hub with totals to hand over and no member waits for one to arrive (the
#: replacements of workers recycled together with it, which boot in about a second)...
HEIR_WAIT = 3.0
#: ... and, in a group of sibling processes (gunicorn or uvicorn workers, one parent), for at most
#: this long while a sibling that has not left the group runs: a replacement still booting (slow
#: on a loaded host). On a server's shutdown the siblings are leaving too, and the wait ends.
SIBLING_WAIT = 15.0
#: How long a hub that took over keeps counting a member of the previous hub by the snapshot that
#: hub handed over, waiting for the member to join (it is in the middle of re-joining, or gone).
PROVISIONAL_TIMEOUT = 10.0


def running_siblings() -> set[int]:
    """The other running children of this process's parent (Linux ``/proc``; empty if unknown)."""
    parent = os.getppid()
    if parent <= 1:
        return set()
    try:
        with open(f"/proc/{parent}/task/{parent}/children", encoding="ascii") as listing:
            pids = {int(pid) for pid in listing.read().split()}
    except (OSError, ValueError):
        return set()
    running = set()
    for pid in pids - {os.getpid()}:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):  # exited, not reaped yet
            running.add(pid)
    return running


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
        #: Whether this process has been in a group with processes that are not its own children
        #: (then its totals are worth an heir; a pool's parent has nobody to hand them to).
        self.grouped = grouped
        #: Whether a member was a sibling (same parent): its replacements may still come at close.
        self.siblings = False
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
        #: The previous hub's members not connected here yet, by pid: their latest snapshot there
        #: counts until they join (a scrape meanwhile is not short of them) or time out (folded).
        self._provisional: dict[int, Source] = {}
        self._provisional_until: dict[int, float] = {}
        #: Pids folded from ``_provisional`` after the time-out: never welcomed (they would count twice).
        self._expired: set[int] = set()
        #: Pids whose last totals were folded here: never provisional again.
        self._settled: set[int] = set()
        #: Closing: no new refresh; an heir takes the totals.
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
        """The members' latest snapshots (call with :attr:`lock` held), by pid.

        Members of the previous hub that have not joined yet count by what it handed over.
        """
        found = [peer.source for peer in self._peers.values() if peer.source is not None]
        if self._provisional:
            self._expire(time.monotonic())
            found.extend(self._provisional.values())
        return sorted(found, key=lambda source: source.pid)

    def _expire(self, now: float) -> None:
        for pid, source in list(self._provisional.items()):
            if now >= self._provisional_until[pid]:
                logger.debug("worker group: member %d of the previous hub never joined; folded", pid)
                del self._provisional[pid]
                self._expired.add(pid)
                self.merger.fold(source.metrics)

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
            final = bool(message.get("final"))
            with self._changed:
                source.carry_exemplars(peer.source or self._provisional.get(peer.pid))
                self._provisional.pop(peer.pid, None)
                peer.answered = max(peer.answered, int(message.get("id", 0)))
                if final:
                    # Folded now, and said so: a member whose final totals are not acknowledged
                    # (this hub closed before reading them) brings them to the next hub.
                    peer.leaving = True
                    peer.source = None
                    self._settled.add(peer.pid)
                    self.merger.fold(source.metrics)
                else:
                    peer.source = source
                self._changed.notify_all()
            if final:
                self._send(peer, {"t": "bye"})
        elif kind == "inherit":
            self.inherit(message)
            # Until this arrives the member keeps the totals, for the next hub if this one is closing.
            self._send(peer, {"t": "inherited", "id": message.get("id")})

    def inherit(self, message: dict[str, Any]) -> None:
        """Fold what a previous hub handed over (its departed and its own final totals)."""
        logger.debug(
            "worker group: hub %d folds totals of %s departed members", os.getpid(), message.get("members")
        )
        now = time.monotonic()
        with self._lock:
            self.merger.fold(decode(message.get("departed") or []), 0)
            self.merger.fold(decode(message.get("final") or []), int(message.get("members", 0)))
            skip = {peer.pid for peer in self._peers.values() if peer.source is not None}
            skip |= self._settled | self._expired | {os.getpid()}
            for pid, metrics in message.get("live") or []:
                if int(pid) not in skip:
                    self._provisional[int(pid)] = Source(int(pid), decode(metrics), time.time(), None)
                    self._provisional_until[int(pid)] = now + PROVISIONAL_TIMEOUT

    def _hello(self, peer: _Peer, message: dict[str, Any]) -> None:
        reply: dict[str, Any]
        if int(message.get("pid", 0)) in self._expired:
            reply = {"t": "refuse", "reason": "counted already: joined too late after a change of hub"}
        elif message.get("v") != wire.PROTOCOL:
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
            parent = int(message.get("ppid", 0))
            if parent != os.getpid():
                self.grouped = True
                self.siblings = self.siblings or (parent == os.getppid() and parent > 1)
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
                self._settled.add(peer.pid)
                self.merger.fold(peer.source.metrics)
            self._changed.notify_all()

    # -- the end --------------------------------------------------------------------------

    def _worth_handing_over(self, final: list[Any] | None) -> bool:
        """Whether closing loses totals of the group without an heir (lock held)."""
        return self.grouped and bool(final or self.merger.departed or self._provisional)

    def _heir_may_come(self, now: float, deadline: float) -> bool:
        """Whether to wait on (lock held): before ``deadline``, or while a sibling that has not left runs."""
        if now < deadline:
            return True
        if not self.siblings or now >= deadline - HEIR_WAIT + SIBLING_WAIT:
            return False
        return bool(running_siblings() - self._settled)

    def _has_heir(self) -> bool:
        """Whether a member could take the group's totals (welcomed, not leaving); lock held."""
        return any(peer.welcomed and not peer.leaving for peer in self._peers.values())

    def close(
        self,
        final: list[Any] | None = None,
        port: socket.socket | None = None,
        *,
        pass_listener: bool = False,
    ) -> int | None:
        """Stop; hand the departed and ``final`` (the hub's own last totals) to an heir.

        With ``port`` (the listening socket of /metrics) the heir gets that and the group's socket
        too, and becomes the hub at once; the other members connect to it. ``pass_listener``: the
        group's socket alone, for a group that serves no port (its merged OTLP stream goes on from
        the heir, with no moment where another member could win an election). Returns the heir's pid,
        or None when no member could take it (the totals end with the group; the members elect).
        """
        with self._changed:
            if self._closing:
                return None
            self._closing = True
            self._changed.notify_all()
        deadline = time.monotonic() + HEIR_WAIT
        while True:
            with self._changed:
                # Totals to hand over: a member that arrives meanwhile (welcomed as usual) takes them.
                while (
                    self._worth_handing_over(final)
                    and not self._has_heir()
                    and self._heir_may_come(time.monotonic(), deadline)
                ):
                    self._changed.wait_for(self._has_heir, max(0.05, min(0.5, deadline - time.monotonic())))
                self._stopped = True
            self._wake()
            if self._thread.is_alive() and self._thread is not threading.current_thread():
                self._thread.join(timeout=5)
            # What members sent and the thread did not read yet: an inherit, a last snapshot.
            for peer in list(self._peers.values()):
                while self._read(peer):
                    pass
            with self._lock:
                self._expire(time.monotonic())
                if (
                    self._has_heir()
                    or not self._worth_handing_over(final)
                    or not self._heir_may_come(time.monotonic(), deadline)
                ):
                    break
            # The member that was to be the heir sent its final totals meanwhile: it is leaving
            # too. Wait on (the thread accepting and reading again) for another until the deadline.
            self._stopped = False
            self._thread = threading.Thread(target=self._loop, name="otel-pipeline-group-hub", daemon=True)
            self._thread.start()
        with self._lock:
            peers = sorted(
                (peer for peer in self._peers.values() if peer.welcomed and not peer.leaving),
                key=lambda peer: -(peer.source.time if peer.source else 0.0),
            )
            departed = self.merger.departed_wire()
            members = self.merger.departed_members + 1
            live = {source.pid: source for source in self._provisional.values()}
            live.update((peer.pid, peer.source) for peer in peers if peer.source is not None)
            wired = {pid: to_wire(source.metrics) for pid, source in live.items()}
        heir = None
        worth = bool(final or departed or wired)
        takeover = [self._listener.fileno()] + ([port.fileno()] if port is not None else [])
        for peer in peers:
            if not worth and port is None and not pass_listener:
                break  # nothing to hand over: the members elect the next hub among themselves
            # The other members' latest snapshots count at the heir until they join it.
            message = {
                "t": "inherit",
                "id": uuid.uuid4().hex,
                "departed": departed,
                "final": final or [],
                "members": members,
                "live": [[pid, metrics] for pid, metrics in wired.items() if pid != peer.pid],
            }
            try:
                peer.sock.settimeout(_HANDOVER_TIMEOUT)
                if worth:
                    peer.sock.sendall(wire.encode(message))
                if port is not None or pass_listener:
                    wire.send_fds(peer.sock, {"t": "takeover"}, takeover)
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
