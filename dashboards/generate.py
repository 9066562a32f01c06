"""Write the dashboards (``dashboards/*.json``) and rule files (``dashboards/rules/*.yml``).

    python -m dashboards.generate           # write every file
    python -m dashboards.generate --check   # exit 1 and name the stale files if any differ

>>> sorted(path.name for path in generated_files())[:2]
['alerts.yml', 'caches.json']
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards.boards import all_boards
from dashboards.defaults import FILE_STEM as DEFAULTS_STEM
from dashboards.model import to_json
from dashboards.rules import alert_rules_yaml, recording_rules_yaml

__all__ = ["DASHBOARDS_DIR", "RULES_DIR", "generated_files", "leftover_files", "main", "stale_files"]

DASHBOARDS_DIR = Path(__file__).resolve().parent
RULES_DIR = DASHBOARDS_DIR / "rules"


def generated_files() -> dict[Path, str]:
    """Every generated file's path and the text it must have."""
    files = {DASHBOARDS_DIR / f"{board.file_stem}.json": to_json(board) for board in all_boards()}
    files[RULES_DIR / "alerts.yml"] = alert_rules_yaml()
    files[RULES_DIR / "recording.yml"] = recording_rules_yaml()
    return files


def leftover_files(files: dict[Path, str] | None = None) -> list[Path]:
    """Files once generated that the code generates no more: the default panels' board, once empty."""
    optional = DASHBOARDS_DIR / f"{DEFAULTS_STEM}.json"
    generated = generated_files() if files is None else files
    return [optional] if optional.exists() and optional not in generated else []


def stale_files() -> list[Path]:
    """Generated files whose committed text differs from what the code generates, missing or left over."""
    files = generated_files()
    return [
        path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text
    ] + leftover_files(files)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path} (run: python -m dashboards.generate)", file=sys.stderr)
        return 1 if stale else 0
    RULES_DIR.mkdir(exist_ok=True)
    files = generated_files()
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    for path in leftover_files(files):
        path.unlink()
        print(f"removed {path} (no longer generated)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
