"""Worker groups in one process: a hub and members built side by side, talking over the real group socket.

The multi-process cases (multiprocessing, gunicorn, uvicorn, signals) are in
tests/integration/test_worker_group*.py; these pin down the protocol and its failure paths.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline._internal.group import hub as hub_module
from otel_pipeline._internal.group import node, wire
from otel_pipeline._internal.group.node import Group
from otel_pipeline._internal.routes import health_score
from otel_pipeline.config import Config
from otel_pipeline.hooks.events import PROCESSED
from otel_pipeline.hooks.queue import DEPTH, ENQUEUED, IN_PROGRESS
from tests.support import free_port, wait_until
from tests.support.http import request


@pytest.fixture(autouse=True)
def quick_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closing hub waits this long (not 3 s) for a member to take the group's totals."""
    monkeypatch.setattr(hub_module, "HEIR_WAIT", 0.3)


class Side:
    """Pipelines built in this process on one port: each becomes the hub or a member."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pipelines: list[runtime.Runtime] = []

    def build(self, **options: Any) -> runtime.Runtime:
        options = {"service_name": "orders", "prometheus_port": self.port, **options}
        pipeline = runtime.build_pipeline(Config.resolve({}, **options))
        self.pipelines.append(pipeline)
        return pipeline

    def close(self) -> None:
        for pipeline in reversed(self.pipelines):
            pipeline.shutdown(timeout=5)


@pytest.fixture
def side() -> Iterator[Side]:
    made = Side(free_port())
    try:
        yield made
    finally:
        made.close()


def group_of(pipeline: runtime.Runtime) -> Group:
    assert isinstance(pipeline.group, Group)
    return pipeline.group


def count(pipeline: runtime.Runtime, spec: Any, amount: float, **attributes: Any) -> None:
    """Record into ``pipeline`` directly (the hooks record into the current pipeline only)."""
    assert pipeline.registry is not None
    pipeline.registry.instrument(spec).bind(attributes).add(amount)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, labels without otel_scope_*): value} of the group's /metrics."""
    body = request(f"http://127.0.0.1:{port}/metrics").body.decode()
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope")))
            found[(sample.name, labels)] = sample.value
    return found


EMAILS = (("queue_name", "emails"),)


def test_one_hub_serves_the_exact_totals_of_its_members(side: Side) -> None:
    hub = side.build()
    one = side.build()
    two = side.build()
    assert [group_of(p).role for p in (hub, one, two)] == ["hub", "member", "member"]
    assert one.server is None
    assert one.prometheus_port == side.port
    assert one.metrics_url == f"http://127.0.0.1:{side.port}/metrics"
    count(hub, ENQUEUED, 1, **{"queue.name": "emails"})
    count(one, ENQUEUED, 20, **{"queue.name": "emails"})
    count(two, ENQUEUED, 300, **{"queue.name": "emails"})
    count(two, IN_PROGRESS, 2, **{"queue.name": "emails"})
    found = scrape(side.port)
    assert found[("queue_jobs_enqueued_total", EMAILS)] == 321
    assert found[("queue_jobs_in_progress", EMAILS)] == 2
    # /stats covers the group too.
    stats = json.loads(request(f"http://127.0.0.1:{side.port}/stats/emails").body)
    assert stats["hooks"]["queue"]["emails"]["queue.jobs.enqueued"]["value"] == 321


def test_a_member_that_leaves_keeps_its_totals_in_the_group(side: Side) -> None:
    hub = side.build()
    member = side.build()
    count(member, ENQUEUED, 7, **{"queue.name": "emails"})
    count(member, IN_PROGRESS, 3, **{"queue.name": "emails"})
    count(member, PROCESSED, 4, **{"event.source": "orders", "event.type": "x", "outcome": "success"})
    assert member.shutdown(timeout=5) is True  # the final hand-over
    count(hub, ENQUEUED, 1, **{"queue.name": "emails"})
    found = scrape(side.port)
    assert found[("queue_jobs_enqueued_total", EMAILS)] == 8  # never goes backwards
    assert ("queue_jobs_in_progress", EMAILS) not in found  # its in-flight work is gone with it
    health = json.loads(request(f"http://127.0.0.1:{side.port}/health").body)
    assert hub.group is not None
    assert health["group"] == {"hub": os.getpid(), "processes": [os.getpid()], "departed": 1}


