"""Internal machinery of otel_pipeline: nothing here is public API."""
