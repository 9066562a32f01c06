"""One module per domain hook. Importing this package declares every hook's metrics."""

from otel_pipeline.hooks import (  # noqa: F401
    actions,
    cache,
    checkpoint,
    dedup,
    events,
    pipeline,
    queue,
    resources,
    stdlib_queue,
)
