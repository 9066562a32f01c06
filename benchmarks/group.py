"""Worker groups: the hot path in a group member, and the scrape of a whole group.

Every process here is a fresh interpreter (``python -m benchmarks.group --worker ROLE``) driven
over its stdin/stdout one JSON line at a time, so that the cases can be timed in interleaved
rounds (each round times every case once, one process at a time, the others idle) and every
case meets the same noise on a shared machine.

1. ``hot_path``: the queue hook (``processing()`` and ``enqueued()``) in a member of a worker
   group (a hub process serves the port, the member hands over every second) against the same
   hook in a process that serves its own port alone (``worker_group=False``), and against
   prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set in the process's
   environment, so before any import) recording the same: per job, the depth Gauge's
   ``dec()``, a livesum Gauge's ``track_inprogress()``, a Histogram's ``time()`` and a
   Counter's ``inc()`` (processing(): depth -1, in progress, duration, processed); per enqueue,
   a Counter's ``inc()`` and the depth Gauge's ``inc()`` (enqueued(): enqueued, depth +1).
   Both otel_pipeline processes hold the same ``series`` background series (a member's
   hand-over carries them all) and record metrics only (spans off). The figure is the median
   of the rounds (ns per operation); the cost of one hand-over in the member is timed on its
   own, and its share of the member's time (one per interval).
2. ``scrape``: GET /metrics of a group of ``members`` processes (the hub and the others), each
   holding the same ``series`` series (a third counters, a third up-down counters, a third
   histograms), against prometheus_client's ``MultiProcessCollector`` served by
   ``start_http_server`` over the files ``members`` processes wrote with the same series and
   values. The group's answer includes asking the members for fresh snapshots, their
   collection and hand-over, the hub's merge and the rendering. Median, p90 and best of the
   ``scrapes`` interleaved requests; both answers are checked to hold the same totals.

python -m benchmarks.group [--quick] [--rounds 15] [--number 20000] [--members 8] [--series 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "bench-group"
#: The smoke sizes (``--quick``, ``make bench ARGS=--quick``): a group of 3 processes, 100 series each.
QUICK: dict[str, int] = {"number": 2_000, "rounds": 3, "members": 3, "series": 100, "scrapes": 5}
#: The targets of issue 14.
TARGETS = {"member_vs_single": 1.2, "member_vs_prometheus_multiprocess": 0.3, "scrape_ms": 100.0}


# -- the worker processes ---------------------------------------------------------------------------


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _serve_commands(cases: dict[str, Callable[[], Any]], extra: Callable[[dict[str, Any]], Any]) -> None:
    """Answer the driver's commands until it says ``exit`` (or closes stdin)."""
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "exit":
            return
        if command["cmd"] == "time":
            case = cases[command["case"]]
            gc.disable()
            try:
                elapsed = timeit.timeit(case, number=command["number"])
            finally:
                gc.enable()
            _reply({"ns": elapsed / command["number"] * 1e9})
        else:
            _reply(extra(command))


def _otel_series(series: int) -> None:
    """``series`` series in the current pipeline's core: counters, up-down counters, histograms."""
    from otel_pipeline._internal import runtime
    from otel_pipeline._internal.spec import Kind, MetricSpec

    pipeline = runtime.current()
    assert pipeline is not None
    assert pipeline.registry is not None
    attributes = ("queue.name", "outcome")
    specs = (
        MetricSpec("bench.jobs.processed", Kind.COUNTER, "{job}", "Jobs processed.", attributes, "bench"),
        MetricSpec(
            "bench.jobs.in_progress", Kind.UP_DOWN_COUNTER, "{job}", "Jobs in progress.", attributes, "bench"
        ),
        MetricSpec("bench.job.duration", Kind.HISTOGRAM, "s", "Time spent on one job.", attributes, "bench"),
    )
    instruments = [pipeline.registry.instrument(spec) for spec in specs]
    for index in range(series):
        kind = index % 3
        bound = instruments[kind].bind({"queue.name": f"queue-{index // 3}", "outcome": "success"})
        if kind == 0:
            bound.add(index + 1)
        elif kind == 1:
            bound.add(index % 7 - 3)
        else:
            bound.record((index % 1000) / 100.0)


