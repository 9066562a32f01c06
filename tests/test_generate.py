"""``make generate`` / ``make check-generated``: every generated file, one command, stale files named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dashboards import generate as dashboards
from tools import docgen, generate

ROOT = Path(__file__).resolve().parents[1]


def test_every_generated_file_is_covered() -> None:
    files = generate.generated_files()
    assert docgen.DEFAULT_OUTPUT in files
    assert set(dashboards.generated_files()) <= set(files)
    relative = sorted(str(path.relative_to(ROOT)) for path in files)
    assert "docs/metrics.md" in relative
    assert {"dashboards/rules/alerts.yml", "dashboards/rules/recording.yml", "dashboards/queues.json"} <= set(
        relative
    )


def test_the_committed_files_are_current() -> None:
    assert generate.stale_files() == []


def test_check_names_stale_missing_and_left_over_files_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    current, stale, missing = (
        tmp_path / "current.md",
        tmp_path / "stale.json",
        tmp_path / "sub" / "missing.yml",
    )
    leftover = tmp_path / "other.json"
    current.write_text("same\n")
    stale.write_text("old\n")
    leftover.write_text("{}\n")
    monkeypatch.setattr(
        generate, "generated_files", lambda: {current: "same\n", stale: "new\n", missing: "rule\n"}
    )
    monkeypatch.setattr(dashboards, "leftover_files", lambda: [leftover])
    assert generate.main(["--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"stale: {stale} (run: make generate)",
        f"stale: {missing} (run: make generate)",
        f"stale: {leftover} (run: make generate)",
    ]
    assert (stale.read_text(), missing.exists(), leftover.exists()) == ("old\n", False, True)

    assert generate.main([]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {stale}",
        f"wrote {missing}",
        f"removed {leftover} (no longer generated)",
    ]
    assert (current.read_text(), stale.read_text(), missing.read_text()) == ("same\n", "new\n", "rule\n")
    assert not leftover.exists()


@pytest.mark.parametrize("module", ["tools.generate", "tools.docgen"])
def test_the_command_line_checks_the_committed_files(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, "")
