"""Third-party libraries instrumented onto the hooks: one module each, importing its library lazily.

- :mod:`otel_pipeline.integrations.celery`: ``op.instrument_celery(app)`` / ``op.uninstrument_celery()``
- :mod:`otel_pipeline.integrations.rq`: ``op.instrument_rq()`` / ``op.uninstrument_rq()``
"""
