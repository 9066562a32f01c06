"""Server load: /metrics and /health under concurrent scrapes, driven by wrk.

A pipeline with a realistic set of hooks (queues, breakers, pools, HTTP, health targets, a
health check, a stats collector) serves on a free port while a writer thread keeps recording.
Two wrk processes hit /metrics and /health at the same time for ``duration`` seconds; a Lua
script checks every response (status 200 and the expected content) and reports latency
percentiles. The run passes when there was no error of any kind: no socket error, no timeout,
no non-200 status, no unexpected body.

python -m benchmarks.bench_server [--duration 10] [--connections 8] [--threads 1]

wrk is a Debian package (scripts/system-deps.sh installs it); without it the result says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import otel_pipeline as op

__all__ = ["run"]

#: Each endpoint and a string every good response body contains.
ENDPOINTS = {"/metrics": "queue_jobs_enqueued_total", "/health": '"status": "healthy"'}

_SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) expected = args[1]; bad = 0 end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, expected, 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local bad_total = 0
  for _, thread in ipairs(threads) do bad_total = bad_total + thread:get("bad") end
  local e = summary.errors
  io.write(string.format(
    '\n{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "bad": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, bad_total))
end
"""


def _populate() -> None:
    """Hooks a typical worker would have, so /metrics and /health have real work to do."""
    for index in range(20):
        queue = op.queue(f"queue-{index}")
        queue.enqueued(10)
        with queue.processing():
            pass
    for index in range(5):
        op.circuit_breaker(f"dependency-{index}").success()
    for index in range(3):
        pool = op.connection_pool(f"pool-{index}", max_size=10)
        with pool.waiting():
            pass
        with pool.connection():
            pass
    for status in (200, 404, 503):
        with op.http_client("payments").request("GET", "https://payments.internal/charges") as req:
            req.status_code = status
    op.health_target("ollama").success()
    op.register_health_check("disk", lambda: True)
    op.register_collector("cache", lambda: {"entries": 42})


def _writer(stop: threading.Event) -> None:
    """Keep recording while the server is scraped (about a thousand records a second)."""
    queue = op.queue("queue-0")
    breaker = op.circuit_breaker("dependency-0")
    pool = op.connection_pool("pool-0")
    while not stop.wait(0.001):
        queue.enqueued()
        breaker.success()
        with pool.connection():
            pass


def _drive(
    wrk: str, url: str, expected: str, script: Path, seconds: int, connections: int, threads: int
) -> Any:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)]
    return subprocess.Popen(
        [*command, url, "--", expected], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _result(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"no result from wrk: {output.strip()[-500:]}"}
    raw = json.loads(lines[-1])
    errors = {key: raw[key] for key in ("connect", "read", "write", "status", "timeout")}
    errors["unexpected_body"] = max(0, raw["bad"] - raw["status"])
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "max_ms": round(raw["max_us"] / 1000, 3),
        "errors": errors,
        "error_count": sum(errors.values()),
    }


def run(duration: float = 10.0, connections: int = 8, threads: int = 1) -> dict[str, Any]:
    """Drive /metrics and /health concurrently for ``duration`` seconds; results and pass/fail."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"pass": False, "skipped": "wrk is not installed (scripts/system-deps.sh installs it)"}
    seconds = max(1, round(duration))
    op.shutdown()
    pipeline = op.configure(service_name="bench-server", exporter="prometheus", prometheus_port=0)
    assert pipeline.server is not None
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(stop,), daemon=True)
    try:
        _populate()
        writer.start()
        with tempfile.TemporaryDirectory() as directory:
            script = Path(directory) / "check.lua"
            script.write_text(_SCRIPT)
            processes = {
                path: _drive(wrk, pipeline.server.url + path, expected, script, seconds, connections, threads)
                for path, expected in ENDPOINTS.items()
            }
            outputs = {
                path: process.communicate(timeout=seconds + 60)[0] for path, process in processes.items()
            }
    finally:
        stop.set()
        writer.join(timeout=5)
        op.unregister_health_check("disk")
        op.unregister_collector("cache")
        op.shutdown()
    endpoints = {path: _result(output) for path, output in outputs.items()}
    passed = all("error" not in r and r["error_count"] == 0 and r["requests"] > 0 for r in endpoints.values())
    return {
        "tool": "wrk",
        "duration_s": seconds,
        "connections": connections,
        "threads": threads,
        "endpoints": endpoints,
        "pass": passed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    parser.add_argument("--connections", type=int, default=8, help="open connections per endpoint")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads per endpoint")
    args = parser.parse_args(argv)
    result = run(args.duration, args.connections, args.threads)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
