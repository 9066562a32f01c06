"""The package version (single source for packaging and the instrumentation scope)."""

__version__ = "0.1.0"
