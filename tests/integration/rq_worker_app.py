"""The worker class a real ``rq worker --worker-class tests.integration.rq_worker_app.Worker`` runs.

Importing it configures the pipeline from the environment the test sets (``/metrics`` on
``OTEL_PIPELINE_TEST_PORT`` and OTLP to ``OTEL_PIPELINE_TEST_OTLP``) and instruments RQ, in the
worker's own process, before it starts working.
"""

from __future__ import annotations

import os

from rq import Worker

import otel_pipeline as op

__all__ = ["Worker"]

op.configure(
    service_name="rq-worker",
    exporter="prometheus,otlp",
    prometheus_port=int(os.environ["OTEL_PIPELINE_TEST_PORT"]),
    otlp_endpoint=os.environ["OTEL_PIPELINE_TEST_OTLP"],
    export_interval=0.5,
    trace_sample_rate=1.0,
)
op.instrument_rq()
