"""The run summary: what the process did so far, as a dict, a JSON file or a rich table.

It is built from the metrics the pipeline collected (its local in-memory reader: cumulative, the
same points the exporters get, in both instrument modes) plus the resource monitor's peaks, so
its counts are exact and agree with ``/metrics``. The JSON layout is versioned
(``schema_version``) and described by ``otel_pipeline/summary.schema.json`` (docs/summary.md).

>>> import otel_pipeline as op
>>> _ = op.configure(service_name="docs", exporter="none")
>>> with op.pipeline("nightly") as run:
...     with run.stage("fetch") as stage:
...         stage.processed(120)
>>> op.summary()["pipelines"]["nightly"]["stages"]["fetch"]["items"]
120
>>> op.shutdown()
True
"""

from __future__ import annotations

import json
import math
import os
import secrets
import weakref
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData

from otel_pipeline._internal import strict_json
from otel_pipeline._internal.runtime import SCOPE_NAME, Runtime, current

__all__ = ["SCHEMA_VERSION", "print_summary", "schema", "summary", "write_summary"]

#: Bumped whenever a field changes meaning or goes away (adding fields keeps the version).
SCHEMA_VERSION = 1

Points = dict[str, list[Any]]
#: field -> (metric name, attribute whose values split the field into a dict or None, value when absent).
Fields = dict[str, tuple[str, str | None, float | None]]

#: Sections of hooks that report per named instance: section -> (name attribute, fields). Counts
#: never recorded are 0 (or {} when split); levels never reported (depth, entries) are null.
SECTIONS: dict[str, tuple[str, Fields]] = {
    "caches": (
        "cache.name",
        {
            "hits": ("cache.hits", None, 0),
            "misses": ("cache.misses", None, 0),
            "evictions": ("cache.evictions", None, 0),
            "entries": ("cache.entries", None, None),
        },
    ),
    "queues": (
        "queue.name",
        {
            "enqueued": ("queue.jobs.enqueued", None, 0),
            "dequeued": ("queue.jobs.dequeued", None, 0),
            "processed": ("queue.jobs.processed", "outcome", 0),
            "in_progress": ("queue.jobs.in_progress", None, 0),
            "retried": ("queue.jobs.retried", None, 0),
            "dead_lettered": ("queue.jobs.dead_lettered", "reason", 0),
            "replayed": ("queue.jobs.replayed", None, 0),
            "depth": ("queue.depth", None, None),
            "dead_letter_depth": ("queue.dead_letter.depth", None, None),
        },
    ),
}
#: actions: executor -> action -> outcome -> count, from this metric and these attributes.
ACTIONS = ("actions.executed", "action.executor", "action.name", "outcome")


def summary(pipeline: Runtime | None = None) -> dict[str, Any]:
    """The run so far (see docs/summary.md): pipelines and stages, resources, caches, queues, actions.

    ``pipeline`` defaults to the configured one. After :func:`otel_pipeline.shutdown` it is the
    final summary of the pipeline shut down (taken as it shut down), until another is configured;
    never configured, every section is empty.

    >>> import otel_pipeline as op
    >>> sorted(op.summary())
    ['actions', 'caches', 'generated_at', 'pipelines', 'queues', 'resources', 'schema_version', 'service']
    """
    if pipeline is None:
        pipeline = current()
        if pipeline is None and _final is not None:
            copy: dict[str, Any] = json.loads(json.dumps(_final))  # callers may change what they get
            return copy
    return _report(pipeline, None if pipeline is None else pipeline.collect())


#: The final summary of the last configured pipeline shut down (test captures' are not kept).
_final: dict[str, Any] | None = None
_watched: weakref.WeakSet[Runtime] = weakref.WeakSet()


def keep_final_at_shutdown(pipeline: Runtime | None) -> None:
    """On install: take a configured pipeline's final summary first thing when it shuts down."""
    global _final
    if pipeline is None or pipeline.captured:
        return
    _final = None  # another pipeline: the last one's final summary is no longer the run's
    if pipeline not in _watched:
        _watched.add(pipeline)
        pipeline.on_shutdown.insert(0, lambda: _keep_final(pipeline))


def _keep_final(pipeline: Runtime) -> None:
    global _final
    reader = pipeline.local_reader  # pipeline.collect() answers None once shutdown has begun
    _final = _report(pipeline, None if reader is None else reader.get_metrics_data())


def _forget_final() -> None:
    """Forget the final summary kept at the last shutdown (for tests)."""
    global _final
    _final = None


