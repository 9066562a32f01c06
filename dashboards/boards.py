"""The otel_pipeline dashboards, built from the metric catalogue.

Each function returns one :class:`~dashboards.model.Board`; :data:`BOARDS` lists them all. Metric
names only ever come from :func:`dashboards.promql.metric` (via the helpers), so every query is
checked against the catalogue when the dashboards are generated.

>>> [board.file_stem for board in all_boards()][:2]
['overview', 'queues']
"""

from __future__ import annotations

from collections.abc import Callable

from dashboards.model import Board, Panel, Query, Row
from dashboards.promql import RATE_WINDOW, by, failure_ratio, histogram_quantile, rate, selected

__all__ = ["BOARDS", "all_boards"]


def _latency(title: str, name: str, *attributes: str, description: str = "") -> Panel:
    """p50/p95/p99 from the histogram's buckets, with exemplars (trace links) on p99."""
    legend = " ".join(["{{job}}", *("{{" + key.replace(".", "_") + "}}" for key in attributes)])
    return Panel(
        title,
        "s",
        tuple(
            Query(
                histogram_quantile(q, name, *attributes), f"p{round(q * 100)} {legend}", exemplars=q == 0.99
            )
            for q in (0.5, 0.95, 0.99)
        ),
        description
        or "Quantiles estimated from the histogram buckets; the dots are exemplars linking to traces.",
    )


def overview() -> Board:
    """Throughput, failures and latency across every hook, per service."""
    return Board(
        "overview",
        "otel_pipeline / Overview",
        "Work done, failures and latency of every instrumented service.",
        (
            Row(
                "Throughput",
                (
                    Panel(
                        "Jobs processed",
                        "ops",
                        (Query(rate("queue.jobs.processed", "outcome"), "{{job}} {{outcome}}"),),
                        "Queue jobs finished per second, by outcome.",
                    ),
                    Panel(
                        "Pipeline stage items",
                        "ops",
                        (Query(rate("pipeline.stage.items", "pipeline.name"), "{{job}} {{pipeline_name}}"),),
                        "Items handled per second by all stages of each pipeline.",
                    ),
                ),
            ),
            Row(
                "Failures",
                (
                    Panel(
                        "Job failure ratio",
                        "percentunit",
                        (Query(failure_ratio("queue.jobs.processed"), "{{job}}"),),
                        "Share of queue jobs that failed.",
                    ),
                    Panel(
                        "Failures by error type",
                        "ops",
                        (
                            Query(
                                rate("queue.jobs.processed", "error.type", matchers='outcome="failure"'),
                                "jobs {{job}} {{error_type}}",
                            ),
                            Query(
                                rate("pipeline.stages.finished", "error.type", matchers='outcome="failure"'),
                                "stages {{job}} {{error_type}}",
                            ),
                        ),
                        "Failed jobs and stages per second, by exception class.",
                    ),
                ),
            ),
            Row("Latency", (_latency("Job duration", "queue.job.duration"),)),
        ),
    )


def queues() -> Board:
    """Queue depth, enqueue vs processed, retries, dead letters and job time."""
    return Board(
        "queues",
        "otel_pipeline / Queues",
        "Jobs in and out of each queue, what is in progress, and how long jobs take.",
        (
            Row(
                "Flow",
                (
                    Panel(
                        "Enqueued vs processed",
                        "ops",
                        (
                            Query(
                                rate("queue.jobs.enqueued", "queue.name"), "enqueued {{job}} {{queue_name}}"
                            ),
                            Query(
                                rate("queue.jobs.processed", "queue.name"), "processed {{job}} {{queue_name}}"
                            ),
                        ),
                        "Jobs put on and taken off each queue per second; a lasting gap: a growing backlog.",
                    ),
                    Panel(
                        "In progress",
                        "short",
                        (
                            Query(
                                f"sum {by('queue.name')} ({selected('queue.jobs.in_progress')})",
                                "{{job}} {{queue_name}}",
                            ),
                        ),
                        "Jobs being processed now.",
                    ),
                    Panel(
                        "Outcomes",
                        "ops",
                        (
                            Query(
                                rate("queue.jobs.processed", "queue.name", "outcome"),
                                "{{queue_name}} {{outcome}}",
                            ),
                        ),
                        "Finished jobs per second by outcome.",
                        stacked=True,
                    ),
                ),
            ),
            Row("Job time", (_latency("Job duration", "queue.job.duration", "queue.name"),)),
        ),
    )