def _otel_worker(port: int, group: bool, series: int) -> None:
    import otel_pipeline as op

    pipeline = op.configure(
        service_name=SERVICE,
        prometheus_port=port,
        worker_group=group,
        trace_sample_rate=0.0,
        cardinality_limit=max(2000, series),
    )
    _otel_series(series)

    def hook() -> None:
        with op.queue("bench").processing():
            pass

    def enqueue() -> None:
        op.queue("bench").enqueued()

    def extra(command: dict[str, Any]) -> dict[str, Any]:
        if command["cmd"] == "handover":  # one hand-over (collect, encode, send), as the member's thread does
            member = pipeline.group
            assert member is not None
            assert member.role == "member"
            took = []
            for _ in range(command["repeat"]):
                start = time.perf_counter()
                member._hand_over(0)
                took.append(time.perf_counter() - start)
            return {"ms": statistics.median(took) * 1000, "interval": member.interval}
        if command["cmd"] == "breakdown":
            return _breakdown(pipeline, command["repeat"])
        if command["cmd"] == "members":
            hub = pipeline.group.hub if pipeline.group is not None else None
            return {"members": hub.members() if hub is not None else []}
        raise ValueError(f"unknown command {command!r}")

    role = pipeline.group.role if pipeline.group is not None else "alone"
    _reply({"ready": True, "role": role, "pid": os.getpid()})
    try:
        _serve_commands({"hook": hook, "enqueue": enqueue}, extra)
    finally:
        op.shutdown(timeout=10)


def _breakdown(pipeline: Any, repeat: int) -> dict[str, float]:
    """On the hub: median ms of a scrape's parts, one after the other as /metrics does them."""
    from otel_pipeline._internal.exposition import render

    group = pipeline.group
    assert group is not None
    assert group.hub is not None
    parts: dict[str, list[float]] = {"refresh": [], "collect_own": [], "merge": [], "render": []}
    for _ in range(repeat):
        start = time.perf_counter()
        # Ask the members for fresh snapshots; they collect, encode and send, the hub decodes.
        group.hub.wait(group.hub.ask(), 5.0)
        asked = time.perf_counter()
        own = pipeline.collect()
        collected = time.perf_counter()
        merged = group.merged(own, "benchmark", refresh=False)
        done = time.perf_counter()
        render(merged)
        rendered = time.perf_counter()
        parts["refresh"].append(asked - start)
        parts["collect_own"].append(collected - asked)
        parts["merge"].append(done - collected)
        parts["render"].append(rendered - done)
    return {name: round(statistics.median(values) * 1000, 2) for name, values in parts.items()}


def _prometheus_metrics() -> tuple[Any, Any, Any, Any, Any]:
    """prometheus_client's counterparts of the benchmark's series (multiprocess mode: livesum gauges)."""
    from prometheus_client import Counter, Gauge, Histogram

    from otel_pipeline.config import DEFAULT_DURATION_BUCKETS

    labels = ["queue_name", "outcome"]
    processed = Counter("bench_jobs_processed", "Jobs processed.", labels)
    in_progress = Gauge("bench_jobs_in_progress", "Jobs in progress.", labels, multiprocess_mode="livesum")
    duration = Histogram(
        "bench_job_duration_seconds",
        "Time spent on one job.",
        labels,
        buckets=DEFAULT_DURATION_BUCKETS,
    )
    enqueued = Counter("bench_jobs_enqueued", "Jobs put on the queue.", ["queue_name"])
    depth = Gauge("bench_queue_depth", "Jobs waiting.", ["queue_name"], multiprocess_mode="livesum")
    return processed, in_progress, duration, enqueued, depth


