"""Request errors in the server go to the otel_pipeline logger, never to stderr."""

from __future__ import annotations

import logging

import pytest

from otel_pipeline.server import MetricsServer


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (ConnectionResetError(104, "Connection reset by peer"), logging.DEBUG),
        (ValueError("bug"), logging.ERROR),
    ],
)
def test_request_errors_are_logged_not_printed(
    error: Exception, level: int, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    server = MetricsServer("127.0.0.1", 0)
    try:
        with caplog.at_level(logging.DEBUG, logger="otel_pipeline"):
            try:
                raise error
            except Exception:
                server._handle_error(("127.0.0.1", 5))
    finally:
        server.stop()
    assert capsys.readouterr().err == ""
    records = [r for r in caplog.records if r.name == "otel_pipeline"]
    assert [r.levelno for r in records] == [level]
    assert "127.0.0.1" in records[0].getMessage()
