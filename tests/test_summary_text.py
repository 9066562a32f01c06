"""The run summary as a person reads it: after shutdown(), before configure(), tables only when filled."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

import otel_pipeline as op
from otel_pipeline.testing import Capture


def printed() -> str:
    out = io.StringIO()
    op.print_summary(console=Console(file=out, width=120, color_system=None))
    return out.getvalue()


def rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("│")] for line in text.splitlines() if "│" in line]


def a_batch_run() -> None:
    op.configure(service_name="batch", exporter="none")
    with op.pipeline("etl") as run, run.stage("fetch") as stage:
        stage.processed(5)
    op.queue("emails").enqueued(3)


def test_after_shutdown_the_summary_is_the_final_one_of_the_pipeline_shut_down() -> None:
    a_batch_run()
    before = op.summary()
    assert op.shutdown()
    after = op.summary()
    assert after["service"] == {"name": "batch", "version": ""}
    assert after["pipelines"]["etl"]["stages"]["fetch"]["items"] == 5
    assert after["queues"]["emails"]["enqueued"] == 3
    assert {k: v for k, v in after.items() if k != "generated_at"} == {
        k: v for k, v in before.items() if k != "generated_at"
    }
    after["queues"].clear()  # what a caller gets is its own copy
    assert op.summary()["queues"]["emails"]["enqueued"] == 3
    text = printed()
    assert text.startswith("\nRun summary batch (")
    assert rows(text)[1][:3] == ["etl", "1", "0"]
    assert ["emails enqueued", "3"] in rows(text)
    # Configured again: the summary is the new pipeline's.
    op.configure(service_name="second", exporter="none")
    assert op.summary()["service"] == {"name": "second", "version": ""}
    assert op.summary()["queues"] == {}


def test_never_configured_the_header_says_so_and_no_table_is_printed() -> None:
    text = printed()
    assert text.startswith("\nRun summary: nothing recorded, otel_pipeline is not configured (")
    assert text.count("\n") == 2  # the blank line and the header, nothing else
    assert "pipeline / stage" not in text


def test_a_capture_leaves_no_final_summary_behind() -> None:
    with Capture(service_name="captured"):
        op.queue("emails").enqueued()
    assert op.summary()["service"] is None
    assert op.summary()["queues"] == {}


def test_without_pipelines_there_is_no_pipeline_table() -> None:
    with Capture(service_name="worker"):
        op.queue("emails").enqueued(2)
        text = printed()
    assert "pipeline / stage" not in text
    assert text.startswith("\nRun summary worker (")
    assert ["emails enqueued", "2"] in rows(text)


def test_dequeued_is_shown_only_for_queues_that_use_it() -> None:
    with Capture(service_name="worker"):
        emails = op.queue("emails")
        emails.enqueued(3)
        for _ in range(3):
            with emails.processing():
                pass
        op.queue("inbox").enqueued(2)
        op.queue("inbox").dequeued(2)
        report = op.summary()
        table = rows(printed())
    assert report["queues"]["emails"]["dequeued"] == 0  # the dict and the file keep it
    labels = [row[0] for row in table]
    assert "emails dequeued" not in labels
    assert ["emails processed success", "3"] in table
    assert ["inbox dequeued", "2"] in table


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask")
def test_the_summary_file_has_the_usual_mode(tmp_path: Path) -> None:
    with Capture():
        path = tmp_path / "summary.json"
        op.write_summary(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o002)
        op.write_summary(tmp_path / "group.json")
        assert stat.S_IMODE((tmp_path / "group.json").stat().st_mode) == 0o664
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group.json", "summary.json"]