def _prometheus_worker(series: int, hot_path: bool) -> None:
    """prometheus_client in multiprocess mode (the driver set PROMETHEUS_MULTIPROC_DIR).

    Without ``hot_path`` the process only writes its ``series`` into its files (a worker whose
    files the collector reads).
    """
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR"), "multiprocess mode needs PROMETHEUS_MULTIPROC_DIR"
    processed, in_progress, duration, enqueued, depth = _prometheus_metrics()
    for index in range(series):
        kind = index % 3
        labels = (f"queue-{index // 3}", "success")
        if kind == 0:
            processed.labels(*labels).inc(index + 1)
        elif kind == 1:
            in_progress.labels(*labels).inc(index % 7 - 3)
        else:
            duration.labels(*labels).observe((index % 1000) / 100.0)
    if not hot_path:
        _reply({"ready": True, "role": "prometheus_files", "pid": os.getpid()})
        return
    # The hot path's series, bound once (as overhead.py binds prometheus_client's children).
    job_processed = processed.labels("bench", "success")
    job_in_progress = in_progress.labels("bench", "success")
    job_duration = duration.labels("bench", "success")
    queue_enqueued = enqueued.labels("bench")
    queue_depth = depth.labels("bench")

    def hook() -> None:  # what processing() records: depth -1, in progress +1/-1, duration, count
        queue_depth.dec()
        with job_in_progress.track_inprogress(), job_duration.time():
            pass
        job_processed.inc()

    def enqueue() -> None:
        queue_enqueued.inc()
        queue_depth.inc()

    def observe() -> None:
        job_duration.observe(0.3)

    def extra(command: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"unknown command {command!r}")

    _reply({"ready": True, "role": "prometheus_multiprocess", "pid": os.getpid()})
    _serve_commands({"hook": hook, "enqueue": enqueue, "inc": job_processed.inc, "observe": observe}, extra)


def _prometheus_server(port: int) -> None:
    """prometheus_client's /metrics over the multiprocess directory, as its docs recommend."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    _reply({"ready": True, "role": "prometheus_server", "pid": os.getpid()})
    try:
        _serve_commands({}, lambda command: {})
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _worker(role: str, port: int, series: int) -> None:
    if role in ("hub", "member"):
        _otel_worker(port, True, series)
    elif role == "single":
        _otel_worker(port, False, series)
    elif role in ("prometheus", "prometheus_files"):
        _prometheus_worker(series, role == "prometheus")
    elif role == "prometheus_server":
        _prometheus_server(port)
    else:
        raise ValueError(f"unknown worker role {role!r}")


# -- the driver -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """One worker process, driven one command at a time."""

    def __init__(
        self, role: str, *, port: int = 0, series: int = 0, multiproc_dir: str | None = None
    ) -> None:
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("OTEL_", "COVERAGE_", "PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
            )
        }
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
        if multiproc_dir is not None:
            environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
        self.role = role
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.group",
                "--worker",
                role,
                "--port",
                str(port),
                "--series",
                str(series),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=environ,
            text=True,
        )
        try:
            self.ready = self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            code = self.process.wait(timeout=30)
            raise RuntimeError(f"benchmark worker {self.role!r} exited with status {code} before answering")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, **command: Any) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        return self._read()

    def time(self, case: str, number: int) -> float:
        return float(self.ask(cmd="time", case=case, number=number)["ns"])

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@contextlib.contextmanager
def _workers() -> Iterator[list[Worker]]:
    """Workers started into the list are closed in reverse order (the hub last)."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in reversed(started):
            worker.close()