def test_health_shows_every_member_and_the_worst_status(side: Side) -> None:
    hub = side.build()
    member = side.build()
    member.export_state.record(False, "metrics: export FAILURE")  # unhealthy after three
    for _ in range(2):
        member.export_state.record(False, "metrics: export FAILURE")
    body = json.loads(request(f"http://127.0.0.1:{side.port}/health").body)
    exporter = body["components"]["exporter"]
    assert body["status"] == "unhealthy"
    assert exporter["status"] == "unhealthy"
    assert exporter["consecutive_failures"] == 3
    assert len(body["group"]["processes"]) == 2  # the hub and the member (one pid in this test)
    assert hub.export_state.consecutive_failures == 0


def test_group_health_keeps_each_process_status_and_the_worst_details() -> None:
    body = {"status": "healthy", "service": "orders", "components": {}}
    reports = [
        (10, {"exporter": {"status": "healthy", "exporter": "prometheus"}}),
        (
            11,
            {"exporter": {"status": "degraded", "consecutive_failures": 1}, "breaker": {"status": "healthy"}},
        ),
        (12, {"exporter": {"status": "healthy"}}),
    ]
    status, merged = node.merge_health(body, reports, 4, health_score)
    assert status == 200
    assert merged["status"] == "degraded"
    assert merged["components"]["exporter"] == {
        "status": "degraded",
        "consecutive_failures": 1,
        "processes": {"10": "healthy", "11": "degraded", "12": "healthy"},
    }
    assert merged["components"]["breaker"] == {"status": "healthy", "processes": {"11": "healthy"}}
    assert merged["group"] == {"hub": 10, "processes": [10, 11, 12], "departed": 4}
    assert merged["score"] == health_score("degraded", merged["components"])
    unhealthy = [(10, {"exporter": {"status": "unhealthy"}})]
    assert node.merge_health(body, unhealthy, 0, health_score)[0] == 503


def test_a_process_of_another_service_gets_the_clear_error(side: Side) -> None:
    side.build()
    with pytest.raises(
        OSError,
        match=r"cannot serve /metrics on 127\.0\.0\.1:\d+ \(the port is served by the "
        r"worker group of service 'orders' on host '127\.0\.0\.1', not 'billing'",
    ):
        side.build(service_name="billing")


def test_a_port_held_by_something_else_gives_todays_error() -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        with pytest.raises(
            OSError, match=rf"cannot serve /metrics on 127\.0\.0\.1:{port} \(Address already in use"
        ):
            runtime.build_pipeline(Config.resolve({}, service_name="orders", prometheus_port=port))
        # The group's socket name was released: the next process tries again from scratch.
        released = wire.bind(wire.abstract_name(port))
        assert released is not None
        released.close()
    finally:
        holder.close()


def test_the_opt_out_serves_per_process(side: Side, monkeypatch: pytest.MonkeyPatch) -> None:
    alone = side.build(worker_group=False)
    assert alone.group is None
    assert alone.server is not None
    with pytest.raises(OSError, match="Address already in use"):
        side.build(worker_group=False)
    monkeypatch.setenv("OTEL_PIPELINE_WORKER_GROUP", "false")
    assert Config.resolve(os.environ).worker_group is False
    monkeypatch.setenv("OTEL_PIPELINE_WORKER_GROUP", "maybe")
    with pytest.raises(ValueError, match="OTEL_PIPELINE_WORKER_GROUP='maybe' is not valid"):
        Config.resolve(os.environ)
    with pytest.raises(ValueError, match="worker_group='yes' is not valid; use True or False"):
        Config.resolve({}, worker_group="yes")


def test_port_zero_and_other_exporters_have_no_group() -> None:
    pipeline = runtime.build_pipeline(Config.resolve({}, service_name="orders", prometheus_port=0))
    try:
        assert pipeline.group is None
        assert pipeline.server is not None
    finally:
        pipeline.shutdown(timeout=5)


def test_a_member_takes_over_the_port_with_the_groups_totals(side: Side) -> None:
    hub = side.build()
    member = side.build()
    leaver = side.build()
    count(hub, ENQUEUED, 5, **{"queue.name": "emails"})
    count(member, ENQUEUED, 10, **{"queue.name": "emails"})
    count(leaver, ENQUEUED, 100, **{"queue.name": "emails"})
    assert leaver.shutdown(timeout=5) is True  # folded into the hub's departed
    assert hub.shutdown(timeout=5) is True  # hands the departed and its own totals to the member
    wait_until(lambda: group_of(member).role == "hub" and member.server is not None, timeout=10)
    assert member.prometheus_port == side.port
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 115
    joiner = side.build()  # a new worker joins the new hub
    count(joiner, ENQUEUED, 1000, **{"queue.name": "emails"})
    assert group_of(joiner).role == "member"
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 1115


