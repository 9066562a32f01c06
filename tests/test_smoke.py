from __future__ import annotations

import pytest

import otel_pipeline as op
from otel_pipeline.testing import Capture


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_queue_processing_records_exact_values(mode: str) -> None:
    with Capture(instrument_mode=mode) as capture:
        q = op.queue("emails")
        q.enqueued(3)
        with q.processing():
            pass
        with pytest.raises(KeyError), q.processing():
            raise KeyError("boom")
        attrs = {"queue.name": "emails"}
        assert capture.value("queue.jobs.enqueued", attrs) == 3
        assert capture.value("queue.jobs.processed", {**attrs, "outcome": "success"}) == 1
        failure = capture.point(
            "queue.job.duration", {**attrs, "outcome": "failure", "error.type": "KeyError"}
        )
        assert failure.count == 1
        assert capture.value("queue.jobs.in_progress", attrs) == 0
        assert [s.name for s in capture.spans()] == ["queue.process emails"] * 2
