"""Generate docs/metrics.md from the metric catalogue: ``python -m tools.docgen``.

``--check`` compares instead of writing (exit status 1 when the file is stale); ``--output PATH``
writes elsewhere. ``python -m tools.generate`` runs it with the other generators;
tests/test_catalogue.py keeps the committed file current.

>>> text = render()
>>> "| `queue.job.duration` | histogram | `s` |" in text
True
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from itertools import groupby
from pathlib import Path

from otel_pipeline._internal.promnames import prometheus_name, prometheus_type
from otel_pipeline._internal.spec import MetricSpec
from otel_pipeline.hooks import all_metrics

__all__ = ["COMMAND", "DEFAULT_OUTPUT", "main", "render"]

COMMAND = "python -m tools.docgen"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"

_HEADER = f"""# Metric catalogue

<!-- Generated from the catalogue in code by `{COMMAND}`; do not edit by hand. -->

Every metric otel_pipeline's hooks can emit, from the one catalogue in code
(`declare()` in each hook module). Units are [UCUM](https://ucum.org/ucum): `s` for seconds,
`By` for bytes, `1` for ratios, `{{job}}`-style annotations for counts of things. Durations are
histograms in seconds.

The **Prometheus** column is the name the default `/metrics` endpoint (the OpenTelemetry
Prometheus exporter) gives each metric, and its type:

- characters other than letters, digits and `:` become `_` (`queue.jobs.enqueued` → `queue_jobs_enqueued`);
- the unit is appended unless the name already ends with it: `s` → `_seconds`, `By` → `_bytes`;
  `1` and `{{...}}` annotations add nothing;
- counters end in `_total`; up-down counters become gauges; a histogram `h` exposes `h_bucket`,
  `h_sum` and `h_count`;
- attributes become labels, `.` → `_` (`queue.name` → `queue_name`). Every series also carries
  `otel_scope_name`, `otel_scope_version` and `otel_scope_schema_url`; resource attributes
  (`service.name`, `service.instance.id`, ...) are on `target_info`.

Dashboards and alert rules are generated with the same rules
(`otel_pipeline/_internal/promnames.py`).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(spec: MetricSpec) -> str:
    attributes = ", ".join(f"`{key}`" for key in spec.attributes) or "—"
    kind = spec.kind.value.replace("_", " ").replace("updowncounter", "up-down counter")
    prometheus = f"`{prometheus_name(spec)}` {prometheus_type(spec.kind)}"
    cells = [f"`{spec.name}`", kind, f"`{spec.unit}`", attributes, prometheus, _cell(spec.description)]
    return "| " + " | ".join(cells) + " |"


def render(metrics: Iterable[MetricSpec] | None = None) -> str:
    """The text of docs/metrics.md for ``metrics`` (default: the whole catalogue)."""
    specs = sorted(all_metrics() if metrics is None else metrics, key=lambda s: (s.hook, s.name))
    hooks = sorted({spec.hook for spec in specs})
    parts = [_HEADER, f"{len(specs)} metrics from {len(hooks)} hooks: {', '.join(hooks)}.\n"]
    for hook, group in groupby(specs, key=lambda s: s.hook):
        parts.append(f"## {hook or '(no hook)'}\n")
        rows = [
            "| Metric | Kind | Unit | Attributes | Prometheus | Description |",
            "|---|---|---|---|---|---|",
            *(_row(spec) for spec in group),
        ]
        parts.append("\n".join(rows) + "\n")
    parts.append(_merge_rules(specs))
    return "\n".join(parts)


_MERGE_HEADER = """## Worker groups: merge rules

How one `/metrics` of a worker group (docs/operations.md, "Multi-process workers") merges its
members' points of each metric, declared in the catalogue (`declare(..., merge=...)`):

- `sum`: over the live members and the departed ones (a member's last totals stay in the group);
- `live_sum`: over the live members only (what a dead worker had in flight is gone);
- `last` / `max` / `min`: the latest observation / the largest / the smallest of the live members
  (one shared thing observed by every worker, or the worst view of it);
- `per_process`: one series per live member, with a `process.pid` attribute;
- `ratio:NUM/DEN+...`: recomputed from the merged counters, per the metric's attributes, never
  averaged (a `{key=value}` term takes only the points with that attribute value).

An application's own instruments merge by kind: counters and histograms `sum`, up-down counters
`live_sum`, gauges `last`.
"""


def _merge_rules(specs: Sequence[MetricSpec]) -> str:
    rows = ["| Metric | Merge |", "|---|---|"]
    rows += [f"| `{spec.name}` | `{_cell(spec.merge or spec.merge_rule)}` |" for spec in specs]
    return _MERGE_HEADER + "\n" + "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check``, verify) the catalogue page; returns the exit status."""
    parser = argparse.ArgumentParser(prog=COMMAND, description="Generate docs/metrics.md from the catalogue.")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="file to write (default: %(default)s)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file is not current; write nothing"
    )
    args = parser.parse_args(argv)
    text = render()
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            print(f"{output} is out of date with the metric catalogue; run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
