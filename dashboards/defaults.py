"""Default panels: a catalogue metric that no panel of :mod:`dashboards.boards` shows gets one.

A metric is on a dashboard once a hand-written panel queries it (that is how a hook declares its
panels). Until then, a new metric of a new hook is shown on the "Other metrics" board
(``dashboards/other.json``) with the panel its kind calls for: a counter's rate, a gauge's or
up-down counter's value, a histogram's p50/p95/p99, each by job and the metric's attributes. The
metrics in ``NOT_ON_DASHBOARDS`` are left off on purpose. The board exists only while it has a
panel: today every metric has a hand-written one.

>>> from otel_pipeline._internal.spec import Kind, MetricSpec
>>> spec = MetricSpec("demo.items", Kind.COUNTER, "{item}", "Items.", ("demo.name",), "demo")
>>> default_panel(spec).queries[0].expr
'sum by (job, demo_name) (rate(demo_items_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dashboards.model import Board, Panel, Query, Row
from dashboards.promql import DASHBOARD_SELECTOR, RATE_WINDOW, by
from otel_pipeline._internal.promnames import label_name, prometheus_name
from otel_pipeline._internal.spec import Kind, MetricSpec

__all__ = ["FILE_STEM", "covered", "default_board", "default_panel", "uncovered"]

#: The board of default panels: ``dashboards/<FILE_STEM>.json``.
FILE_STEM = "other"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
#: Grafana units of a value, and of its per-second rate, by UCUM unit (anything else: a count).
_VALUE_UNITS = {"s": "s", "By": "bytes", "1": "short"}
_RATE_UNITS = {"s": "percentunit", "By": "Bps"}


def _selected(spec: MetricSpec, suffix: str = "") -> str:
    return f"{prometheus_name(spec)}{suffix}{{{DASHBOARD_SELECTOR}}}"


def _legend(spec: MetricSpec, prefix: str = "") -> str:
    labels = ["{{job}}", *("{{" + label_name(key) + "}}" for key in spec.attributes)]
    return " ".join([prefix, *labels] if prefix else labels)


def default_panel(spec: MetricSpec) -> Panel:
    """The panel a metric of ``spec``'s kind gets when no hand-written panel shows it."""
    group = by(*spec.attributes)
    description = f"{spec.description} (default panel: no dashboard shows `{spec.name}` yet)"
    if spec.kind is Kind.HISTOGRAM:
        labels = group.removesuffix(")") + ", le)"
        queries = tuple(
            Query(
                f"histogram_quantile({q}, sum {labels} (rate({_selected(spec, '_bucket')}[{RATE_WINDOW}])))",
                _legend(spec, f"p{round(q * 100)}"),
                exemplars=q == 0.99,
            )
            for q in (0.5, 0.95, 0.99)
        )
        return Panel(spec.name, _VALUE_UNITS.get(spec.unit, "short"), queries, description)
    if spec.kind is Kind.COUNTER:
        expr = f"sum {group} (rate({_selected(spec)}[{RATE_WINDOW}]))"
        return Panel(spec.name, _RATE_UNITS.get(spec.unit, "ops"), (Query(expr, _legend(spec)),), description)
    expr = f"sum {group} ({_selected(spec)})"  # gauges and up-down counters: the value now
    return Panel(spec.name, _VALUE_UNITS.get(spec.unit, "short"), (Query(expr, _legend(spec)),), description)


def covered(boards: Iterable[Board]) -> frozenset[str]:
    """The Prometheus names the boards' queries use."""
    return frozenset(
        name
        for board in boards
        for panel in board.panels()
        for query in panel.queries
        for name in _NAME.findall(query.expr)
    )


def uncovered(
    specs: Iterable[MetricSpec], boards: Iterable[Board], left_off: Iterable[str]
) -> list[MetricSpec]:
    """The metrics of ``specs`` no board queries (a histogram by its ``_bucket`` series), but ``left_off``."""
    names = covered(boards)
    skipped = set(left_off)
    return [
        spec
        for spec in specs
        if spec.name not in skipped
        and prometheus_name(spec) not in names
        and f"{prometheus_name(spec)}_bucket" not in names
    ]


def default_board(specs: Iterable[MetricSpec]) -> Board | None:
    """The "Other metrics" board with a default panel per metric, a row per hook; None when there is none."""
    by_hook: dict[str, list[MetricSpec]] = {}
    for spec in sorted(specs, key=lambda s: (s.hook, s.name)):
        by_hook.setdefault(spec.hook or "other", []).append(spec)
    if not by_hook:
        return None
    return Board(
        FILE_STEM,
        "otel_pipeline / Other metrics",
        "Metrics no other dashboard shows yet, each with the default panel of its kind.",
        tuple(
            Row(hook, tuple(default_panel(spec) for spec in hook_specs))
            for hook, hook_specs in by_hook.items()
        ),
    )
