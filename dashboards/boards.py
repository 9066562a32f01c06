"""The otel_pipeline dashboards, built from the metric catalogue.

Each function returns one :class:`~dashboards.model.Board`; :data:`BOARDS` lists them all. Metric
names only ever come from :func:`dashboards.promql.metric` (through the helpers), so every query is
checked against the catalogue when the dashboards are generated. A catalogue metric none of them
shows gets a default panel (:mod:`dashboards.defaults`) unless :data:`NOT_ON_DASHBOARDS` lists it.

>>> [board.file_stem for board in all_boards()][:2]
['overview', 'queues']
"""

from __future__ import annotations

from collections.abc import Callable

from dashboards.defaults import default_board, uncovered
from dashboards.model import Board, Panel, Query, Row
from dashboards.promql import (
    RATE_WINDOW,
    by,
    failed_ratio,
    failure_ratio,
    histogram_quantile,
    plus_optional,
    rate,
    selected,
    share,
)
from otel_pipeline._internal.promnames import label_name
from otel_pipeline.hooks import all_metrics

__all__ = ["BOARDS", "NOT_ON_DASHBOARDS", "all_boards"]


def _legend(*attributes: str, prefix: str = "") -> str:
    """``"<prefix> {{job}} {{label}} ..."``: the job and each attribute's label."""
    parts = [prefix] if prefix else []
    return " ".join([*parts, "{{job}}", *("{{" + label_name(key) + "}}" for key in attributes)])


def _gauge(name: str, *attributes: str, aggregation: str = "sum") -> str:
    return f"{aggregation} {by(*attributes)} ({selected(name)})"


def _increase(name: str, *attributes: str, matchers: str = "") -> str:
    return f"sum {by(*attributes)} (increase({selected(name, matchers)}[{RATE_WINDOW}]))"


def _age(name: str, *attributes: str) -> str:
    """Seconds since the Unix time a gauge holds."""
    return f"time() - max {by(*attributes)} ({selected(name)})"


def _latency(title: str, name: str, *attributes: str, description: str = "") -> Panel:
    """p50/p95/p99 from the histogram's buckets, with exemplars (trace links) on p99."""
    return Panel(
        title,
        "s",
        tuple(
            Query(
                histogram_quantile(q, name, *attributes),
                _legend(*attributes, prefix=f"p{round(q * 100)}"),
                exemplars=q == 0.99,
            )
            for q in (0.5, 0.95, 0.99)
        ),
        description
        or "Quantiles estimated from the histogram buckets; the dots are exemplars linking to traces.",
    )


def _rates(
    title: str,
    unit: str,
    *queries: tuple[str, str],
    description: str = "",
    stacked: bool = False,
    width: int = 12,
) -> Panel:
    """A time series panel of ``(expr, legend)`` queries."""
    series = tuple(Query(expr, legend) for expr, legend in queries)
    return Panel(title, unit, series, description, stacked=stacked, width=width)


