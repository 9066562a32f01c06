"""Third-party and standard-library frameworks instrumented onto the hooks, one module each.

Each module offers ``instrument_<thing>(...)`` / ``uninstrument_<thing>(...)``, idempotent, in the
shape of OpenTelemetry contrib's ``BaseInstrumentor``; a module whose library is optional imports
it lazily and names the extra to install when it is missing (importing the module does not
import its library; instrumenting does).

- :mod:`otel_pipeline.integrations.executor`: ``concurrent.futures`` thread and process pools.
- :mod:`otel_pipeline.integrations.celery`: ``op.instrument_celery(app)`` / ``op.uninstrument_celery()``
- :mod:`otel_pipeline.integrations.rq`: ``op.instrument_rq()`` / ``op.uninstrument_rq()``

The public functions are exported by the package itself:

>>> import otel_pipeline as op
>>> from otel_pipeline.integrations import celery, executor, rq
>>> op.instrument_executor is executor.instrument_executor
True
>>> celery.PUBLISHED_AT, rq.META_CARRIER
('otel_pipeline_published_at', 'otel_pipeline.carrier')
"""
