"""One process's place in its worker group: hub (serves the port) or member (hands over to the hub).

:meth:`Group.elect` is run by ``configure()``: whoever binds the group's socket name is the hub
and binds the Prometheus port; a process that finds the name taken says ``hello`` to the hub
and, welcomed (same service, same host), becomes a member and serves nothing itself. A forked
child of a group process joins as a member at once (:meth:`Group.join_forked`).

A member's thread hands over a snapshot every ``interval`` seconds (the most a SIGKILL can
lose), whenever the hub asks (before a scrape), and a final one at exit or shutdown. When the
hub's connection ends the member elects again: one member becomes the hub (it retries the port
for a few seconds while the old hub lets it go), the others join it. A member never joins a hub
it was dropped by (its totals were folded there already: joining again would count them twice).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import MetricReader, MetricsData

from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.group import wire
from otel_pipeline._internal.group.export import GroupExporter
from otel_pipeline._internal.group.hub import Hub
from otel_pipeline._internal.group.merge import Source, to_metrics_data
from otel_pipeline._internal.group.snapshot import decode, encode

if TYPE_CHECKING:
    from otel_pipeline._internal.runtime import Runtime

__all__ = ["INTERVAL", "Group"]

#: Seconds between a member's periodic hand-overs: the most a SIGKILLed member loses.
INTERVAL = 1.0
#: How long a scrape waits for the members' fresh snapshots before using their last ones.
REFRESH_TIMEOUT = 0.5
#: How long an election keeps trying (the old hub releasing the port, a hub starting up).
ELECTION_TIMEOUT = 5.0
#: How long a joining process waits for the hub's answer to its hello.
HELLO_TIMEOUT = 5.0
#: How long a leaving member tries to get its final totals acknowledged (by its hub, or the next).
FINAL_TIMEOUT = 5.0


class Group:
    """The group side of one pipeline: its role, the hub or the member connection."""

    def __init__(self, pipeline: Runtime, reader: Any) -> None:
        config = pipeline.config
        self.pipeline = pipeline
        #: The pipeline's Prometheus reader: what /metrics serves, and what a member hands over.
        self.reader = reader
        #: Whether the hub serves /metrics; a group that only pushes OTLP serves nothing.
        self.serves = config.exports("prometheus")
        self.name = (
            wire.abstract_name(config.prometheus_port)
            if self.serves
            else wire.otlp_name(config.prometheus_port, config.service_name)
        )
        self.role = "idle"  # "hub" | "member" | "alone" | "closed"
        self.hub: Hub | None = None
        self.interval = INTERVAL
        self.refresh_timeout = REFRESH_TIMEOUT
        self._sock: socket.socket | None = None
        self._decoder = wire.Decoder()
        #: Messages decoded but not handled yet (a hub may ask right after its welcome).
        self._pending: list[dict[str, Any]] = []
        #: Descriptors the hub passed on this connection: its sockets, when it makes this member the hub.
        self._fds: list[int] = []
        self._hub_id: str | None = None
        #: Hubs this member has been in: never joined again (see the module docstring).
        self._hubs: set[str] = set()
        #: What a closing hub handed to this member, for the next hub.
        #: What closing hubs handed to this member, by id, until a hub confirms it has folded them.
        self._inheritance: dict[str, dict[str, Any]] = {}
        self._send_lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._own_previous: dict[str, Source] = {}
        #: The hub closed with nobody to hand the group to: its last export is the group's totals.
        self.ended = False
        _wrap(reader, self)
        for _, exporter in pipeline.export_state.exporters:
            if isinstance(exporter, GroupExporter):
                exporter.attach(self, pipeline.resource)  # the merged OTLP stream (group_export="merged")

    # -- election ---------------------------------------------------------------------------

    def elect(self, timeout: float = ELECTION_TIMEOUT) -> None:
        """Become the hub or a member; raise today's clear OSError when the port is not ours."""
        deadline = time.monotonic() + timeout
        while True:
            outcome = self._try_once(wait_for_port=False)
            if outcome is None:
                return
            if time.monotonic() >= deadline:
                raise OSError(self._cannot_serve(outcome))
            time.sleep(0.05)

    def _try_once(self, *, wait_for_port: bool) -> str | None:
        """One round: None when a role was taken, else why not (worth retrying)."""
        listener = wire.bind(self.name)
        if listener is not None:
            try:
                self._become_hub(listener, wait_for_port)
            except OSError:
                listener.close()
                raise
            return None
        joined, reply = self._handshake(HELLO_TIMEOUT)
        if joined is not None:
            self._joined(*joined)
            return None
        if reply is not None and reply["t"] == "refuse":
            raise OSError(self._cannot_serve(str(reply.get("reason"))))
        return "the worker group's socket does not answer"

    def _handshake(
        self, timeout: float
    ) -> tuple[
        tuple[socket.socket, wire.Decoder, str, list[dict[str, Any]], list[int]] | None, dict[str, Any] | None
    ]:
        """Connect and say hello; returns (joined, the hub's reply).

        ``joined`` is (socket, decoder, hub id, messages after the welcome, descriptors passed) when
        welcomed by a hub this member was never in; else None, and the socket is closed.
        """
        sock = wire.connect(self.name, timeout)
        if sock is None:
            return None, None
        reply: dict[str, Any] | None = None
        try:
            sock.sendall(wire.encode(self._hello()))
            pending: list[dict[str, Any]] = []
            fds: list[int] = []
            decoder = wire.Decoder()
            reply = wire.recv_message(sock, decoder, pending, fds)
            if reply is not None and reply["t"] == "welcome" and str(reply["hub"]) not in self._hubs:
                return (sock, decoder, str(reply["hub"]), pending, fds), reply
            _close_fds(fds)
        except (OSError, ValueError):
            logger.debug("worker group: hello not answered", exc_info=True)
        sock.close()
        return None, reply

    def _cannot_serve(self, why: str) -> str:
        config = self.pipeline.config
        return (
            f"otel_pipeline: cannot serve /metrics on {config.prometheus_host}:{config.prometheus_port} "
            f"({why}); choose another prometheus_port (0 picks a free one), or worker_group=False"
        )

    def _hello(self) -> dict[str, Any]:
        config = self.pipeline.config
        return {
            "t": "hello",
            "v": wire.PROTOCOL,
            "service": config.service_name,
            "host": config.prometheus_host,
            "pid": os.getpid(),
            "ppid": os.getppid(),
        }

    def _become_hub(
        self, listener: socket.socket, wait_for_port: bool, port: socket.socket | None = None
    ) -> None:
        """Serve the port (``port``: its listening socket, handed over by the previous hub).

        The hub is in place, with what it inherited, before the first request is served: a scrape
        never sees the group without the totals handed over (a counter would go down, a "reset").
        """
        config = self.pipeline.config
        was_member = self.role == "member"
        hub = Hub(
            listener,
            service=config.service_name,
            host=config.prometheus_host,
            limit=config.cardinality_limit,
            grouped=was_member,  # taking over: the group lives on in other processes
        )
        for inheritance in self._inheritance.values():
            hub.inherit(inheritance)
        self.hub = hub
        self.role = "hub"
        hub.start()
        deadline = time.monotonic() + (ELECTION_TIMEOUT if wait_for_port else 0.0)
        while self.serves:
            try:
                server = _start_server(self.pipeline, self.reader, port)
                break
            except OSError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)  # the previous hub is still letting the port go
                    continue
                self.hub, self.role = None, "member" if was_member else "idle"
                hub.close()  # members that came meanwhile elect again; the inheritance stays here
                raise
        self._inheritance = {}
        if self.serves:
            self.pipeline.server = server
        _register_exit()
        logger.debug("worker group: pid %d is the hub of %r", os.getpid(), self.name)

    def _joined(
        self,
        sock: socket.socket,
        decoder: wire.Decoder,
        hub_id: str | None,
        pending: list[dict[str, Any]] | None = None,
        fds: list[int] | None = None,
    ) -> None:
        self._sock = sock
        self._decoder = decoder
        self._pending = pending or []
        self._fds = fds or []
        self._hub_id = hub_id
        if hub_id is not None:
            self._hubs.add(hub_id)
        self.role = "member"
        self._send_inheritance(sock)
        _register_exit()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="otel-pipeline-group-member", daemon=True)
            self._thread.start()

    def _send_inheritance(self, sock: socket.socket) -> None:
        """Bring the totals held for the next hub to this one (kept until it confirms)."""
        for inheritance in list(self._inheritance.values()):
            with contextlib.suppress(OSError):
                sock.sendall(wire.encode(inheritance))

    def join_forked(self) -> None:
        """In a forked child of a group process: join the group (the hub is our parent's)."""
        sock = wire.connect(self.name, 1.0)
        if sock is not None:
            try:
                sock.sendall(wire.encode(self._hello()))  # answered by the hub; read by the thread
            except OSError:
                sock.close()
                sock = None
        if sock is None:
            self.role = "member"  # no hub right now: the thread elects
            self._thread = threading.Thread(target=self._run, name="otel-pipeline-group-member", daemon=True)
            self._thread.start()
            return
        self._joined(sock, wire.Decoder(), None)

    # -- the member's thread ------------------------------------------------------------------

    def _run(self) -> None:
        next_due = time.monotonic() + self.interval
        while not self._stopping:
            pending = self._pending
            sock = self._sock
            if sock is None:
                if not self._reelect():
                    return
                continue
            try:
                ready, _, _ = select.select(
                    [sock, self._wake_r], [], [], max(0.0, next_due - time.monotonic())
                )
                asked = 0
                ended = False
                if sock in ready:
                    data = wire.receive(sock, self._fds)
                    ended = not data
                    pending.extend(self._decoder.feed(data))
                while pending:  # before an end of stream: the hub's last words (an inherit) count
                    message = pending.pop(0)
                    if message["t"] == "takeover" and self._take_over(sock):
                        return  # the hub now, on the sockets the previous hub handed over
                    asked = max(asked, self._message(message))
                if ended:
                    raise ConnectionResetError("the hub closed the connection")
                if self._wake_r in ready:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                if self._stopping:
                    return
                if asked or time.monotonic() >= next_due:
                    self._hand_over(asked)
                    next_due = time.monotonic() + self.interval
            except (OSError, ValueError):
                if self._stopping:
                    return
                with self._send_lock:
                    self._sock = None
                sock.close()
                pending.clear()
                _close_fds(self._fds)
        return

    def _take_over(self, sock: socket.socket) -> bool:
        """The closing hub made this member its heir: serve on the sockets it passed along.

        The group's socket and the port never close in between: no other process can become the
        hub meanwhile, and a scrape waits in the port's backlog rather than being refused.
        """
        fds, self._fds = self._fds, []
        if len(fds) < self._takeover_fds:
            _close_fds(fds)
            return False
        # Even while this process is leaving: it then hands the group on in turn (close() sees
        # the role), rather than take the group's totals down with it.
        listener = socket.socket(fileno=fds[0])
        port = socket.socket(fileno=fds[1]) if self.serves else None
        _close_fds(fds[self._takeover_fds :])
        with self._send_lock:
            self._sock = None
        sock.close()
        try:
            self._become_hub(listener, wait_for_port=False, port=port)
        except OSError:
            logger.warning("worker group: taking over the port failed", exc_info=True)
            listener.close()
            if port is not None:
                port.close()
            self.role = "alone"
        return True

    @property
    def _takeover_fds(self) -> int:
        """Descriptors a closing hub passes to its heir: the group's socket, and the port's if served."""
        return 2 if self.serves else 1

    def _message(self, message: dict[str, Any]) -> int:
        """Handle one message from the hub; returns the refresh it asks for (0: none)."""
        kind = message["t"]
        if kind == "collect":
            return int(message.get("id", 0))
        if kind == "welcome":
            self._hub_id = str(message["hub"])
            self._hubs.add(self._hub_id)
        elif kind == "inherit":
            logger.debug("worker group: pid %d holds the group's totals for the next hub", os.getpid())
            self._inheritance[str(message.get("id"))] = message
        elif kind == "inherited":
            self._inheritance.pop(str(message.get("id")), None)
        elif kind in ("refuse", "retry"):
            raise ConnectionResetError(f"the hub answered {kind}")
        return 0

    def _hand_over(self, asked: int, final: bool = False) -> None:
        message = {"t": "snap", "id": asked, "metrics": encode(self._own()), "health": self._health()}
        if final:
            message["final"] = True
        data = wire.encode(message)
        with self._send_lock:
            if self._sock is None or (self._stopping and not final):
                return
            self._sock.settimeout(5.0)
            self._sock.sendall(data)

    def _own(self) -> MetricsData | None:
        collect = getattr(self.reader, "collect_now", None)
        return collect() if collect is not None else None

    def _health(self) -> dict[str, Any] | None:
        try:
            from otel_pipeline._internal.routes import health_report

            return dict(health_report(self.pipeline)[1]["components"])
        except Exception:
            logger.debug("health report for the group failed", exc_info=True)
            return None

    def _reelect(self) -> bool:
        """The hub went away: become the hub or join the next one; False when alone from now on."""
        deadline = time.monotonic() + 2 * ELECTION_TIMEOUT
        while not self._stopping:
            try:
                listener = wire.bind(self.name)
                if listener is not None and self._stopping:
                    listener.close()
                    return False
                if listener is not None:
                    try:
                        self._become_hub(listener, wait_for_port=True)
                    except OSError as error:
                        listener.close()
                        warn_once("group-takeover", "worker group: could not take over the port: %s", error)
                        self.role = "alone"
                        return False
                    return False  # the hub now: this thread's work is done
                joined, reply = self._handshake(HELLO_TIMEOUT)
                if joined is not None:
                    with self._send_lock:
                        self._joined(*joined)
                    return True
                if reply is not None and reply["t"] == "welcome":  # the hub that dropped this member
                    warn_once(
                        "group-dropped",
                        "worker group: this member (pid %d) was dropped by its hub; its metrics "
                        "are no longer merged",
                        os.getpid(),
                    )
                    self.role = "alone"
                    return False
            except (OSError, ValueError):
                logger.debug("worker group: election round failed", exc_info=True)
            if time.monotonic() >= deadline:
                warn_once("group-lost", "worker group: no hub found; this process's metrics are not served")
                self.role = "alone"
                return False
            time.sleep(0.05)
        return False

    # -- the hub's merge ------------------------------------------------------------------------

    def merged(self, own: MetricsData | None, carry: str, refresh: bool = True) -> MetricsData | None:
        """The group's data, ``own`` (this process's collection) merged with the members'."""
        hub = self.hub
        if self.role != "hub" or hub is None:
            return own
        if refresh:
            hub.wait(hub.ask(), self.refresh_timeout)
        return self._merge(hub, own, carry)

    def _merge(self, hub: Hub, own: MetricsData | None, carry: str) -> MetricsData:
        source = Source(os.getpid(), decode(encode(own)), time.time(), None)
        resource = (
            own.resource_metrics[0].resource if own and own.resource_metrics else self.pipeline.resource
        )
        with hub.lock:
            source.carry_exemplars(self._own_previous.get(carry))
            self._own_previous[carry] = source
            merged = hub.merger.merge([source, *hub.sources()])
        assert resource is not None
        return to_metrics_data(merged, resource, time_ns())

    def export_data(self, own: MetricsData) -> MetricsData | None:
        """What the group's OTLP stream pushes from this process now (``own``: its collection).

        The merged totals on the hub, and once more from a hub whose close ended the group; None
        (nothing) on a member and on a hub that handed the group over; ``own`` outside a group.
        """
        hub = self.hub
        role = self.role
        if role == "member" or (role == "closed" and not (self.ended and hub is not None)):
            return None
        if hub is None or role not in ("hub", "closed"):
            return own  # not in a group (yet, or any more): this process's own stream
        try:
            if role == "hub":
                hub.wait(hub.ask(), self.refresh_timeout)
            return self._merge(hub, own, "otlp")
        except Exception:  # pushing fewer than the group's totals would look like a counter reset
            logger.exception("worker group: merging the members' metrics for OTLP failed")
            return None

    def health(self, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """/health of the group: each component's worst status over the members, with their pids."""
        hub = self.hub
        if self.role != "hub" or hub is None:
            return status, body
        hub.wait(hub.ask(), self.refresh_timeout)
        from otel_pipeline._internal.routes import health_score

        with hub.lock:
            reports = [(os.getpid(), body["components"])] + [
                (source.pid, source.health) for source in hub.sources() if source.health
            ]
            departed = hub.merger.departed_members
        return merge_health(body, reports, departed, health_score)

    # -- the end ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Final hand-over (a member) or hand-over of the group's totals to an heir (the hub)."""
        with self._send_lock:
            if self.role == "closed" or self._stopping:
                return
            self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=ELECTION_TIMEOUT + 1)  # it may be taking over right now
        if self.role == "member":
            self._final_hand_over()  # made the heir meanwhile: the hub for a moment, to hand over in turn
        if self.role == "hub" and self.hub is not None:
            # Still the hub until the server has stopped: a scrape served meanwhile is the group's.
            self._close_hub(self.hub)
        self.role = "closed"
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def _close_hub(self, hub: Hub) -> None:
        server = self.pipeline.server
        port = server.listening_socket() if server is not None else None
        if server is not None:
            server.stop()  # connections wait in the port's backlog for the heir
        self.role = "closed"  # from now on the reader collects this process's own points only
        try:
            heir = hub.close(encode(self._own()), port, pass_listener=not self.serves)
            self.ended = heir is None
        finally:
            if port is not None:
                port.close()  # the heir has its own descriptor of it now

    def _final_hand_over(self) -> bool:
        """Send the last totals until a hub acknowledges them; True when this became the hub.

        The hub answers a final snapshot with ``bye`` once it is folded. A hub that closes at the
        same moment may not read it: without a ``bye`` the totals go to the next hub. It may
        also have chosen this member as its heir before it read them: the inheritance and the
        sockets are then on their way here, and this process hands the group on in turn.
        """
        deadline = time.monotonic() + FINAL_TIMEOUT
        try:
            while True:
                outcome = self._final_once()
                if outcome is not None:
                    return outcome
                if time.monotonic() >= deadline or not self._try_join_only(deadline):
                    logger.debug("worker group: pid %d leaves before a hub took its totals", os.getpid())
                    return False  # between hubs and none came in time: these last totals are lost
        finally:
            _close_fds(self._fds)

    def _final_once(self) -> bool | None:
        """One attempt: True (made the hub), False (acknowledged), None (not taken: try the next hub)."""
        if self._sock is None:
            return None
        try:
            self._hand_over(0, final=True)
        except OSError:  # the hub has closed: its last words to us may still be there to read
            logger.debug("worker group: the final hand-over found the hub gone", exc_info=True)
        with self._send_lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return None
        acknowledged = takeover = False
        try:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            sock.settimeout(2.0)
            pending, self._pending = self._pending, []
            while True:
                while pending:
                    message = pending.pop(0)
                    kind = message["t"]
                    takeover = takeover or kind == "takeover"
                    acknowledged = acknowledged or kind == "bye"
                    if kind in ("inherit", "inherited"):
                        self._message(message)
                try:
                    data = wire.receive(sock, self._fds)
                except OSError:  # reset: the hub closed with our final unread (it chose us first)
                    data = b""
                if not data:
                    break
                pending.extend(self._decoder.feed(data))
        except ValueError:
            logger.debug("worker group: the hub's last words cannot be read", exc_info=True)
        finally:
            sock.close()
        if takeover and len(self._fds) >= self._takeover_fds:
            fds, self._fds = self._fds, []
            self.role = "member"
            try:
                self._become_hub(
                    socket.socket(fileno=fds[0]),
                    wait_for_port=False,
                    port=socket.socket(fileno=fds[1]) if self.serves else None,
                )
            except OSError:
                logger.debug("worker group: taking over at exit failed", exc_info=True)
                return False
            finally:
                _close_fds(fds[self._takeover_fds :])
            return True
        _close_fds(self._fds)
        return False if acknowledged else None

    def _try_join_only(self, deadline: float) -> bool:
        """Join a hub this member was never in, with the inheritance it holds; False by ``deadline``."""
        while time.monotonic() < deadline:
            joined, _ = self._handshake(min(2.0, max(0.1, deadline - time.monotonic())))
            if joined is not None:
                sock, self._decoder, hub_id, self._pending, fds = joined
                self._fds.extend(fds)
                self._hubs.add(hub_id)
                self._sock = sock
                self._send_inheritance(sock)
                return True
            time.sleep(0.05)
        return False

    def abandon(self) -> None:
        """In a forked child: close what was the parent's, without a word on it."""
        self.role = "closed"
        self._stopping = True
        if self.hub is not None:
            self.hub.abandon()
        for sock in (self._sock, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._sock = None


def merge_health(
    body: dict[str, Any], reports: list[tuple[int, Any]], departed: int, score: Any
) -> tuple[int, dict[str, Any]]:
    """Each component's worst status over ``reports`` ((pid, components), the hub's first), per pid too."""
    rank = {"healthy": 0, "degraded": 1, "unhealthy": 2}
    merged: dict[str, dict[str, Any]] = {}
    for pid, components in reports:
        for name, component in components.items():
            status = str(component.get("status", "unhealthy"))
            entry = merged.get(name)
            if entry is None or rank.get(status, 2) > rank.get(str(entry["status"]), 2):
                processes = entry["processes"] if entry is not None else {}
                entry = merged[name] = {**component, "processes": processes}
            entry["processes"][str(pid)] = status
    worst = max((rank.get(str(c["status"]), 2) for c in merged.values()), default=0)
    status_name = next(name for name, value in rank.items() if value == worst)
    result = {
        **body,
        "status": status_name,
        "components": merged,
        "score": score(status_name, merged),
        "group": {"hub": reports[0][0], "processes": sorted(pid for pid, _ in reports), "departed": departed},
    }
    return (503 if status_name == "unhealthy" else 200), result


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def _start_server(pipeline: Runtime, reader: Any, listener: socket.socket | None = None) -> Any:
    """The HTTP server with the default routes, started (raises OSError when the port is taken)."""
    from otel_pipeline._internal.routes import install_default_routes
    from otel_pipeline._internal.server import MetricsServer

    config = pipeline.config
    server = MetricsServer(config.prometheus_host, config.prometheus_port, listener=listener)
    install_default_routes(server, pipeline, reader)
    server.start()
    return server


def _wrap(reader: MetricReader, group: Group) -> None:
    """The reader's collection becomes the group's on the hub (its own, everywhere else)."""
    original: Any = reader._collect
    if original is None:
        raise RuntimeError("the group reader must be registered on a MeterProvider")

    def collect(reader_: MetricReader, timeout_millis: float = 10_000, **kwargs: Any) -> MetricsData | None:
        hub = group.hub if group.role == "hub" else None
        ticket = hub.ask() if hub is not None else None
        data: MetricsData | None = original(reader_, timeout_millis=timeout_millis, **kwargs)
        if hub is None:
            return data
        hub.wait(ticket, group.refresh_timeout)
        try:
            return group._merge(hub, data, "reader")
        except Exception:  # the group's merge must never cost the process its own metrics
            logger.exception("worker group: merging the members' metrics failed")
            return data

    reader._set_collect_callback(collect)  # type: ignore[arg-type]


_exit_registered: int | None = None


def _register_exit() -> None:
    """Hand over when the interpreter (or a multiprocessing child) shuts down its threads.

    ``threading._register_atexit`` runs before non-daemon threads are joined, both at interpreter
    exit and at the end of a multiprocessing child, which never runs ``atexit`` handlers.
    """
    global _exit_registered
    if _exit_registered == os.getpid():
        return
    _exit_registered = os.getpid()
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover (CPython has it from 3.9)
        return
    with contextlib.suppress(RuntimeError):  # already shutting down
        register(_at_exit)


def _at_exit() -> None:
    from otel_pipeline._internal.state import current

    pipeline = current()
    group = getattr(pipeline, "group", None)
    if isinstance(group, Group):
        try:
            group.close()
        except Exception:
            logger.exception("worker group: the hand-over at exit failed")
