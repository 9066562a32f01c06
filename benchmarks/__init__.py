"""Benchmarks: overhead, scrape and server load, JSON output (run with `make bench`)."""
