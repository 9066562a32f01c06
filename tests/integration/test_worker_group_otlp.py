"""A worker group's one OTLP stream (``group_export="merged"``), through the real rotel collector.

The group pushes OTLP only (tests/integration/workers/otlp_main.py): a ``multiprocessing.Pool``
whose workers are recycled (``maxtasksperchild``), and independent processes of one service
whose hub leaves first. The receiver behind rotel gets the exact total under one
``service.instance.id``, the group's; with ``per_process`` each process has its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from otel_pipeline._internal.group import wire
from otel_pipeline._internal.group.export import instance_id
from tests.support import free_port, wait_until
from tests.support.fixtures import RotelFactory
from tests.support.otlp_receiver import OtlpReceiver, ReceivedPoint

pytestmark = pytest.mark.integration

PROGRAM = Path(__file__).parent / "workers" / "otlp_main.py"
ROOT = Path(__file__).parents[2]
PROCESSED = {"event.source": "orders", "event.type": "order.created", "outcome": "success"}


def start(
    endpoint: str, key: int, mode: str, *args: str, task_seconds: float = 0.01
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(key),  # the group's key: nothing listens on it
        "OTEL_PIPELINE_GROUP_EXPORT": mode,
        "TASK_SECONDS": str(task_seconds),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, str(PROGRAM), *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=90)
    assert process.returncode == 0, out
    answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return answer


def processed(receiver: OtlpReceiver) -> list[ReceivedPoint]:
    """The events counter's points, in the order they were measured."""
    return sorted(
        receiver.points("events.processed", PROCESSED), key=lambda point: int(point.point.time_unix_nano)
    )


def assert_one_stream(receiver: OtlpReceiver, key: int, total: int) -> None:
    """Every point under the group's id, no process.pid; the total exact; never going backwards."""
    group_id = instance_id("otlp-group", socket.gethostname(), key)
    resources = {tuple(sorted(point.resource.items())) for point in receiver.all_points()}
    assert {dict(resource)["service.instance.id"] for resource in resources} == {group_id}
    assert all("process.pid" not in dict(resource) for resource in resources)
    values = [point.value for point in processed(receiver)]
    assert values, "no events.processed point arrived"
    assert values == sorted(values), values  # cumulative: never backwards, across exports
    assert values[-1] == total
    duration = receiver.points("events.processing.duration", PROCESSED)
    assert max(int(p.point.count) for p in duration) == total


def hub_listening(key: int) -> bool:
    """Whether the group's socket is bound (by its hub): abstract names show in /proc/net/unix."""
    name = "@" + wire.otlp_name(key, "otlp-group")[1:].decode()
    with open("/proc/net/unix", encoding="ascii", errors="replace") as table:
        return any(line.split()[-1] == name for line in table.readlines()[1:] if len(line.split()) > 7)


def wait_for_total(receiver: OtlpReceiver, total: int) -> None:
    receiver.wait_for_point("events.processed", PROCESSED, lambda point: point.value == total, timeout=30)
    time.sleep(0.5)  # rotel's batch: anything still on its way arrives before the assertions


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_with_recycled_workers_pushes_one_stream_with_the_exact_total(
    method: str, rotel_factory: RotelFactory, otlp_receiver: OtlpReceiver
) -> None:
    rotel = rotel_factory(otlp_receiver.grpc_endpoint)
    key = free_port()
    answer = finish(start(rotel.grpc_endpoint, key, "merged", "pool", method, "60"))
    assert answer["role"] == "hub"
    assert answer["delivered"] is True
    assert len(answer["workers"]) >= 6  # maxtasksperchild=5: 60 tasks over recycled workers
    wait_for_total(otlp_receiver, 60)
    assert_one_stream(otlp_receiver, key, 60)


def test_the_stream_goes_on_when_the_hub_leaves_first(
    rotel_factory: RotelFactory, otlp_receiver: OtlpReceiver
) -> None:
    rotel = rotel_factory(otlp_receiver.grpc_endpoint)
    key = free_port()
    first = start(rotel.grpc_endpoint, key, "merged", "loop", "20", "1.0")
    wait_until(lambda: hub_listening(key) or None, timeout=30, what="the first process's hub")
    others = [start(rotel.grpc_endpoint, key, "merged", "loop", "40", "3.0") for _ in range(2)]
    hub = finish(first)
    assert hub["role"] == "hub"
    # The stream went on while the others ran: pushes after the first hub left, from its heir.
    left = time.time_ns()
    rest = [finish(process) for process in others]
    assert "hub" in {answer["role"] for answer in rest}  # the heir (which may hand on again)
    wait_for_total(otlp_receiver, 100)
    assert any(int(point.point.time_unix_nano) > left for point in processed(otlp_receiver))
    assert_one_stream(otlp_receiver, key, 100)


def test_per_process_gives_each_process_its_own_stream(
    rotel_factory: RotelFactory, otlp_receiver: OtlpReceiver
) -> None:
    rotel = rotel_factory(otlp_receiver.grpc_endpoint)
    key = free_port()
    answer = finish(start(rotel.grpc_endpoint, key, "per_process", "pool", "fork", "30", task_seconds=0.15))
    assert answer["role"] is None  # no group
    otlp_receiver.wait_for_point("events.processed", PROCESSED, timeout=30)
    time.sleep(0.5)
    points = processed(otlp_receiver)
    ids = {point.resource["service.instance.id"]: point.resource["process.pid"] for point in points}
    assert len(ids) >= 2  # recycled workers: one series each
    assert set(ids.values()) <= set(answer["workers"])
    assert len(set(ids.values())) == len(ids)  # one id per process
    assert instance_id("otlp-group", socket.gethostname(), key) not in ids