def _report(pipeline: Runtime | None, data: MetricsData | None) -> dict[str, Any]:
    points = _points(data)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "service": None,
        "pipelines": _pipelines(points),
        "resources": _resources(pipeline),
        "actions": _actions(points),
    }
    if pipeline is not None:
        report["service"] = {"name": pipeline.config.service_name, "version": pipeline.config.service_version}
    for section, (name_key, fields) in SECTIONS.items():
        report[section] = _named_section(points, name_key, fields)
    for cache in report["caches"].values():
        lookups = cache["hits"] + cache["misses"]
        cache["hit_rate"] = _round(cache["hits"] / lookups) if lookups else None
    return report


def write_summary(path: str | os.PathLike[str], pipeline: Runtime | None = None) -> dict[str, Any]:
    """Write :func:`summary` to ``path`` as JSON (atomically: readers never see half a file); return it.

    >>> import json, pathlib, tempfile, otel_pipeline as op
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "summary.json"
    >>> _ = op.write_summary(path)
    >>> json.loads(path.read_text())["schema_version"]
    1
    """
    report = summary(pipeline)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = _new_temporary(target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(strict_json.dumps(report, indent=2, sort_keys=True))  # never NaN or Infinity
            file.write("\n")
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    return report


def _new_temporary(target: Path) -> tuple[int, str]:
    """A new file beside ``target``, open for writing, with the usual mode (0666 less the umask).

    Not ``tempfile.mkstemp``: its files are 0600, and the summary is not a secret.
    """
    while True:
        temporary = str(target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp"))
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def schema() -> dict[str, Any]:
    """The JSON Schema of the summary file (``otel_pipeline/summary.schema.json``).

    >>> schema()["properties"]["schema_version"]["const"]
    1
    """
    text = resources.files("otel_pipeline").joinpath("summary.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def print_summary(pipeline: Runtime | None = None, *, console: Any = None) -> dict[str, Any]:
    """Print :func:`summary` as tables (with rich, on ``console`` or stdout); return it.

    >>> import otel_pipeline as op
    >>> _ = op.print_summary()  # doctest: +ELLIPSIS
    <BLANKLINE>
    ...
    """
    report = summary(pipeline)
    _render(report, console)
    return report


# -- reading the collected metrics -----------------------------------------------------------


def _points(data: MetricsData | None) -> Points:
    """Every point of otel_pipeline's metrics in ``data``, by metric name."""
    found: Points = {}
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != SCOPE_NAME:
                continue
            for metric in scope_metrics.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _value(point: Any) -> float:
    """A sum or gauge point's value; a histogram point's count."""
    return point.count if hasattr(point, "bucket_counts") else point.value  # type: ignore[no-any-return]


def _matching(points: Iterable[Any], where: dict[str, Any]) -> list[Any]:
    return [p for p in points if all(p.attributes.get(k) == v for k, v in where.items())]


def _total(points: Points, name: str, where: dict[str, Any]) -> float:
    return sum(_value(p) for p in _matching(points.get(name, ()), where))


def _names(
    points: Points, metrics: Iterable[str], key: str, where: dict[str, Any] | None = None
) -> list[str]:
    """The values of attribute ``key`` on the points of ``metrics`` (matching ``where``), sorted."""
    names = set()
    for metric in metrics:
        for point in _matching(points.get(metric, ()), where or {}):
            value = point.attributes.get(key)
            if isinstance(value, str):
                names.add(value)
    return sorted(names)


def _round(value: float) -> float:
    return round(value, 6)


def _timing(points: Points, kind: str, where: dict[str, Any]) -> dict[str, Any]:
    """Started / count / failures / active and total, mean, max duration of ``kind`` (run, stage)."""
    durations = _matching(points.get(f"pipeline.{kind}.duration", ()), where)
    count = sum(p.count for p in durations)
    total = sum(p.sum for p in durations)
    maxima = [p.max for p in durations if p.count and p.max is not None and math.isfinite(p.max)]
    return {
        "started": _total(points, f"pipeline.{kind}s.started", where),
        "count": count,
        "failures": _total(points, f"pipeline.{kind}s.finished", {**where, "outcome": "failure"}),
        "active": _total(points, f"pipeline.{kind}s.active", where),
        "total_duration_s": _round(total),
        "mean_duration_s": _round(total / count) if count else None,
        "max_duration_s": _round(max(maxima)) if maxima else None,
    }


def _pipelines(points: Points) -> dict[str, Any]:
    report: dict[str, Any] = {}
    metrics = [name for name in points if name.startswith("pipeline.")]
    for name in _names(points, metrics, "pipeline.name"):
        where = {"pipeline.name": name}
        entry = _timing(points, "run", where)
        stages: dict[str, Any] = {}
        for stage in _names(points, metrics, "pipeline.stage", where):
            stage_where = {**where, "pipeline.stage": stage}
            stage_entry = _timing(points, "stage", stage_where)
            items = _total(points, "pipeline.stage.items", stage_where)
            busy = stage_entry["total_duration_s"]
            stage_entry["items"] = items
            stage_entry["items_per_second"] = _round(items / busy) if busy else None
            stages[stage] = stage_entry
        entry["stages"] = stages
        report[name] = entry
    return report


def _resources(pipeline: Runtime | None) -> dict[str, Any] | None:
    from otel_pipeline.hooks.resources import monitor_for

    monitor = monitor_for(pipeline)
    return None if monitor is None else monitor.stats()


def _named_section(points: Points, name_key: str, fields: Fields) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for name in _names(points, [metric for metric, _, _ in fields.values()], name_key):
        entry: dict[str, Any] = {}
        for field, (metric, split, absent) in fields.items():
            where = {name_key: name}
            if split is None:
                found = _matching(points.get(metric, ()), where)
                entry[field] = sum(_value(p) for p in found) if found else absent
            else:
                entry[field] = {
                    value: _total(points, metric, {**where, split: value})
                    for value in _names(points, [metric], split, where)
                }
        section[name] = entry
    return section


def _actions(points: Points) -> dict[str, Any]:
    metric, executor_key, action_key, outcome_key = ACTIONS
    report: dict[str, Any] = {}
    for executor in _names(points, [metric], executor_key):
        actions: dict[str, Any] = {}
        for action in _names(points, [metric], action_key, {executor_key: executor}):
            where = {executor_key: executor, action_key: action}
            actions[action] = {
                outcome: _total(points, metric, {**where, outcome_key: outcome})
                for outcome in _names(points, [metric], outcome_key, where)
            }
        report[executor] = actions
    return report


# -- the table ---------------------------------------------------------------------------------


def _fmt(value: Any, decimals: int = 3) -> str:
    """A cell: "-" for null, integers as such, other numbers with ``decimals`` decimals."""
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{decimals}f}"
    return str(int(value)) if isinstance(value, (int, float)) else str(value)


def _render(report: dict[str, Any], console: Any) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    out = console if console is not None else Console()
    service, generated = report["service"], report["generated_at"]
    if service is None:
        out.print(
            f"\n[bold]Run summary[/bold]: nothing recorded, otel_pipeline is not configured ({generated})"
        )
    else:
        out.print(f"\n[bold]Run summary[/bold] {service['name']} ({generated}; durations in seconds)")
    if report["pipelines"]:
        table = Table(box=box.MINIMAL_HEAVY_HEAD)
        table.add_column("pipeline / stage", no_wrap=True)
        for header in ("runs", "failed", "total", "mean", "max", "items", "items/s"):
            table.add_column(header, justify="right", no_wrap=True)
        for name, entry in report["pipelines"].items():
            table.add_row(*_timing_cells(name, entry), "", "")
            for stage, stage_entry in entry["stages"].items():
                cells = _timing_cells(f"  {stage}", stage_entry)
                table.add_row(*cells, _fmt(stage_entry["items"]), _fmt(stage_entry["items_per_second"], 1))
        out.print(table)
    resources = report["resources"]
    if resources is not None:
        peak_cpu = resources["peak_cpu_utilization"]
        memory = resources["peak_memory_bytes"]
        out.print(
            "resources: peak CPU "
            + ("-" if peak_cpu is None else f"{peak_cpu:.1%}")
            + ", peak memory "
            + ("-" if memory is None else f"{memory / 1048576:.1f} MiB")
            + f", {resources['samples']} samples"
        )
    for section in ("caches", "queues", "actions"):
        rows = [(key, value) for key, value in _flatten(report[section]) if not _unused(section, key, value)]
        if rows:
            section_table = Table(box=box.MINIMAL_HEAVY_HEAD)
            section_table.add_column(section[:-1], no_wrap=True)
            section_table.add_column("", justify="right", no_wrap=True)
            for key, value in rows:
                section_table.add_row(key, _fmt(value))
            out.print(section_table)


def _unused(section: str, key: str, value: Any) -> bool:
    """Rows the table leaves out: a queue's ``dequeued`` while 0.

    ``dequeued`` counts jobs taken off without ``processing()`` (``dequeued()``, a standard-library
    queue's gets); most queues never use it, and "dequeued 0" beside thousands processed reads as
    a fault. The dict and the JSON file keep it.
    """
    return section == "queues" and key.endswith(" dequeued") and value == 0


def _timing_cells(label: str, entry: dict[str, Any]) -> list[str]:
    return [
        label,
        _fmt(entry["count"]),
        _fmt(entry["failures"]),
        _fmt(entry["total_duration_s"]),
        _fmt(entry["mean_duration_s"]),
        _fmt(entry["max_duration_s"]),
    ]


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a b", 1)]``: one table row per leaf."""
    rows: list[tuple[str, Any]] = []
    for key, value in tree.items():
        label = f"{prefix} {key}".strip()
        if isinstance(value, dict):
            rows.extend(_flatten(value, label))
        else:
            rows.append((label, value))
    return rows
