"""One module per domain hook. Importing this package declares every hook's metrics."""

from otel_pipeline.hooks import cache, checkpoint, dedup, pipeline, resources  # noqa: F401