def overview() -> Board:
    """Throughput, failures and latency across every hook, per service."""
    return Board(
        "overview",
        "otel_pipeline / Overview",
        "Events, actions, jobs and stages of every instrumented service: rate, failures, latency.",
        (
            Row(
                "Throughput",
                (
                    _rates(
                        "Events processed",
                        "ops",
                        (
                            rate("events.processed", "event.source", "outcome"),
                            _legend("event.source", "outcome"),
                        ),
                        description="Events handled per second, by source and outcome.",
                    ),
                    _rates(
                        "Actions executed",
                        "ops",
                        (
                            rate("actions.executed", "action.name", "outcome"),
                            _legend("action.name", "outcome"),
                        ),
                        description="Actions run per second (success, failure, timeout).",
                    ),
                    _rates(
                        "Jobs and stage items",
                        "ops",
                        (rate("queue.jobs.processed", "queue.name"), _legend("queue.name", prefix="jobs")),
                        (
                            rate("pipeline.stage.items", "pipeline.name"),
                            _legend("pipeline.name", prefix="items"),
                        ),
                        description="Queue jobs finished, and items handled by pipeline stages, per second.",
                    ),
                    _rates(
                        "In flight",
                        "short",
                        (
                            _gauge("events.in_flight", "event.source"),
                            _legend("event.source", prefix="events"),
                        ),
                        (
                            _gauge("queue.jobs.in_progress", "queue.name"),
                            _legend("queue.name", prefix="jobs"),
                        ),
                        description="Events and jobs being processed now.",
                    ),
                ),
            ),
            Row(
                "Failures",
                (
                    _rates(
                        "Failure ratio",
                        "percentunit",
                        (failure_ratio("events.processed"), "events {{job}}"),
                        (failure_ratio("actions.executed"), "actions {{job}}"),
                        (failed_ratio("queue.jobs.processed"), "jobs {{job}}"),
                        (failure_ratio("pipeline.stages.finished"), "stages {{job}}"),
                        description="Share of events, actions (failures and timeouts) and stages not "
                        "finishing with success, and of jobs failing (a retry is not a failure).",
                    ),
                    _rates(
                        "Failures by error type",
                        "ops",
                        (
                            rate("events.processed", "error.type", matchers='outcome!="success"'),
                            _legend("error.type", prefix="events"),
                        ),
                        (
                            rate("actions.executed", "error.type", matchers='outcome!="success"'),
                            _legend("error.type", prefix="actions"),
                        ),
                        (
                            rate("queue.jobs.processed", "error.type", matchers='outcome!="success"'),
                            _legend("error.type", prefix="jobs"),
                        ),
                        description="Failures per second, by exception class.",
                    ),
                ),
            ),
            Row(
                "Latency",
                (
                    _latency("Event processing duration", "events.processing.duration"),
                    _latency("Action duration", "actions.duration"),
                ),
            ),
        ),
    )


