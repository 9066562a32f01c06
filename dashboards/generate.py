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

__all__ = [
    "DASHBOARDS_DIR",
    "RULES_DIR",
    "differing",
    "generated_files",
    "leftover_files",
    "main",
    "stale_files",
    "sync",
]

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
    return differing(files) + leftover_files(files)


def differing(files: dict[Path, str]) -> list[Path]:
    """The paths of ``files`` missing or whose text is not the one given."""
    return [
        path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def sync(files: dict[Path, str], leftovers: list[Path], *, check: bool, command: str) -> int:
    """Write ``files`` that differ and remove ``leftovers``; with ``check``, name them and write nothing.

    The exit status: 1 when ``check`` found a stale file, else 0. ``tools.generate`` uses it too.
    """
    if check:
        stale = differing(files) + leftovers
        for path in stale:
            print(f"stale: {path} (run: {command})", file=sys.stderr)
        return 1 if stale else 0
    for path in differing(files):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path}")
    for path in leftovers:
        path.unlink()
        print(f"removed {path} (no longer generated)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    files = generated_files()
    return sync(files, leftover_files(files), check=args.check, command="python -m dashboards.generate")


if __name__ == "__main__":
    raise SystemExit(main())
