"""A process that uses every hook serves /metrics; a real HTTP scrape has every catalogue family,
with exactly the values recorded, in both exposition formats, and promtool accepts it.

The process runs in a subprocess (a fresh interpreter: nothing left over from other tests) with
``time.perf_counter`` and ``time.time`` replaced by a scripted clock, so every duration,
histogram bucket and timestamp is known exactly. Durations are binary fractions (1/32 s, 1/4 s,
...) so that sums are exact too.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from otel_pipeline import DEFAULT_DURATION_BUCKETS
from otel_pipeline._internal.promnames import prometheus_name, prometheus_type
from otel_pipeline.hooks import all_metrics
from tests.support.prometheus import promtool_check_metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
A, B, C = 0.03125, 0.25, 1.5  # durations: in the 0.05, 0.25 and 2.5 buckets
CHECKPOINT_WALL, REFRESH_WALL = 1_700_000_100.0, 1_700_000_200.0

CHILD = r"""
import asyncio
import functools
import io
import json
import queue as stdlib_queue
import sys
import time

CLOCK = {"perf": 1024.0, "wall": 1_700_000_000.0}
A, B, C = 0.03125, 0.25, 1.5


def advance(seconds):
    CLOCK["perf"] += seconds
    CLOCK["wall"] += seconds


time.perf_counter = lambda: CLOCK["perf"]
time.time = lambda: CLOCK["wall"]

import otel_pipeline as op  # after the clock is in place: hooks read it through `time`

pipeline = op.configure(service_name="all-hooks", exporter="prometheus", prometheus_port=0)


def fails(block, error):
    try:
        with block:
            raise error
    except type(error):
        pass


orders = op.events("orders")
for seconds in (A, B):
    with orders.process("order.created"):
        advance(seconds)
with orders.process("order.cancelled", event_id="o-3"):
    advance(A)
fails(orders.process("order.cancelled"), ValueError("no reason"))

notifier = op.actions("notifier")
with notifier.track("send_email"):
    advance(A)
with notifier.track("send_sms", timeout=1.0):
    advance(C)  # ran past its timeout
fails(notifier.track("send_push"), ConnectionError("gateway down"))

emails = op.queue("emails", capacity=10)
emails.enqueued(3)
with emails.worker():
    with emails.processing(enqueued_at=time.time() - 0.5, job_id="job-1"):
        advance(A)
    fails(emails.processing(), KeyError("job-2"))
emails.retried()
emails.dead_lettered(reason="max_attempts")
emails.replayed()
emails.dequeued(enqueued_at=time.time() - 2.0)
headers = {}
emails.enqueued(job_type="welcome", carrier=headers)  # the trace context goes into the headers
with emails.processing(job_type="welcome", carrier=headers):
    pass

jobs = stdlib_queue.Queue(maxsize=4)
op.instrument_queue(jobs, "jobs")
jobs.put("a")
jobs.put("b")
advance(0.125)
jobs.get()


@op.cache("squares").wrap
@functools.lru_cache(maxsize=2)
def square(x):
    return x * x


for x in (2, 2, 3, 4):
    square(x)
users = op.cache("users")
users.hit(3)
users.miss()
users.evicted(2)
users.set_size(bytes=4096)

for duplicate in (False, True, False, False):
    op.dedup("events").check(duplicate=duplicate)

listener = op.checkpoint("listener-1")
listener.recovered(saved_at=time.time() - 60)
CLOCK["wall"] = 1_700_000_100.0
with listener.save():
    advance(A)
fails(listener.save(), OSError("disk full"))

breaker = op.circuit_breaker("ollama")
breaker.success()
breaker.failure()
breaker.record_state("open")
breaker.rejected()
breaker.record_state("half_open")

pool = op.connection_pool("postgres", max_size=4)
with pool.waiting():
    advance(A)
with pool.connection():
    advance(B)
fails(pool.waiting(), TimeoutError("no connection"))


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


environ = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/orders/7",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "80",
    "wsgi.url_scheme": "http",
    "wsgi.input": io.BytesIO(),
}
body = op.WSGIMiddleware(app, route=lambda environ: "/orders/{id}")(environ, lambda *args: None)
advance(A)  # the request ends when the server closes the body
assert b"".join(body) == b"ok"
body.close()
with op.http_client("payments").request("POST", "https://payments.example/charges") as req:
    advance(B)
    req.status_code = 201

ollama = op.health_target("ollama", unhealthy_after=2)
ollama.success()
ollama.failure()
CLOCK["wall"] = 1_700_000_200.0
with op.refresh_job("exchange-rates", interval=300).running():
    advance(A)