def test_a_stuck_member_is_counted_by_its_last_snapshot(side: Side) -> None:
    hub = side.build()
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.connect(wire.abstract_name(side.port))
    fake.sendall(
        wire.encode({"t": "hello", "v": wire.PROTOCOL, "service": "orders", "host": "127.0.0.1", "pid": 4})
    )
    fake.sendall(
        wire.encode(
            {
                "t": "snap",
                "id": 0,
                "metrics": [
                    [
                        json.dumps(["otel_pipeline", "0.1.0", "", []]),
                        "queue.jobs.enqueued",
                        "Jobs put on the queue.",
                        "{job}",
                        "c",
                        [['[["queue.name","emails"]]', 9, 1, 2, None]],
                    ]
                ],
            }
        )
    )
    hub_side = group_of(hub).hub
    assert hub_side is not None
    wait_until(lambda: hub_side.members() == [4], timeout=10)
    # It never answers a request: the scrape gives up on it after the refresh timeout, and counts it.
    assert hub_side.wait(hub_side.ask(), 0.2) is False
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 9
    fake.close()
    wait_until(lambda: hub_side.members() == [], timeout=10)
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 9  # departed, still counted


def test_a_member_that_sends_garbage_is_dropped_and_folded(
    side: Side, caplog: pytest.LogCaptureFixture
) -> None:
    hub = side.build()
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.connect(wire.abstract_name(side.port))
    fake.sendall(wire.encode({"t": "snap", "id": 0, "metrics": []}))  # before hello
    hub_side = group_of(hub).hub
    assert hub_side is not None
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert fake.recv(10) == b""  # dropped
    assert "sent a message the hub cannot read" in caplog.text
    fake.close()
    with pytest.raises(ValueError, match="over the limit"):
        wire.Decoder().feed(b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="without a type"):
        wire.Decoder().feed(wire.encode({"x": 1}))


def test_a_member_never_rejoins_the_hub_that_dropped_it(side: Side, caplog: pytest.LogCaptureFixture) -> None:
    hub = side.build()
    member = side.build()
    count(member, ENQUEUED, 3, **{"queue.name": "emails"})
    hub_side = group_of(hub).hub
    assert hub_side is not None
    wait_until(lambda: len(hub_side.members()) == 1, timeout=10)
    scrape(side.port)  # its snapshot is in
    with hub_side.lock:
        peer = next(iter(hub_side._peers.values()))
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        peer.sock.shutdown(socket.SHUT_RDWR)  # as if the hub had dropped it
        wait_until(lambda: group_of(member).role == "alone", timeout=15)
    assert "was dropped by its hub" in caplog.text
    # Counted once (folded when dropped), not twice.
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 3


def test_live_gauges_take_the_latest_observation(side: Side) -> None:
    hub = side.build()
    member = side.build()
    assert hub.registry is not None
    assert member.registry is not None
    hub.registry.observe(DEPTH, lambda: [(40, {"queue.name": "emails"})])
    member.registry.observe(DEPTH, lambda: [(42, {"queue.name": "emails"})])
    # Both observe the same broker queue: one value, not 82.
    assert scrape(side.port)[("queue_depth", EMAILS)] in (40, 42)


def test_a_forked_pool_joins_without_setup(side: Side) -> None:
    """The at-fork path in process: a child built as after a fork joins as a member."""
    hub = side.build()
    child = runtime.build_pipeline(hub.config, serve=False)
    side.pipelines.append(child)
    from otel_pipeline._internal.group import after_fork_in_child

    parent = side.build()  # a member whose "fork" the child is
    assert after_fork_in_child(parent, child) is True
    assert group_of(parent).role == "closed"  # the parent's sockets were the parent's: abandoned
    count(child, ENQUEUED, 11, **{"queue.name": "emails"})
    assert group_of(child).role == "member"
    wait_until(lambda: scrape(side.port).get(("queue_jobs_enqueued_total", EMAILS)) == 11, timeout=10)
    assert after_fork_in_child(child.__class__(hub.config), child) is False  # parent not in a group


def test_configure_installs_the_sigterm_handler_for_a_group_member() -> None:
    # A program without a SIGTERM handler of its own (whatever an earlier test left installed).
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        port = free_port()
        pipeline = op.configure(service_name="orders", prometheus_port=port)
        assert group_of(pipeline).role == "hub"
        assert pipeline.handles_sigterm is True
        assert op.shutdown() is True
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_interval_bounds_what_a_member_can_lose() -> None:
    assert node.INTERVAL == 1.0  # the documented bound of a SIGKILLed member's loss