def queues() -> Board:
    """Queue depth, enqueue vs processed, retries, dead letters, workers, wait and job time."""
    return Board(
        "queues",
        "otel_pipeline / Queues",
        "Backlog of each queue, jobs in and out, retries and dead letters, workers, wait and job time.",
        (
            Row(
                "Backlog",
                (
                    _rates(
                        "Depth",
                        "short",
                        (_gauge("queue.depth", "queue.name"), _legend("queue.name")),
                        description="Jobs waiting on each queue now.",
                    ),
                    _rates(
                        "Utilization",
                        "percentunit",
                        (_gauge("queue.utilization", "queue.name", aggregation="max"), _legend("queue.name")),
                        description="Depth over capacity, for queues given a capacity.",
                    ),
                    _rates(
                        "Dead-letter depth",
                        "short",
                        (_gauge("queue.dead_letter.depth", "queue.name"), _legend("queue.name")),
                        description="Jobs parked in each dead-letter queue now.",
                    ),
                ),
            ),
            Row(
                "Flow",
                (
                    _rates(
                        "Enqueued vs taken off",
                        "ops",
                        (rate("queue.jobs.enqueued", "queue.name"), _legend("queue.name", prefix="enqueued")),
                        (
                            plus_optional(
                                rate("queue.jobs.processed", "queue.name"),
                                rate("queue.jobs.dequeued", "queue.name"),
                            ),
                            _legend("queue.name", prefix="taken off"),
                        ),
                        description="Jobs per second put on, and taken off (processed, or dequeued without "
                        "processing()); enqueued above taken off for long: a growing backlog.",
                    ),
                    _rates(
                        "Outcomes",
                        "ops",
                        (
                            rate("queue.jobs.processed", "queue.name", "outcome"),
                            _legend("queue.name", "outcome"),
                        ),
                        stacked=True,
                    ),
                    _rates(
                        "Retries, dead letters, replays",
                        "short",
                        (
                            _increase("queue.jobs.retried", "queue.name"),
                            _legend("queue.name", prefix="retried"),
                        ),
                        (
                            _increase("queue.jobs.dead_lettered", "queue.name", "reason"),
                            _legend("queue.name", "reason", prefix="dead-lettered"),
                        ),
                        (
                            _increase("queue.jobs.replayed", "queue.name"),
                            _legend("queue.name", prefix="replayed"),
                        ),
                        description="Jobs retried, dead-lettered (by reason) and replayed in the window.",
                    ),
                ),
            ),
            Row(
                "Workers",
                (
                    _rates(
                        "Jobs in progress",
                        "short",
                        (_gauge("queue.jobs.in_progress", "queue.name"), _legend("queue.name")),
                    ),
                    _rates(
                        "Workers by state",
                        "short",
                        (_gauge("queue.workers", "queue.name", "state"), _legend("queue.name", "state")),
                        description="Workers busy with a job (active) or waiting for one (idle).",
                        stacked=True,
                    ),
                ),
            ),
            Row(
                "Time",
                (
                    _rates(
                        "Oldest job's age",
                        "s",
                        (
                            _gauge("queue.oldest_job.age", "queue.name", aggregation="max"),
                            _legend("queue.name"),
                        ),
                        description="How long the job waiting longest has waited, now (0: none waits); a "
                        "line that climbs while jobs wait is a stalled queue. Instrumented queues and "
                        "queues given observe_oldest_age().",
                    ),
                    _latency("Wait time", "queue.job.wait_time", "queue.name"),
                    _latency("Job duration", "queue.job.duration", "queue.name"),
                ),
            ),
            Row(
                "Jobs by type (Celery tasks, RQ functions)",
                (
                    _rates(
                        "Outcomes by job type",
                        "ops",
                        (
                            rate("queue.jobs.processed", "queue.name", "job.type", "outcome"),
                            _legend("queue.name", "job.type", "outcome"),
                        ),
                        description="Jobs finished per second by job type (a Celery task's name, an RQ "
                        "job's function) and outcome: success, failure, retry, rejected, ignored, revoked, "
                        "stopped, canceled.",
                        stacked=True,
                    ),
                    _rates(
                        "Failure ratio by job type",
                        "percentunit",
                        (
                            failed_ratio("queue.jobs.processed", "queue.name", "job.type"),
                            _legend("queue.name", "job.type"),
                        ),
                        description="Share of each job type's jobs that failed (retries, rejections and "
                        "revocations are not failures).",
                    ),
                    _rates(
                        "Failures by job type and error",
                        "ops",
                        (
                            rate(
                                "queue.jobs.processed", "job.type", "error.type", matchers='outcome="failure"'
                            ),
                            _legend("job.type", "error.type"),
                        ),
                        stacked=True,
                    ),
                    _latency("Wait time by job type", "queue.job.wait_time", "job.type"),
                    _latency("Duration by job type", "queue.job.duration", "job.type"),
                ),
            ),
        ),
    )


