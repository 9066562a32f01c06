"""Integration tests run against real servers started on loopback by these fixtures."""

from __future__ import annotations

from tests.support.fixtures import otlp_receiver, prometheus_factory, redis_server, rotel, rotel_factory
from tests.support.pushgateway import pushgateway

__all__ = ["otlp_receiver", "prometheus_factory", "pushgateway", "redis_server", "rotel", "rotel_factory"]
