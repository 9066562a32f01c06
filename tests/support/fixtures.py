"""pytest fixtures for the real servers; a conftest re-exports the ones its tests use.

A missing binary fails the test with the command that installs it: integration tests never skip.

    from tests.support.fixtures import otlp_receiver, prometheus_factory, rotel  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.support import MissingBinaryError
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.prometheus import Prometheus
from tests.support.redis import Redis
from tests.support.rotel import Rotel

__all__ = ["otlp_receiver", "prometheus_factory", "redis_server", "rotel", "rotel_factory"]

PrometheusFactory = Callable[..., Prometheus]
RotelFactory = Callable[..., Rotel]


@pytest.fixture
def prometheus_factory() -> Iterator[PrometheusFactory]:
    """``start(targets, scrape_interval=0.5, rule_files=(), ...)`` -> a ready :class:`Prometheus`.

    Every instance started is stopped (by PID) when the test ends.
    """
    started: list[Prometheus] = []

    def start(targets: Sequence[str], **options: Any) -> Prometheus:
        try:
            prometheus = Prometheus(targets, **options)
        except MissingBinaryError as error:
            pytest.fail(str(error), pytrace=False)
        started.append(prometheus)
        return prometheus.start()

    try:
        yield start
    finally:
        for prometheus in started:
            prometheus.stop()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An in-test OTLP receiver (gRPC and HTTP) on free loopback ports."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def rotel_factory() -> Iterator[RotelFactory]:
    """``start(forward_to=None, forward_protocol="grpc")`` -> a running :class:`Rotel`; stopped at the end."""
    started: list[Rotel] = []

    def start(forward_to: str | None = None, **options: Any) -> Rotel:
        try:
            agent = Rotel(forward_to, **options)
        except MissingBinaryError as error:
            pytest.fail(str(error), pytrace=False)
        started.append(agent)
        return agent.start()

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()


@pytest.fixture
def rotel(rotel_factory: RotelFactory, otlp_receiver: OtlpReceiver) -> Rotel:
    """rotel forwarding everything it receives to the test's ``otlp_receiver`` over gRPC."""
    return rotel_factory(otlp_receiver.grpc_endpoint)


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    """A real ``redis-server`` on a free loopback port, empty, stopped (by PID) when the test ends."""
    try:
        server = Redis()
    except MissingBinaryError as error:
        pytest.fail(str(error), pytrace=False)
    with server:
        yield server