def caches() -> Board:
    """Cache hit ratio, lookups, evictions and size; dedup duplicate ratio."""
    return Board(
        "caches",
        "otel_pipeline / Caches and dedup",
        "How often caches answer, how full they are, and how many duplicates dedup drops.",
        (
            Row(
                "Caches",
                (
                    Panel(
                        "Hit ratio",
                        "percentunit",
                        (
                            Query(
                                f"{rate('cache.hits', 'cache.name')} / ({rate('cache.hits', 'cache.name')}"
                                f" + {rate('cache.misses', 'cache.name')})",
                                "{{job}} {{cache_name}}",
                            ),
                            Query(
                                f"avg {by('cache.name')} ({selected('cache.hit_ratio')})",
                                "since start {{job}} {{cache_name}}",
                            ),
                        ),
                        "Hits over lookups in the window, and the process's ratio since it started.",
                    ),
                    Panel(
                        "Lookups and evictions",
                        "ops",
                        (
                            Query(rate("cache.hits", "cache.name"), "hits {{cache_name}}"),
                            Query(rate("cache.misses", "cache.name"), "misses {{cache_name}}"),
                            Query(rate("cache.evictions", "cache.name"), "evictions {{cache_name}}"),
                        ),
                    ),
                    Panel(
                        "Entries",
                        "short",
                        (
                            Query(
                                f"sum {by('cache.name')} ({selected('cache.entries')})",
                                "entries {{cache_name}}",
                            ),
                            Query(
                                f"sum {by('cache.name')} ({selected('cache.entries.limit')})",
                                "limit {{cache_name}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Size",
                        "bytes",
                        (
                            Query(
                                f"sum {by('cache.name')} ({selected('cache.size')})", "{{job}} {{cache_name}}"
                            ),
                        ),
                    ),
                ),
            ),
            Row(
                "Dedup",
                (
                    Panel(
                        "Duplicate ratio",
                        "percentunit",
                        (
                            Query(
                                f"{rate('dedup.duplicates', 'dedup.name')}"
                                f" / {rate('dedup.checks', 'dedup.name')}",
                                "{{job}} {{dedup_name}}",
                            ),
                            Query(
                                f"avg {by('dedup.name')} ({selected('dedup.duplicate_ratio')})",
                                "since start {{job}} {{dedup_name}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Checks and duplicates",
                        "ops",
                        (
                            Query(rate("dedup.checks", "dedup.name"), "checks {{dedup_name}}"),
                            Query(rate("dedup.duplicates", "dedup.name"), "duplicates {{dedup_name}}"),
                        ),
                    ),
                ),
            ),
        ),
    )


def checkpoints() -> Board:
    """Checkpoint age, saves, save duration and recoveries."""
    return Board(
        "checkpoints",
        "otel_pipeline / Checkpoints",
        "How old each checkpoint is, how saves go, and how often work resumed from one.",
        (
            Row(
                "Checkpoints",
                (
                    Panel(
                        "Age of last successful save",
                        "s",
                        (
                            Query(
                                f"time() - max {by('checkpoint.name')} "
                                f"({selected('checkpoint.last_success.timestamp')})",
                                "{{job}} {{checkpoint_name}}",
                            ),
                        ),
                        "Seconds since each checkpoint was last saved successfully.",
                    ),
                    Panel(
                        "Saves",
                        "ops",
                        (
                            Query(
                                rate("checkpoint.saves", "checkpoint.name", "outcome"),
                                "{{checkpoint_name}} {{outcome}}",
                            ),
                        ),
                        stacked=True,
                    ),
                    _latency("Save duration", "checkpoint.save.duration", "checkpoint.name"),
                    Panel(
                        "Recoveries",
                        "short",
                        (
                            Query(
                                f"sum {by('checkpoint.name')} "
                                f"(increase({selected('checkpoint.recoveries')}[{RATE_WINDOW}]))",
                                "{{job}} {{checkpoint_name}}",
                            ),
                        ),
                        "Times work resumed from the checkpoint in the window.",
                    ),
                ),
            ),
        ),
    )


def pipelines() -> Board:
    """Pipeline runs and stages: duration, throughput, failures."""
    return Board(
        "pipelines",
        "otel_pipeline / Pipelines and stages",
        "Runs and stages of each pipeline: how long they take, how much they process, how often they fail.",
        (
            Row(
                "Runs",
                (
                    Panel(
                        "Runs",
                        "ops",
                        (
                            Query(
                                rate("pipeline.runs.started", "pipeline.name"), "started {{pipeline_name}}"
                            ),
                            Query(
                                rate("pipeline.runs.finished", "pipeline.name", "outcome"),
                                "{{outcome}} {{pipeline_name}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Active",
                        "short",
                        (
                            Query(
                                f"sum {by('pipeline.name')} ({selected('pipeline.runs.active')})",
                                "runs {{pipeline_name}}",
                            ),
                            Query(
                                f"sum {by('pipeline.name', 'pipeline.stage')} "
                                f"({selected('pipeline.stages.active')})",
                                "stage {{pipeline_name}}/{{pipeline_stage}}",
                            ),
                        ),
                    ),
                    _latency("Run duration", "pipeline.run.duration", "pipeline.name"),
                ),
            ),
            Row(
                "Stages",
                (
                    Panel(
                        "Stage throughput",
                        "ops",
                        (
                            Query(
                                rate("pipeline.stage.items", "pipeline.name", "pipeline.stage"),
                                "{{pipeline_name}}/{{pipeline_stage}}",
                            ),
                        ),
                        "Items processed per second by each stage.",
                    ),
                    Panel(
                        "Stage failure ratio",
                        "percentunit",
                        (
                            Query(
                                failure_ratio("pipeline.stages.finished", "pipeline.name", "pipeline.stage"),
                                "{{pipeline_name}}/{{pipeline_stage}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Stages started vs finished",
                        "ops",
                        (
                            Query(
                                rate("pipeline.stages.started", "pipeline.name", "pipeline.stage"),
                                "started {{pipeline_name}}/{{pipeline_stage}}",
                            ),
                            Query(
                                rate(
                                    "pipeline.stages.finished", "pipeline.name", "pipeline.stage", "outcome"
                                ),
                                "{{outcome}} {{pipeline_name}}/{{pipeline_stage}}",
                            ),
                        ),
                    ),
                    _latency("Stage duration", "pipeline.stage.duration", "pipeline.name", "pipeline.stage"),
                ),
            ),
        ),
    )


def resilience() -> Board:
    """Circuit breakers."""
    state = selected("circuit_breaker.state")
    return Board(
        "resilience",
        "otel_pipeline / Resilience",
        "Circuit breaker states and calls.",
        (
            Row(
                "Circuit breakers",
                (
                    Panel(
                        "Breakers open",
                        "short",
                        (Query(f"sum by (job) ({state} == bool 1)", "{{job}}"),),
                        "Breakers in the open state now.",
                        kind="stat",
                        width=6,
                    ),
                    Panel(
                        "State",
                        "short",
                        (
                            Query(
                                f"max {by('circuit_breaker.name')} ({state})",
                                "{{job}} {{circuit_breaker_name}}",
                            ),
                        ),
                        "0 closed, 1 open, 2 half-open.",
                        width=18,
                    ),
                    Panel(
                        "Calls",
                        "ops",
                        (
                            Query(
                                rate("circuit_breaker.calls", "circuit_breaker.name", "outcome"),
                                "{{circuit_breaker_name}} {{outcome}}",
                            ),
                        ),
                        "Calls through each breaker by outcome (rejected: refused while open).",
                        stacked=True,
                    ),
                    Panel(
                        "Trips and transitions",
                        "short",
                        (
                            Query(
                                f"sum {by('circuit_breaker.name')} "
                                f"(increase({selected('circuit_breaker.trips')}[{RATE_WINDOW}]))",
                                "trips {{circuit_breaker_name}}",
                            ),
                            Query(
                                f"sum {by('circuit_breaker.name', 'circuit_breaker.state.to')} "
                                f"(increase({selected('circuit_breaker.transitions')}[{RATE_WINDOW}]))",
                                "to {{circuit_breaker_state_to}} {{circuit_breaker_name}}",
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


def resources() -> Board:
    """Process CPU, memory, threads, file descriptors and disk I/O."""

    def gauge(name: str) -> str:
        return f"sum by (job, instance) ({selected(name)})"

    return Board(
        "resources",
        "otel_pipeline / Process resources",
        "CPU, memory, threads, file descriptors and disk I/O of each process (op.monitor_resources()).",
        (
            Row(
                "Process",
                (
                    Panel(
                        "CPU utilization",
                        "percentunit",
                        (Query(gauge("process.cpu.utilization"), "{{job}} {{instance}}"),),
                        "Share of one core used by the process.",
                    ),
                    Panel(
                        "CPU time by mode",
                        "percentunit",
                        (
                            Query(
                                f"sum by (job, instance, cpu_mode) "
                                f"(rate({selected('process.cpu.time')}[{RATE_WINDOW}]))",
                                "{{instance}} {{cpu_mode}}",
                            ),
                        ),
                        stacked=True,
                    ),
                    Panel(
                        "Memory",
                        "bytes",
                        (
                            Query(gauge("process.memory.usage"), "resident {{instance}}"),
                            Query(gauge("process.memory.virtual"), "virtual {{instance}}"),
                        ),
                    ),
                    Panel(
                        "Threads and file descriptors",
                        "short",
                        (
                            Query(gauge("process.thread.count"), "threads {{instance}}"),
                            Query(gauge("process.unix.file_descriptor.count"), "fds {{instance}}"),
                        ),
                    ),
                    Panel(
                        "Disk I/O",
                        "Bps",
                        (
                            Query(
                                f"sum by (job, instance, disk_io_direction) "
                                f"(rate({selected('process.disk.io')}[{RATE_WINDOW}]))",
                                "{{instance}} {{disk_io_direction}}",
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


BOARDS: tuple[Callable[[], Board], ...] = (
    overview,
    queues,
    caches,
    checkpoints,
    pipelines,
    resilience,
    resources,
)


def all_boards() -> list[Board]:
    """Every dashboard, in :data:`BOARDS` order."""
    return [make() for make in BOARDS]
