"""Grafana dashboards and Prometheus rules for otel_pipeline, generated from the metric catalogue.

``python -m dashboards.generate`` writes ``dashboards/*.json`` and ``dashboards/rules/*.yml``;
``python -m dashboards.generate --check`` fails when the committed files differ from what the code
generates. See docs/operations.md.
"""
