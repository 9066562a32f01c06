"""Run every benchmark side by side and print one JSON document (also written to a file).

python -m benchmarks.run [--quick] [--output benchmarks/results/latest.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any


def _optional(module: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``benchmarks.<module>.run`` when that benchmark exists; say so when it does not."""
    try:
        bench = importlib.import_module(f"benchmarks.{module}")
    except ImportError as error:
        return {"skipped": f"benchmarks.{module} is not available: {error}"}
    result: dict[str, Any] = bench.run(**kwargs)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--output", default="benchmarks/results/latest.json")
    args = parser.parse_args(argv)

    from benchmarks import overhead

    started = time.time()
    number, rounds = (2_000, 3) if args.quick else (20_000, 15)
    document: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "overhead_ns": overhead.run(number=number, rounds=rounds),
        "scrape": _optional("scrape", series=1_000 if args.quick else 10_000),
        "server": _optional("bench_server", duration=2.0 if args.quick else 10.0),
        "event_loop": _optional("event_loop", steps=30_000 if args.quick else 300_000),
        "executor": _optional("executor", jobs=2_000 if args.quick else 20_000),
        "group": _optional("group", quick=args.quick),
    }
    document["seconds"] = round(time.time() - started, 1)
    text = json.dumps(document, indent=2, sort_keys=True)
    print(text)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    if "skipped" not in document["group"]:
        from benchmarks import group

        print(group.summary(document["group"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