def _enqueued_wire(value: float) -> list[Any]:
    """A snapshot's metrics in wire form: queue.jobs.enqueued of queue "emails" at ``value``."""
    scope = json.dumps(["otel_pipeline", "0.1.0", "", []])
    points = [['[["queue.name","emails"]]', value, 1, 2, None]]
    return [[scope, "queue.jobs.enqueued", "Jobs put on the queue.", "{job}", "c", points]]


def _fake_member(port: int, pid: int) -> socket.socket:
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.connect(wire.abstract_name(port))
    hello = {"t": "hello", "v": wire.PROTOCOL, "service": "orders", "host": "127.0.0.1", "pid": pid}
    fake.sendall(wire.encode(hello))
    return fake


def _next_message(sock: socket.socket, decoder: wire.Decoder, kind: str) -> dict[str, Any]:
    sock.settimeout(10)
    pending: list[dict[str, Any]] = []
    while True:
        message = wire.recv_message(sock, decoder, pending, [])
        assert message is not None, f"the hub closed before sending {kind!r}"
        if message["t"] == kind:
            return message


def test_members_of_the_previous_hub_count_until_they_join(
    side: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new hub counts the previous hub's members by their handed-over snapshots (never short)."""
    hub = side.build()
    hub_side = group_of(hub).hub
    assert hub_side is not None
    hub_side.inherit({"departed": [], "final": [], "members": 0, "live": [[41, _enqueued_wire(5)]]})
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 5
    # Member 41 joins and hands over its own (newer) totals: they replace the handed-over ones.
    fake = _fake_member(side.port, 41)
    fake.sendall(wire.encode({"t": "snap", "id": 0, "metrics": _enqueued_wire(7)}))
    wait_until(lambda: scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 7, timeout=10)
    # Its final snapshot is folded and acknowledged.
    fake.sendall(wire.encode({"t": "snap", "id": 0, "metrics": _enqueued_wire(9), "final": True}))
    _next_message(fake, wire.Decoder(), "bye")
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 9
    fake.close()
    # A member that never joins is folded after the time-out, and refused if it comes later.
    monkeypatch.setattr(hub_module, "PROVISIONAL_TIMEOUT", 0.0)
    hub_side.inherit({"departed": [], "final": [], "members": 0, "live": [[42, _enqueued_wire(100)]]})
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 109
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 109  # folded once
    late = _fake_member(side.port, 42)
    refusal = _next_message(late, wire.Decoder(), "refuse")
    assert "counted already" in refusal["reason"]
    late.close()
    # Handed-over snapshots of members already folded here are not counted again.
    hub_side.inherit({"departed": [], "final": [], "members": 0, "live": [[41, _enqueued_wire(9)]]})
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 109


def test_a_final_hand_over_the_closing_hub_never_read_goes_to_the_next_hub(side: Side) -> None:
    """The member's final totals reach the next hub when its hub closed without acknowledging them."""
    fake_hub = wire.bind(wire.abstract_name(side.port))
    assert fake_hub is not None
    got_final = threading.Event()

    def hub_that_closes_without_reading() -> None:
        conn, _ = fake_hub.accept()
        decoder = wire.Decoder()
        hello = _next_message(conn, decoder, "hello")
        conn.sendall(wire.encode({"t": "welcome", "hub": "fake", "pid": hello["pid"]}))
        while not _next_message(conn, decoder, "snap").get("final"):
            pass
        got_final.set()  # as if still unread when this hub closed: no bye
        conn.close()
        fake_hub.close()

    fake = threading.Thread(target=hub_that_closes_without_reading)
    fake.start()
    member = side.build()  # joins the fake hub
    assert group_of(member).role == "member"
    count(member, ENQUEUED, 6, **{"queue.name": "emails"})
    closing = threading.Thread(target=member.shutdown, kwargs={"timeout": 10})
    closing.start()
    assert got_final.wait(10)
    fake.join(timeout=10)
    successor = side.build()  # the next hub: the member joins it with its final totals
    assert group_of(successor).role == "hub"
    closing.join(timeout=15)
    assert not closing.is_alive()
    assert scrape(side.port)[("queue_jobs_enqueued_total", EMAILS)] == 6
    health = json.loads(request(f"http://127.0.0.1:{side.port}/health").body)
    assert health["group"]["departed"] == 1
