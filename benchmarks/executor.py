"""What instrumenting a ``concurrent.futures`` pool costs per job: the same jobs, bare and instrumented.

Each round submits ``jobs`` trivial jobs (``abs``) to a pool and waits for all of them, once on a
bare pool and once on the same kind of pool instrumented with ``op.instrument_executor`` (a
configured pipeline, exporter "none", every span sampled and no span current at submit time, as
in a worker loop). Rounds interleave the two; the best round of each is kept. A thread pool and a
process pool (fork) are measured; the process pool's cost per job is dominated by pickling and
IPC either way.

python -m benchmarks.executor [--jobs 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Any

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline.config import Config

__all__ = ["run"]


def _pool(kind: str) -> ThreadPoolExecutor | ProcessPoolExecutor:
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=2)
    return ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork"))


def _round(pool: Executor, jobs: int) -> float:
    gc.collect()
    started = time.perf_counter()
    wait([pool.submit(abs, -index) for index in range(jobs)])
    return time.perf_counter() - started


def run(jobs: int = 20_000, rounds: int = 5) -> dict[str, Any]:
    """Best-of-``rounds`` microseconds per job, bare and instrumented, and their ratio, per pool kind."""
    runtime.shutdown(timeout=5)
    runtime.install(runtime.build_pipeline(Config.resolve({}, service_name="bench", exporter="none")))
    found: dict[str, Any] = {}
    try:
        for kind, count in (("thread", jobs), ("process", max(1, jobs // 4))):
            bare, instrumented = _pool(kind), _pool(kind)
            op.instrument_executor(instrumented, f"bench-{kind}")
            best = {"bare": float("inf"), "instrumented": float("inf")}
            try:
                for pool in (bare, instrumented):  # warm up: start the workers
                    _round(pool, 100)
                for _ in range(rounds):
                    best["bare"] = min(best["bare"], _round(bare, count))
                    best["instrumented"] = min(best["instrumented"], _round(instrumented, count))
            finally:
                bare.shutdown()
                instrumented.shutdown()
            found[kind] = {
                "jobs": count,
                "us_per_job": {name: round(value / count * 1e6, 2) for name, value in best.items()},
                "ratio": round(best["instrumented"] / best["bare"], 3),
                "added_us_per_job": round((best["instrumented"] - best["bare"]) / count * 1e6, 2),
            }
    finally:
        runtime.shutdown(timeout=5)
    found["rounds"] = rounds
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.jobs, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
