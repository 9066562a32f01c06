"""One module per domain hook. Importing this package declares every hook's metrics."""

from otel_pipeline.hooks import (  # noqa: F401
    actions,
    breaker,
    cache,
    checkpoint,
    dedup,
    event_loop,
    events,
    health,
    http,
    pipeline,
    pool,
    queue,
    resources,
    stdlib_queue,
)
