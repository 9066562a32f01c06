"""Memory and scrape time under many distinct hook names, one hook kind at a time.

Each kind runs in a fresh interpreter: configure the Prometheus exporter (port 0), use the kind
once under a warm-up name, take the resident set size (RSS) after a garbage collection, then
use ``--names`` distinct names once each (``op.queue(f"user-{i}").enqueued()`` and the like),
collect garbage again and report the RSS growth, then time GET /metrics, /health and /stats
(best and worst of ``--scrapes``) and their body sizes.

python -m benchmarks.names [--names 200000] [--kinds queue,cache] [--scrapes 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["KINDS", "USES", "run"]


def _uses() -> dict[str, Callable[[str], None]]:
    """One use of each hook kind under a name (imported late: the child configures first)."""
    import otel_pipeline as op

    def queue(name: str) -> None:
        op.queue(name).enqueued()

    def cache(name: str) -> None:
        op.cache(name).hit()

    def dedup(name: str) -> None:
        op.dedup(name).check(duplicate=False)

    def checkpoint(name: str) -> None:
        op.checkpoint(name).recovered()

    def pipeline(name: str) -> None:
        with op.pipeline(name):
            pass

    def stage(name: str) -> None:
        with op.stage(name, pipeline="nightly"):
            pass

    def breaker(name: str) -> None:
        op.circuit_breaker(name).record_state("open")

    def pool(name: str) -> None:
        with op.connection_pool(name, max_size=4).connection():
            pass

    def events(name: str) -> None:
        with op.events(name).process("created"):
            pass

    def actions(name: str) -> None:
        with op.actions(name).track("send"):
            pass

    def health_target(name: str) -> None:
        op.health_target(name).failure()

    def refresh_job(name: str) -> None:
        with op.refresh_job(name).running():
            pass

    def http_client(name: str) -> None:
        with op.http_client(name).request("GET", "http://example.invalid/") as request:
            request.status_code = 200

    return {
        "queue": queue,
        "cache": cache,
        "dedup": dedup,
        "checkpoint": checkpoint,
        "pipeline": pipeline,
        "stage": stage,
        "circuit_breaker": breaker,
        "connection_pool": pool,
        "events": events,
        "actions": actions,
        "health_target": health_target,
        "refresh_job": refresh_job,
        "http_client": http_client,
    }


KINDS = (
    "queue",
    "cache",
    "dedup",
    "checkpoint",
    "pipeline",
    "stage",
    "circuit_breaker",
    "connection_pool",
    "events",
    "actions",
    "health_target",
    "refresh_job",
    "http_client",
)
USES = _uses


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _get(url: str) -> tuple[int, int, float]:
    """(HTTP status, body bytes, seconds) of one GET."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, len(body), time.perf_counter() - started


def _child(kind: str, names: int, scrapes: int) -> dict[str, Any]:
    import otel_pipeline as op

    pipeline = op.configure(service_name="bench", exporter="prometheus", prometheus_port=0)
    use = _uses()[kind]
    use("warm-up")
    assert pipeline.metrics_url is not None
    base = pipeline.metrics_url[: -len("/metrics")]
    _get(f"{base}/metrics")
    gc.collect()
    before = _rss()
    started = time.perf_counter()
    for index in range(names):
        use(f"user-{index}")
    recording = time.perf_counter() - started
    gc.collect()
    grown = _rss() - before
    result: dict[str, Any] = {
        "kind": kind,
        "names": names,
        "rss_growth_mb": round(grown / 2**20, 1),
        "recording_s": round(recording, 2),
        "recording_us_per_name": round(recording / names * 1e6, 2),
    }
    for route in ("metrics", "health", "stats"):
        timings = [_get(f"{base}/{route}") for _ in range(scrapes)]
        result[route] = {
            "status": timings[-1][0],
            "bytes": timings[-1][1],
            "best_s": round(min(t[2] for t in timings), 3),
            "worst_s": round(max(t[2] for t in timings), 3),
        }
    op.shutdown()
    return result


def run(names: int = 200_000, kinds: tuple[str, ...] = KINDS, scrapes: int = 3) -> dict[str, Any]:
    """Each kind measured in its own interpreter; one JSON-able document."""
    results = []
    for kind in kinds:
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.names",
                "--child",
                kind,
                "--names",
                str(names),
                "--scrapes",
                str(scrapes),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    return {"names_per_kind": names, "kinds": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=200_000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--scrapes", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.names, args.scrapes)))
        return 0
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; known: {', '.join(KINDS)}")
    print(json.dumps(run(args.names, kinds, args.scrapes), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