def _get(port: int) -> tuple[float, bytes]:
    """Milliseconds to answer GET /metrics on a fresh connection (the whole body read), and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        start = time.perf_counter()
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
        took = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET /metrics on port {port} answered {response.status}")
        return took, body
    finally:
        connection.close()


def _wait_for(probe: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark: timed out waiting for {what}")
        time.sleep(0.1)


def _ratio(value: float, reference: float, target: float) -> dict[str, Any]:
    ratio = value / reference
    return {"ratio": round(ratio, 3), "target": target, "met": ratio <= target}


def _hot_path(number: int, rounds: int, series: int) -> dict[str, Any]:
    multiproc_dir = tempfile.mkdtemp(prefix="bench-group-prom-")
    try:
        with _workers() as started:
            port = _free_port()
            hub = Worker("hub", port=port)
            started.append(hub)
            member = Worker("member", port=port, series=series)
            started.append(member)
            single = Worker("single", port=_free_port(), series=series)
            started.append(single)
            prometheus = Worker("prometheus", series=series, multiproc_dir=multiproc_dir)
            started.append(prometheus)
            roles = {"hub": hub.ready["role"], "member": member.ready["role"], "single": single.ready["role"]}
            if roles != {"hub": "hub", "member": "member", "single": "alone"}:
                raise RuntimeError(f"benchmark: the processes took the wrong roles: {roles}")
            cases = [
                ("member_hook", member, "hook"),
                ("single_hook", single, "hook"),
                ("prometheus_multiprocess_hook", prometheus, "hook"),
                ("member_enqueue", member, "enqueue"),
                ("single_enqueue", single, "enqueue"),
                ("prometheus_multiprocess_enqueue", prometheus, "enqueue"),
                ("prometheus_multiprocess_inc", prometheus, "inc"),
                ("prometheus_multiprocess_observe", prometheus, "observe"),
            ]
            for _, worker, case in cases:  # warm up
                worker.time(case, max(1, number // 10))
            samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            for index in range(rounds):
                shift = index % len(cases)  # each case in turn comes first: no place in the round is favoured
                for name, worker, case in cases[shift:] + cases[:shift]:
                    samples[name].append(worker.time(case, number))
            handover = member.ask(cmd="handover", repeat=5)
    finally:
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    median = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    best = {name: round(min(values), 1) for name, values in samples.items()}
    share = handover["ms"] / (handover["interval"] * 1000)
    return {
        "number": number,
        "rounds": rounds,
        "series": series,
        "ns_per_op_median": median,
        "ns_per_op_best": best,
        "member_handover": {
            "ms": round(handover["ms"], 3),
            "interval_s": handover["interval"],
            "share_of_time": round(share, 5),
        },
        "targets": {
            "hook_member_vs_single": _ratio(
                median["member_hook"], median["single_hook"], TARGETS["member_vs_single"]
            ),
            "enqueue_member_vs_single": _ratio(
                median["member_enqueue"], median["single_enqueue"], TARGETS["member_vs_single"]
            ),
            "hook_member_vs_prometheus_multiprocess": _ratio(
                median["member_hook"],
                median["prometheus_multiprocess_hook"],
                TARGETS["member_vs_prometheus_multiprocess"],
            ),
            "enqueue_member_vs_prometheus_multiprocess": _ratio(
                median["member_enqueue"],
                median["prometheus_multiprocess_enqueue"],
                TARGETS["member_vs_prometheus_multiprocess"],
            ),
        },
    }


def _totals(body: bytes) -> dict[str, float]:
    """Each sample name's value summed over its series (``bench_*`` only)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name.startswith("bench_"):
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of the processes ``pids`` so far (Linux: /proc, in clock ticks)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return total / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _scrape(members: int, series: int, scrapes: int) -> dict[str, Any]:
    multiproc_dir = tempfile.mkdtemp(prefix="bench-group-prom-")
    try:
        with _workers() as started:
            port = _free_port()
            hub = Worker("hub", port=port, series=series)
            started.append(hub)
            for _ in range(members - 1):
                started.append(Worker("member", port=port, series=series))
            pids = sorted(worker.ready["pid"] for worker in started[1:])
            _wait_for(lambda: hub.ask(cmd="members")["members"] == pids, f"{members - 1} members in the hub")
            for _ in range(members):  # the files of ``members`` processes; they exit (as recycled workers do)
                writer = Worker("prometheus_files", series=series, multiproc_dir=multiproc_dir)
                writer.close()
            prometheus_port = _free_port()
            started.append(Worker("prometheus_server", port=prometheus_port, multiproc_dir=multiproc_dir))
            group_totals = _totals(_get(port)[1])  # warm up both, and check they hold the same data
            prometheus_totals = _totals(_get(prometheus_port)[1])
            group_ms: list[float] = []
            prometheus_ms: list[float] = []
            group_bytes = prometheus_bytes = 0
            # CPU time spent answering, by side: what the scrapes cost whatever else runs on the machine.
            sides = {
                "group_hub": [hub.ready["pid"]],
                "group_members": pids,
                "prometheus_multiprocess": [started[-1].ready["pid"]],
            }
            cpu = dict.fromkeys(sides, 0.0)
            for _ in range(scrapes):
                before = {side: _cpu_seconds(side_pids) for side, side_pids in sides.items()}
                took, body = _get(port)
                group_ms.append(took)
                group_bytes = len(body)
                took, body = _get(prometheus_port)
                prometheus_ms.append(took)
                prometheus_bytes = len(body)
                for side, side_pids in sides.items():
                    cpu[side] += _cpu_seconds(side_pids) - before[side]
            breakdown = hub.ask(cmd="breakdown", repeat=max(3, scrapes // 4))
    finally:
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    same = sorted(group_totals) == sorted(prometheus_totals) and all(
        abs(group_totals[name] - prometheus_totals[name]) <= 1e-6 * max(1.0, abs(prometheus_totals[name]))
        for name in group_totals
    )

    def figures(values: list[float], size: int) -> dict[str, Any]:
        return {
            "median": round(statistics.median(values), 2),
            "p90": round(_percentile(values, 0.9), 2),
            "best": round(min(values), 2),
            "bytes": size,
        }

    group = figures(group_ms, group_bytes)
    stock = figures(prometheus_ms, prometheus_bytes)
    return {
        "members": members,
        "series_per_member": series,
        "scrapes": scrapes,
        "ms": {"group": group, "prometheus_multiprocess": stock},
        "group_parts_ms": breakdown,
        "cpu_ms_per_scrape": {side: round(seconds / scrapes * 1000, 1) for side, seconds in cpu.items()},
        "same_totals": same,
        "totals": {name: group_totals[name] for name in sorted(group_totals)},
        "targets": {
            "group_scrape_median_ms": {
                "value": group["median"],
                "target": TARGETS["scrape_ms"],
                "met": group["median"] < TARGETS["scrape_ms"],
            },
            "group_vs_prometheus_multiprocess": {
                "ratio": round(group["median"] / stock["median"], 3),
                "target": None,
                "met": None,
            },
        },
    }


def run(
    number: int = 20_000,
    rounds: int = 15,
    members: int = 8,
    series: int = 1_000,
    scrapes: int = 20,
    *,
    quick: bool = False,
) -> dict[str, Any]:
    """Both benchmarks as one JSON-able dict; ``targets`` in each says ratio, target and met.

    ``quick``: the smoke sizes of :data:`QUICK` instead (their figures mean nothing).
    """
    if quick:
        number, rounds, members, series, scrapes = (
            QUICK[key] for key in ("number", "rounds", "members", "series", "scrapes")
        )
    return {
        "hot_path": _hot_path(number, rounds, series),
        "scrape": _scrape(members, series, scrapes),
    }


def summary(result: dict[str, Any]) -> str:
    """A few readable lines of ``run()``'s result."""
    hot, scrape = result["hot_path"], result["scrape"]
    median, handover = hot["ns_per_op_median"], hot["member_handover"]
    lines = [
        f"worker group hot path (median ns/op of {hot['rounds']} rounds x {hot['number']}, "
        f"{hot['series']} series per process):",
        f"  processing(): member {median['member_hook']:.0f}, single {median['single_hook']:.0f}, "
        f"prometheus_client multiprocess {median['prometheus_multiprocess_hook']:.0f}",
        f"  enqueued():   member {median['member_enqueue']:.0f}, single {median['single_enqueue']:.0f}, "
        f"prometheus_client multiprocess {median['prometheus_multiprocess_enqueue']:.0f} "
        f"(one inc {median['prometheus_multiprocess_inc']:.0f})",
        f"  one hand-over {handover['ms']:.2f} ms every {handover['interval_s']} s",
    ]
    for name, target in hot["targets"].items():
        lines.append(f"  {name}: {target['ratio']} (target <= {target['target']}: {_met(target['met'])})")
    group, stock = scrape["ms"]["group"], scrape["ms"]["prometheus_multiprocess"]
    scrape_met = _met(scrape["targets"]["group_scrape_median_ms"]["met"])
    lines += [
        f"scrape of {scrape['members']} processes x {scrape['series_per_member']} series "
        f"({scrape['scrapes']} GET /metrics each, same totals: {scrape['same_totals']}):",
        f"  group: median {group['median']} ms, p90 {group['p90']} ms, best {group['best']} ms "
        f"(target < {TARGETS['scrape_ms']:.0f} ms: {scrape_met})",
        "  group's parts (median ms): "
        + ", ".join(f"{name} {value}" for name, value in scrape["group_parts_ms"].items()),
        "  CPU ms per scrape: "
        + ", ".join(f"{name} {value}" for name, value in scrape["cpu_ms_per_scrape"].items()),
        f"  prometheus_client MultiProcessCollector: median {stock['median']} ms, p90 {stock['p90']} ms, "
        f"best {stock['best']} ms",
    ]
    return "\n".join(lines)


def _met(met: bool) -> str:
    return "met" if met else "NOT met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--number", type=int, default=20_000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--members", type=int, default=8, help="processes in the scraped group")
    parser.add_argument("--series", type=int, default=1_000, help="series per process")
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.port, args.series)
        return 0
    result = run(args.number, args.rounds, args.members, args.series, args.scrapes, quick=args.quick)
    print(json.dumps(result, indent=2, sort_keys=True))
    print(summary(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