op.register_collector("build", lambda: {"version": "1"})

with op.pipeline("nightly-export") as run:
    with run.stage("fetch") as stage:
        advance(B)
        stage.processed(120)
    fails(run.stage("write"), ConnectionError("sink down"))


class FakeProcess:
    def sample(self):
        return op.ResourceSample(
            cpu_utilization=0.25, cpu_user=1.5, cpu_system=0.5, memory_usage=50_000_000,
            memory_virtual=400_000_000, threads=7, open_fds=12, disk_read=4096, disk_write=8192,
        )


op.monitor_resources(interval=3600, source=FakeProcess())


class ScriptedLoop(asyncio.SelectorEventLoop):
    def time(self):
        return CLOCK["perf"]


async def lagging():
    monitor = op.monitor_event_loop(interval=0.5)
    advance(0.5 + B)  # the loop is blocked until B past the sample's due time
    while monitor.samples < 1:
        await asyncio.sleep(0)
    monitor.stop()


loop = ScriptedLoop()
loop.run_until_complete(lagging())
loop.close()

print(json.dumps({"url": pipeline.server.url}), flush=True)
sys.stdin.readline()  # the test scrapes, then tells us to stop
print(json.dumps({"shutdown": op.shutdown()}), flush=True)
"""

Key = tuple[str, frozenset[tuple[str, Any]]]


def sample(name: str, value: float, **labels: Any) -> dict[Key, float]:
    return {(name, frozenset(labels.items())): value}


def histogram(name: str, values: Iterable[float], **labels: Any) -> dict[Key, float]:
    """Every sample of one histogram series (cumulative buckets, sum, count) for ``values``."""
    values = list(values)
    found: dict[Key, float] = {}
    for bound in (*DEFAULT_DURATION_BUCKETS, math.inf):
        found.update(sample(f"{name}_bucket", sum(v <= bound for v in values), **labels, le=bound))
    found.update(sample(f"{name}_sum", sum(values), **labels))
    found.update(sample(f"{name}_count", len(values), **labels))
    return found


def expected() -> dict[Key, float]:
    created = {"event_source": "orders", "event_type": "order.created"}
    cancelled = {"event_source": "orders", "event_type": "order.cancelled"}
    notifier = {"action_executor": "notifier"}
    emails, jobs = {"queue_name": "emails"}, {"queue_name": "jobs"}
    squares, users = {"cache_name": "squares"}, {"cache_name": "users"}
    listener = {"checkpoint_name": "listener-1"}
    breaker = {"circuit_breaker_name": "ollama"}
    pool = {"db_client_connection_pool_name": "postgres"}
    served = {
        "http_request_method": "GET",
        "url_scheme": "http",
        "http_route": "/orders/{id}",
        "http_response_status_code": "200",
        "network_protocol_version": "1.1",
    }
    sent = {
        "http_request_method": "POST",
        "server_address": "payments.example",
        "server_port": "443",
        "http_response_status_code": "201",
    }
    target, refresh = {"health_target_name": "ollama"}, {"refresh_name": "exchange-rates"}
    nightly = {"pipeline_name": "nightly-export"}
    fetch, write = {**nightly, "pipeline_stage": "fetch"}, {**nightly, "pipeline_stage": "write"}
    ok = {"outcome": "success"}

    def failed(error: str) -> dict[str, str]:
        return {"outcome": "failure", "error_type": error}

    samples = {
        # events
        **sample("events_processed_total", 2, **created, **ok),
        **sample("events_processed_total", 1, **cancelled, **ok),
        **sample("events_processed_total", 1, **cancelled, **failed("ValueError")),
        **histogram("events_processing_duration_seconds", [A, B], **created, **ok),
        **histogram("events_processing_duration_seconds", [A], **cancelled, **ok),
        **histogram("events_processing_duration_seconds", [0], **cancelled, **failed("ValueError")),
        **sample("events_in_flight", 0, **created),
        **sample("events_in_flight", 0, **cancelled),
        # actions: a sync call that ran past its timeout is a timeout
        **sample("actions_executed_total", 1, **notifier, action_name="send_email", **ok),
        **sample("actions_executed_total", 1, **notifier, action_name="send_sms", outcome="timeout"),
        **sample(
            "actions_executed_total", 1, **notifier, action_name="send_push", **failed("ConnectionError")
        ),
        **histogram("actions_duration_seconds", [A], **notifier, action_name="send_email", **ok),
        **histogram("actions_duration_seconds", [C], **notifier, action_name="send_sms", outcome="timeout"),
        **histogram(
            "actions_duration_seconds", [0], **notifier, action_name="send_push", **failed("ConnectionError")
        ),
        # queue: depth 3 enqueued - 2 processed + 1 retried + 1 replayed - 1 dequeued
        **sample("queue_jobs_enqueued_total", 3, **emails),
        **sample("queue_jobs_processed_total", 1, **emails, **ok),
        **sample("queue_jobs_processed_total", 1, **emails, **failed("KeyError")),
        **histogram("queue_job_duration_seconds", [A], **emails, **ok),
        **histogram("queue_job_duration_seconds", [0], **emails, **failed("KeyError")),
        **histogram("queue_job_wait_time_seconds", [0.5, 2.0], **emails),
        **sample("queue_jobs_in_progress", 0, **emails),
        **sample("queue_jobs_retried_total", 1, **emails),
        **sample("queue_jobs_dead_lettered_total", 1, **emails, reason="max_attempts"),
        **sample("queue_jobs_replayed_total", 1, **emails),
        **sample("queue_jobs_dequeued_total", 1, **emails),
        **sample("queue_depth", 2, **emails),
        **sample("queue_dead_letter_depth", 0, **emails),
        **sample("queue_utilization", 0.2, **emails),
        **sample("queue_workers", 0, **emails, state="idle"),
        **sample("queue_workers", 0, **emails, state="active"),
        # a job of type "welcome", its trace context carried in headers
        **sample("queue_jobs_enqueued_total", 1, **emails, job_type="welcome"),
        **sample("queue_jobs_processed_total", 1, **emails, **ok, job_type="welcome"),
        **histogram("queue_job_duration_seconds", [0], **emails, **ok, job_type="welcome"),
        **sample("queue_jobs_in_progress", 0, **emails, job_type="welcome"),
        # instrument_queue: a queue.Queue(maxsize=4), two puts and a get 1/8 s later
        **sample("queue_jobs_enqueued_total", 2, **jobs),
        **sample("queue_jobs_dequeued_total", 1, **jobs),
        **histogram("queue_job_wait_time_seconds", [0.125], **jobs),
        **sample("queue_depth", 1, **jobs),
        **sample("queue_utilization", 0.25, **jobs),
        # "b", put 1/8 s before the get, then 4 A + 3 B = 7/8 s of the other hooks' advances, then
        # the event loop's blocked 0.5 + B
        **sample("queue_oldest_job_age_seconds", 1.0 + 0.5 + B, **jobs),
        # caches: lru_cache(maxsize=2) looked up with 2, 2, 3, 4; and one counted by hand
        **sample("cache_hits_total", 1, **squares),
        **sample("cache_misses_total", 3, **squares),
        **sample("cache_hit_ratio", 0.25, **squares),
        **sample("cache_entries", 2, **squares),
        **sample("cache_entries_limit", 2, **squares),
        **sample("cache_hits_total", 3, **users),
        **sample("cache_misses_total", 1, **users),
        **sample("cache_hit_ratio", 0.75, **users),
        **sample("cache_evictions_total", 2, **users),
        **sample("cache_size_bytes", 4096, **users),
        # dedup
        **sample("dedup_checks_total", 4, dedup_name="events"),
        **sample("dedup_duplicates_total", 1, dedup_name="events"),
        **sample("dedup_duplicate_ratio", 0.25, dedup_name="events"),
        # checkpoint: the save that succeeded ended at CHECKPOINT_WALL + A
        **sample("checkpoint_saves_total", 1, **listener, **ok),
        **sample("checkpoint_saves_total", 1, **listener, **failed("OSError")),
        **histogram("checkpoint_save_duration_seconds", [A], **listener, **ok),
        **histogram("checkpoint_save_duration_seconds", [0], **listener, **failed("OSError")),
        **sample("checkpoint_recoveries_total", 1, **listener),
        **sample("checkpoint_last_success_timestamp_seconds", CHECKPOINT_WALL + A, **listener),
        # circuit breaker: closed -> open -> half_open (2)
        **sample("circuit_breaker_state", 2, **breaker),
        **sample("circuit_breaker_trips_total", 1, **breaker),
        **sample("circuit_breaker_calls_total", 1, **breaker, outcome="success"),
        **sample("circuit_breaker_calls_total", 1, **breaker, outcome="failure"),
        **sample("circuit_breaker_calls_total", 1, **breaker, outcome="rejected"),
        **sample(
            "circuit_breaker_transitions_total",
            1,
            **breaker,
            circuit_breaker_state_from="closed",
            circuit_breaker_state_to="open",
        ),
        **sample(
            "circuit_breaker_transitions_total",
            1,
            **breaker,
            circuit_breaker_state_from="open",
            circuit_breaker_state_to="half_open",
        ),
        # connection pool: one connection ever used, none now; a wait that timed out
        **sample("db_client_connection_count", 1, **pool, db_client_connection_state="idle"),
        **sample("db_client_connection_count", 0, **pool, db_client_connection_state="used"),
        **sample("db_client_connection_max", 4, **pool),
        **sample("db_client_connection_pending_requests", 0, **pool),
        **sample("db_client_connection_timeouts_total", 1, **pool),
        **histogram("db_client_connection_wait_time_seconds", [A], **pool),
        **histogram("db_client_connection_use_time_seconds", [B], **pool),
        **sample("connection_pool_utilization", 0, **pool),
        # http
        **histogram("http_server_request_duration_seconds", [A], **served),
        **sample("http_server_active_requests", 0, http_request_method="GET", url_scheme="http"),
        **histogram("http_client_request_duration_seconds", [B], **sent),
        # health: one success then one failure, unhealthy after 2 -> degraded (2)
        **sample("health_target_status", 2, **target),
        **sample("health_target_consecutive_failures", 1, **target),
        **sample("health_target_success_rate", 0.5, **target),
        **sample("health_target_probes_total", 1, **target, outcome="success"),
        **sample("health_target_probes_total", 1, **target, outcome="failure"),
        **sample("refresh_last_success_seconds", REFRESH_WALL + A, **refresh),
        **sample("refresh_in_progress", 0, **refresh),
        **sample("refresh_interval_seconds", 300, **refresh),
        **histogram("refresh_duration_seconds", [A], **refresh, **ok),
        # the test's own GET /stats ran the one collector (in no time on the frozen clock)
        **histogram("stats_collection_duration_seconds", [0]),
        **sample("stats_collector_runs_total", 1, stats_collector_name="build", **ok),
        # pipeline: the failed stage was caught inside the run, which succeeded
        **sample("pipeline_runs_started_total", 1, **nightly),
        **sample("pipeline_runs_finished_total", 1, **nightly, **ok),
        **sample("pipeline_runs_active", 0, **nightly),
        **histogram("pipeline_run_duration_seconds", [B], **nightly, **ok),
        **sample("pipeline_stages_started_total", 1, **fetch),
        **sample("pipeline_stages_started_total", 1, **write),
        **sample("pipeline_stages_finished_total", 1, **fetch, **ok),
        **sample("pipeline_stages_finished_total", 1, **write, **failed("ConnectionError")),
        **sample("pipeline_stages_active", 0, **fetch),
        **sample("pipeline_stages_active", 0, **write),
        **histogram("pipeline_stage_duration_seconds", [B], **fetch, **ok),
        **histogram("pipeline_stage_duration_seconds", [0], **write, **failed("ConnectionError")),
        **sample("pipeline_stage_items_total", 120, **fetch),
        # process resources, from the fake source
        **sample("process_cpu_utilization", 0.25),
        **sample("process_cpu_time_seconds_total", 1.5, cpu_mode="user"),
        **sample("process_cpu_time_seconds_total", 0.5, cpu_mode="system"),
        **sample("process_memory_usage_bytes", 50_000_000),
        **sample("process_memory_virtual_bytes", 400_000_000),
        **sample("process_thread_count", 7),
        **sample("process_unix_file_descriptor_count", 12),
        **sample("process_disk_io_bytes_total", 4096, disk_io_direction="read"),
        **sample("process_disk_io_bytes_total", 8192, disk_io_direction="write"),
        # event loop: one sample, B late
        **histogram("asyncio_event_loop_lag_seconds", [B]),
    }
    return samples


SCOPE_LABELS = {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}


def samples_of(families: Iterable[Any]) -> tuple[dict[Key, float], dict[str, str], dict[str, str]]:
    """(samples without target_info, {family: type}, target_info labels) of parsed families.

    Labels with an empty value are left out (Prometheus treats them as absent; the exporter fills
    them in when points of one family have different attribute keys), as are the instrumentation
    scope labels, after checking they name our scope. ``le`` becomes a float.
    """
    samples: dict[Key, float] = {}
    types: dict[str, str] = {}
    target: dict[str, str] = {}
    for family in families:
        if (
            family.name == "target_info" or family.name == "target"
        ):  # OpenMetrics names the info family "target"
            target = dict(family.samples[0].labels)
            continue
        types[family.name] = family.type
        for name, labels, value, *_ in family.samples:
            if name.endswith("_created"):
                continue
            assert labels.get("otel_scope_name") == "otel_pipeline", (name, labels)
            kept: dict[str, Any] = {k: v for k, v in labels.items() if v != "" and k not in SCOPE_LABELS}
            if "le" in kept:
                kept["le"] = float(kept["le"])
            key = (name, frozenset(kept.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = value
    return samples, types, target


def get(url: str, accept: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.status, reply.headers["Content-Type"], reply.read().decode()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the child, fetch /stats, /metrics (text and OpenMetrics), stop it; what it all returned."""
    directory = tmp_path_factory.mktemp("all-hooks")
    script = directory / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with subprocess.Popen(
        [sys.executable, "-W", "error", str(script)],
        cwd=directory,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line:
                stdout, stderr = child.communicate(timeout=30)
                pytest.fail(f"the child exited before serving (exit {child.returncode}): {stdout}{stderr}")
            url = json.loads(line)["url"]
            found: dict[str, Any] = {"stats": get(f"{url}/stats"), "text": get(f"{url}/metrics")}
            found["openmetrics"] = get(f"{url}/metrics", accept="application/openmetrics-text; version=1.0.0")
            stdout, stderr = child.communicate("stop\n", timeout=60)
            found["exit"], found["stdout"], found["stderr"] = child.returncode, stdout, stderr
            return found
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate(timeout=30)


def test_the_child_ran_and_shut_down_cleanly(scraped: dict[str, Any]) -> None:
    assert (scraped["exit"], scraped["stderr"]) == (0, "")
    assert json.loads(scraped["stdout"]) == {"shutdown": True}


def test_every_catalogue_metric_is_scraped_with_its_name_and_type(scraped: dict[str, Any]) -> None:
    status, content_type, text = scraped["text"]
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    _, types, target = samples_of(parse_text(text))
    # prometheus_client's parser names a counter family without its _total
    wanted = {
        prometheus_name(spec).removesuffix("_total"): prometheus_type(spec.kind) for spec in all_metrics()
    }
    assert types == wanted
    assert target["service_name"] == "all-hooks"


def test_every_sample_has_exactly_the_recorded_value(scraped: dict[str, Any]) -> None:
    samples, _, _ = samples_of(parse_text(scraped["text"][2]))
    wanted = expected()
    assert sorted(set(samples) - set(wanted), key=str) == []
    assert sorted(set(wanted) - set(samples), key=str) == []
    assert {key: value for key, value in samples.items() if value != wanted[key]} == {}


def test_openmetrics_scrape_has_the_same_samples(scraped: dict[str, Any]) -> None:
    status, content_type, text = scraped["openmetrics"]
    assert (status, content_type) == (200, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    samples, _, target = samples_of(parse_openmetrics(text))  # type: ignore[no-untyped-call]
    assert samples == samples_of(parse_text(scraped["text"][2]))[0]
    assert target["service_name"] == "all-hooks"


def test_stats_endpoint_reports_the_hooks_and_the_collector(scraped: dict[str, Any]) -> None:
    status, _, body = scraped["stats"]
    stats = json.loads(body)
    assert status == 200
    assert stats["collectors"]["build"]["value"] == {"version": "1"}
    assert stats["hooks"]["cache"]["users"]["cache.hits"]["value"] == 3
    assert stats["hooks"]["checkpoint"]["listener-1"]["checkpoint.recoveries"]["value"] == 1
    assert stats["hooks"]["dedup"]["events"]["dedup.checks"]["value"] == 4


#: promtool's naming lint objects to a "_count" suffix outside histograms and summaries; these are
#: OpenTelemetry semantic-convention names, kept as the conventions spell them.
SEMCONV_COUNT_NAMES = (
    "db.client.connection.count",
    "process.thread.count",
    "process.unix.file_descriptor.count",
)


def test_promtool_check_metrics(scraped: dict[str, Any]) -> None:
    code, output = promtool_check_metrics(scraped["text"][2])
    by_name = {spec.name: spec for spec in all_metrics()}
    lint = 'non-histogram and non-summary metrics should not have "_count" suffix'
    allowed = {f"{prometheus_name(by_name[name])} {lint}" for name in SEMCONV_COUNT_NAMES if name in by_name}
    problems = {line.strip() for line in output.splitlines() if line.strip()}
    # Exit 3 is promtool's "lint problems" (the text parsed); anything but the allowed lint fails.
    assert problems - allowed == set(), output
    assert code == (3 if problems else 0), output
