"""Third-party and standard-library frameworks instrumented onto the hooks, one module each.

Each module offers ``instrument_<thing>(...)`` / ``uninstrument_<thing>(...)``, idempotent, in the
shape of OpenTelemetry contrib's ``BaseInstrumentor``; a module whose library is optional imports
it lazily and names the extra to install when it is missing.

- :mod:`otel_pipeline.integrations.executor`: ``concurrent.futures`` thread and process pools.

The public functions are exported by the package itself:

>>> import otel_pipeline as op
>>> from otel_pipeline.integrations import executor
>>> op.instrument_executor is executor.instrument_executor
True
"""
