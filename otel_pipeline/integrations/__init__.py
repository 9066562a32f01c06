"""Third-party libraries instrumented onto the hooks: one module each, importing its library lazily.

- :mod:`otel_pipeline.integrations.celery`: ``op.instrument_celery(app)`` / ``op.uninstrument_celery()``
- :mod:`otel_pipeline.integrations.rq`: ``op.instrument_rq()`` / ``op.uninstrument_rq()``

Importing one does not import its library; instrumenting does (an ImportError names the extra).

>>> from otel_pipeline.integrations import celery, rq
>>> celery.PUBLISHED_AT, rq.META_CARRIER
('otel_pipeline_published_at', 'otel_pipeline.carrier')
"""
