"""The Celery app a real ``celery -A tests.integration.celery_worker_app worker`` runs in the tests.

Configured from the environment the test sets: the broker (``BROKER_URL``), the exporter
(``OTEL_PIPELINE_TEST_EXPORTER``: ``prometheus`` on ``OTEL_PIPELINE_TEST_PORT``, or ``otlp`` to
``OTEL_PIPELINE_TEST_OTLP``), then instrumented, as an app module of a real service would be.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.exceptions import Ignore, Reject
from kombu.entity import Queue

import otel_pipeline as op

TASK = "shop.work"

app = Celery("shop", broker=os.environ["BROKER_URL"], set_as_current=True)
app.conf.update(
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_queues=[Queue(name) for name in ("celery", "reports")],  # type: ignore[no-untyped-call]
)


@app.task(name=TASK, bind=True, max_retries=1, default_retry_delay=0)  # type: ignore[untyped-decorator]
def work(self: Any, what: str) -> str:
    """How it ends is what it is given."""
    if what == "fail":
        raise KeyError(what)
    if what == "retry" and self.request.retries == 0:
        raise self.retry(countdown=0)
    if what == "reject":
        raise Reject("no", requeue=False)
    if what == "ignore":
        raise Ignore()
    return what


exporter = os.environ.get("OTEL_PIPELINE_TEST_EXPORTER", "prometheus")
op.configure(
    service_name="celery-worker",
    exporter=exporter,
    prometheus_port=int(os.environ.get("OTEL_PIPELINE_TEST_PORT", "0")),
    otlp_endpoint=os.environ.get("OTEL_PIPELINE_TEST_OTLP"),
    export_interval=0.5,
    trace_sample_rate=1.0,
)
op.instrument_celery(app)