def caches() -> Board:
    """Cache hit ratio, lookups, evictions and size; dedup duplicate ratio."""
    hits, misses = rate("cache.hits", "cache.name"), rate("cache.misses", "cache.name")
    return Board(
        "caches",
        "otel_pipeline / Caches and dedup",
        "How often caches answer, how full they are, and how many duplicates dedup drops.",
        (
            Row(
                "Caches",
                (
                    _rates(
                        "Hit ratio",
                        "percentunit",
                        (share(hits, f"({hits} + {misses})"), _legend("cache.name")),
                        (
                            _gauge("cache.hit_ratio", "cache.name", aggregation="avg"),
                            _legend("cache.name", prefix="since start"),
                        ),
                        description="Hits over lookups in the window; the process's ratio since it started.",
                    ),
                    _rates(
                        "Lookups and evictions",
                        "ops",
                        (hits, _legend("cache.name", prefix="hits")),
                        (misses, _legend("cache.name", prefix="misses")),
                        (rate("cache.evictions", "cache.name"), _legend("cache.name", prefix="evictions")),
                    ),
                    _rates(
                        "Entries",
                        "short",
                        (_gauge("cache.entries", "cache.name"), _legend("cache.name", prefix="entries")),
                        (_gauge("cache.entries.limit", "cache.name"), _legend("cache.name", prefix="limit")),
                    ),
                    _rates("Size", "bytes", (_gauge("cache.size", "cache.name"), _legend("cache.name"))),
                ),
            ),
            Row(
                "Dedup",
                (
                    _rates(
                        "Duplicate ratio",
                        "percentunit",
                        (
                            share(rate("dedup.duplicates", "dedup.name"), rate("dedup.checks", "dedup.name")),
                            _legend("dedup.name"),
                        ),
                        (
                            _gauge("dedup.duplicate_ratio", "dedup.name", aggregation="avg"),
                            _legend("dedup.name", prefix="since start"),
                        ),
                    ),
                    _rates(
                        "Checks and duplicates",
                        "ops",
                        (rate("dedup.checks", "dedup.name"), _legend("dedup.name", prefix="checks")),
                        (rate("dedup.duplicates", "dedup.name"), _legend("dedup.name", prefix="duplicates")),
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
                    _rates(
                        "Age of last successful save",
                        "s",
                        (
                            _age("checkpoint.last_success.timestamp", "checkpoint.name"),
                            _legend("checkpoint.name"),
                        ),
                        description="Seconds since each checkpoint was last saved successfully.",
                    ),
                    _rates(
                        "Saves",
                        "ops",
                        (
                            rate("checkpoint.saves", "checkpoint.name", "outcome"),
                            _legend("checkpoint.name", "outcome"),
                        ),
                        stacked=True,
                    ),
                    _latency("Save duration", "checkpoint.save.duration", "checkpoint.name"),
                    _rates(
                        "Recoveries",
                        "short",
                        (_increase("checkpoint.recoveries", "checkpoint.name"), _legend("checkpoint.name")),
                        description="Times work resumed from the checkpoint in the window.",
                    ),
                ),
            ),
        ),
    )


def pipelines() -> Board:
    """Pipeline runs and stages: duration, throughput, failures."""
    stage = ("pipeline.name", "pipeline.stage")
    return Board(
        "pipelines",
        "otel_pipeline / Pipelines and stages",
        "Runs and stages of each pipeline: how long they take, how much they process, how often they fail.",
        (
            Row(
                "Runs",
                (
                    _rates(
                        "Runs",
                        "ops",
                        (
                            rate("pipeline.runs.started", "pipeline.name"),
                            _legend("pipeline.name", prefix="started"),
                        ),
                        (
                            rate("pipeline.runs.finished", "pipeline.name", "outcome"),
                            _legend("pipeline.name", "outcome"),
                        ),
                    ),
                    _rates(
                        "Active",
                        "short",
                        (
                            _gauge("pipeline.runs.active", "pipeline.name"),
                            _legend("pipeline.name", prefix="runs"),
                        ),
                        (_gauge("pipeline.stages.active", *stage), _legend(*stage, prefix="stage")),
                    ),
                    _latency("Run duration", "pipeline.run.duration", "pipeline.name"),
                ),
            ),
            Row(
                "Stages",
                (
                    _rates(
                        "Stage throughput",
                        "ops",
                        (rate("pipeline.stage.items", *stage), _legend(*stage)),
                        description="Items processed per second by each stage.",
                    ),
                    _rates(
                        "Stage failure ratio",
                        "percentunit",
                        (failure_ratio("pipeline.stages.finished", *stage), _legend(*stage)),
                    ),
                    _rates(
                        "Stages started vs finished",
                        "ops",
                        (rate("pipeline.stages.started", *stage), _legend(*stage, prefix="started")),
                        (rate("pipeline.stages.finished", *stage, "outcome"), _legend(*stage, "outcome")),
                    ),
                    _latency("Stage duration", "pipeline.stage.duration", *stage),
                ),
            ),
        ),
    )


def resilience() -> Board:
    """Circuit breakers, connection pools, HTTP server and client RED, health checks and refreshes."""
    pool = "db.client.connection.pool.name"
    server, client = "http.server.request.duration", "http.client.request.duration"
    server_all = rate(server, suffix="_count")
    server_5xx = rate(server, matchers='http_response_status_code=~"5.."', suffix="_count")
    client_all = rate(client, "server.address", suffix="_count")
    client_errors = rate(client, "server.address", matchers='error_type!=""', suffix="_count")
    return Board(
        "resilience",
        "otel_pipeline / Resilience",
        "Circuit breakers, connection pools, HTTP requests served and made, health checks and refresh jobs.",
        (
            Row(
                "Circuit breakers",
                (
                    Panel(
                        "Breakers open",
                        "short",
                        (Query(f"sum by (job) ({selected('circuit_breaker.state')} == bool 1)", "{{job}}"),),
                        "Breakers in the open state now.",
                        kind="stat",
                        width=6,
                    ),
                    _rates(
                        "State",
                        "short",
                        (
                            _gauge("circuit_breaker.state", "circuit_breaker.name", aggregation="max"),
                            _legend("circuit_breaker.name"),
                        ),
                        description="0 closed, 1 open, 2 half-open.",
                        width=18,
                    ),
                    _rates(
                        "Calls",
                        "ops",
                        (
                            rate("circuit_breaker.calls", "circuit_breaker.name", "outcome"),
                            _legend("circuit_breaker.name", "outcome"),
                        ),
                        description="Calls through each breaker by outcome (rejected: refused while open).",
                        stacked=True,
                    ),
                    _rates(
                        "Trips and transitions",
                        "short",
                        (
                            _increase("circuit_breaker.trips", "circuit_breaker.name"),
                            _legend("circuit_breaker.name", prefix="trips"),
                        ),
                        (
                            _increase(
                                "circuit_breaker.transitions",
                                "circuit_breaker.name",
                                "circuit_breaker.state.to",
                            ),
                            _legend("circuit_breaker.name", "circuit_breaker.state.to", prefix="to"),
                        ),
                    ),
                ),
            ),
            Row(
                "Connection pools",
                (
                    _rates(
                        "Utilization",
                        "percentunit",
                        (_gauge("connection_pool.utilization", pool, aggregation="max"), _legend(pool)),
                        description="Connections in use over the pool's maximum.",
                    ),
                    _rates(
                        "Connections",
                        "short",
                        (
                            _gauge("db.client.connection.count", pool, "db.client.connection.state"),
                            _legend(pool, "db.client.connection.state"),
                        ),
                        (_gauge("db.client.connection.max", pool), _legend(pool, prefix="max")),
                    ),
                    _rates(
                        "Waiting and timeouts",
                        "short",
                        (
                            _gauge("db.client.connection.pending_requests", pool),
                            _legend(pool, prefix="waiting"),
                        ),
                        (_increase("db.client.connection.timeouts", pool), _legend(pool, prefix="timeouts")),
                        description="Requests waiting for a connection now; waits that timed out.",
                    ),
                    _latency("Wait for a connection", "db.client.connection.wait_time", pool),
                    _latency("Connection use time", "db.client.connection.use_time", pool),
                ),
            ),
            Row(
                "HTTP server",
                (
                    _rates(
                        "Requests",
                        "reqps",
                        (
                            rate(server, "http.route", "http.response.status_code", suffix="_count"),
                            _legend("http.route", "http.response.status_code"),
                        ),
                    ),
                    _rates(
                        "5xx ratio",
                        "percentunit",
                        (share(server_5xx, server_all), "{{job}}"),
                        description="Share of requests answered with a 5xx status.",
                    ),
                    _latency("Request duration", server, "http.route"),
                    _rates(
                        "Active requests",
                        "short",
                        (_gauge("http.server.active_requests"), "{{job}}"),
                    ),
                ),
            ),
            Row(
                "HTTP client",
                (
                    _rates(
                        "Requests",
                        "reqps",
                        (
                            rate(client, "server.address", "http.response.status_code", suffix="_count"),
                            _legend("server.address", "http.response.status_code"),
                        ),
                    ),
                    _rates(
                        "Error ratio",
                        "percentunit",
                        (share(client_errors, client_all), _legend("server.address")),
                        description="Share of failed requests (error.type set: error status or no response).",
                    ),
                    _latency("Request duration", client, "server.address"),
                ),
            ),
            Row(
                "Health checks and refresh jobs",
                (
                    _rates(
                        "Target status",
                        "short",
                        (
                            _gauge("health.target.status", "health.target.name", aggregation="max"),
                            _legend("health.target.name"),
                        ),
                        description="0 unknown, 1 healthy, 2 degraded, 3 unhealthy.",
                    ),
                    _rates(
                        "Probes",
                        "ops",
                        (
                            rate("health.target.probes", "health.target.name", "outcome"),
                            _legend("health.target.name", "outcome"),
                        ),
                        (
                            _gauge("health.target.success_rate", "health.target.name", aggregation="avg"),
                            _legend("health.target.name", prefix="success rate"),
                        ),
                        (
                            _gauge(
                                "health.target.consecutive_failures", "health.target.name", aggregation="max"
                            ),
                            _legend("health.target.name", prefix="consecutive failures"),
                        ),
                    ),
                    _rates(
                        "Refresh age and interval",
                        "s",
                        (_age("refresh.last_success", "refresh.name"), _legend("refresh.name", prefix="age")),
                        (
                            _gauge("refresh.interval", "refresh.name", aggregation="max"),
                            _legend("refresh.name", prefix="interval"),
                        ),
                        (
                            _gauge("refresh.in_progress", "refresh.name"),
                            _legend("refresh.name", prefix="in progress"),
                        ),
                        description="Seconds since each refresh job last succeeded; how often it should run.",
                    ),
                    _latency("Refresh duration", "refresh.duration", "refresh.name"),
                ),
            ),
        ),
    )


def resources() -> Board:
    """Process CPU, memory, threads, file descriptors, disk I/O, event-loop lag."""
    process = ("instance",)

    def gauge(name: str) -> str:
        return f"sum by (job, instance) ({selected(name)})"

    return Board(
        "resources",
        "otel_pipeline / Process resources",
        "CPU, memory, threads, file descriptors, disk I/O (op.monitor_resources()) and event-loop lag "
        "(op.monitor_event_loop()) of each process.",
        (
            Row(
                "Process",
                (
                    _rates(
                        "CPU utilization",
                        "percentunit",
                        (gauge("process.cpu.utilization"), "{{job}} {{instance}}"),
                        description="Share of one core used by the process.",
                    ),
                    _rates(
                        "CPU time by mode",
                        "percentunit",
                        (
                            rate("process.cpu.time", "instance", "cpu.mode"),
                            "{{instance}} {{cpu_mode}}",
                        ),
                        stacked=True,
                    ),
                    _rates(
                        "Memory",
                        "bytes",
                        (gauge("process.memory.usage"), "resident {{instance}}"),
                        (gauge("process.memory.virtual"), "virtual {{instance}}"),
                    ),
                    _rates(
                        "Threads and file descriptors",
                        "short",
                        (gauge("process.thread.count"), "threads {{instance}}"),
                        (gauge("process.unix.file_descriptor.count"), "fds {{instance}}"),
                    ),
                    _rates(
                        "Disk I/O",
                        "Bps",
                        (
                            rate("process.disk.io", "instance", "disk.io.direction"),
                            "{{instance}} {{disk_io_direction}}",
                        ),
                    ),
                    _latency(
                        "Event loop lag",
                        "asyncio.event_loop.lag",
                        *process,
                        description="How late the asyncio event loop runs a callback due at a known time "
                        "(op.monitor_event_loop()); a blocked loop delays every request it serves.",
                    ),
                ),
            ),
        ),
    )


#: Catalogue metrics no dashboard shows, and why: a panel must show data in a normal run.
NOT_ON_DASHBOARDS: dict[str, str] = {
    "stats.collection.duration": "recorded only when something requests /stats",
    "stats.collector.runs": "recorded only when something requests /stats",
}

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
    """Every dashboard, in :data:`BOARDS` order, then the default panels' board if a metric needs one."""
    boards = [make() for make in BOARDS]
    extra = default_board(uncovered(all_metrics(), boards, NOT_ON_DASHBOARDS))
    return boards if extra is None else [*boards, extra]
