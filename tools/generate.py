"""Write every generated file, or (``--check``) name the stale ones: ``python -m tools.generate``.

The generated files: docs/metrics.md (:mod:`tools.docgen`, from the metric catalogue), the
dashboards ``dashboards/*.json`` and the rule files ``dashboards/rules/*.yml``
(:mod:`dashboards.generate`). ``make generate`` writes them; ``make check-generated`` (part of
``make test``) exits 1 naming each file that differs from what the code generates, is missing, or
is left over from an earlier generation, and writes nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from dashboards import generate as dashboards
from tools import docgen

__all__ = ["COMMAND", "generated_files", "leftover_files", "main", "stale_files"]

COMMAND = "make generate"


def generated_files() -> dict[Path, str]:
    """Every generated file's path and the text it must have."""
    return {docgen.DEFAULT_OUTPUT: docgen.render(), **dashboards.generated_files()}


def leftover_files(files: dict[Path, str]) -> list[Path]:
    """Files an earlier generation wrote that the code generates no more."""
    return [path for path in dashboards.leftover_files() if path not in files]


def stale_files() -> list[Path]:
    """The generated files that differ from what the code generates, are missing or left over."""
    files = generated_files()
    return dashboards.differing(files) + leftover_files(files)


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check``, verify) every generated file; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tools.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 naming the stale files; write nothing")
    args = parser.parse_args(argv)
    files = generated_files()
    return dashboards.sync(files, leftover_files(files), check=args.check, command=COMMAND)


if __name__ == "__main__":
    raise SystemExit(main())
