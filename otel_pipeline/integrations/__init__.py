"""Third-party and standard-library frameworks instrumented onto the hooks, one module each.

Each module offers ``instrument_<thing>(...)`` / ``uninstrument_<thing>(...)``, idempotent, in the
shape of OpenTelemetry contrib's ``BaseInstrumentor``; a module whose library is optional imports
it lazily and names the extra to install when it is missing.

- :mod:`otel_pipeline.integrations.executor`: ``concurrent.futures`` thread and process pools.
"""
