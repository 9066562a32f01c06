"""The package as a user gets it: a wheel built from this checkout, installed without the dev extra.

The wheel is built from a copy of the checkout (as ``pip wheel`` would from a fresh clone) and
installed with its runtime dependencies (and the ``pybreaker``, ``remote-write`` and ``celery``
extras, which examples use) into a new virtual environment where pytest is not importable. The
docs' examples run there, against the installed package rather than this checkout.
"""

from __future__ import annotations

import ast
import doctest
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_docs_examples import BLOCKS, ROOT, Block, run_block

pytestmark = pytest.mark.integration

#: Test-only packages (the dev extra): an example that imports one cannot run in a normal install.
DEV_ONLY = {"pytest", "jsonschema", "hypothesis", "httpx", "yaml"}
_COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".coverage*", ".hypothesis"
)


def imported_modules(block: Block) -> set[str]:
    """The top-level modules a block imports."""
    code = block.code
    if code.lstrip().startswith(">>>"):
        code = doctest.script_from_examples(code)
    found: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


RUNNABLE = [b for b in BLOCKS if not b.not_run and not imported_modules(b) & DEV_ONLY]


@dataclass(frozen=True)
class BareInstall:
    wheel: Path
    build_output: str
    python: str


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> BareInstall:
    work = tmp_path_factory.mktemp("bare")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE)
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", work / "dist", source)
    (wheel,) = (work / "dist").glob("otel_pipeline-*.whl")
    _run(sys.executable, "-m", "venv", work / "venv")
    python = str(work / "venv" / "bin" / "python")
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[pybreaker,remote-write,celery]")
    return BareInstall(wheel, built.stdout + built.stderr, python)


def test_the_environment_has_no_pytest_and_the_package_from_the_wheel(bare: BareInstall) -> None:
    probe = (
        "import importlib.util, otel_pipeline\n"
        "print(importlib.util.find_spec('pytest') is None, otel_pipeline.__file__)\n"
    )
    no_pytest, location = _run(bare.python, "-c", probe, cwd=bare.wheel.parent).stdout.split()
    assert no_pytest == "True"
    assert "site-packages" in location
    assert not location.startswith(str(ROOT))


def test_capture_imports_without_pytest(bare: BareInstall, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from otel_pipeline.testing import Capture\n"
        "import otel_pipeline as op\n"
        "with Capture() as capture:\n"
        "    op.queue('emails').enqueued(3)\n"
        "    print(capture.value('queue.jobs.enqueued', {'queue.name': 'emails'}), 'pytest' in sys.modules)\n"
    )
    assert _run(bare.python, "-c", code, cwd=tmp_path).stdout == "3 False\n"


def test_the_wheel_has_the_license_and_the_plugin_and_builds_without_warnings(bare: BareInstall) -> None:
    with zipfile.ZipFile(bare.wheel) as wheel:
        names = set(wheel.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = wheel.read(metadata).decode().split("\n\n", 1)[0].splitlines()
        license_text = wheel.read(metadata.replace("METADATA", "licenses/LICENSE")).decode()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        plugins = wheel.read(entry_points).decode()
    assert "_otel_pipeline_pytest.py" in names
    assert "pytest11]\notel_pipeline = _otel_pipeline_pytest\n" in plugins
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers
    assert license_text == (ROOT / "LICENSE").read_text()
    assert license_text.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "Warning" not in bare.build_output, bare.build_output


def test_every_example_that_uses_capture_is_run_here() -> None:
    uses_capture = {b.id for b in BLOCKS if "otel_pipeline.testing" in b.code and not b.not_run}
    assert len(uses_capture) >= 5
    assert uses_capture <= {b.id for b in RUNNABLE}
    left_out = [b for b in BLOCKS if not b.not_run and b not in RUNNABLE]
    # Only examples of testing with pytest, or of checking files with jsonschema, need the dev extra.
    assert all(imported_modules(b) & DEV_ONLY <= {"pytest", "jsonschema"} for b in left_out)
    assert len(left_out) <= 3


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_docs_example_runs_without_the_dev_extra(bare: BareInstall, block: Block, tmp_path: Path) -> None:
    result = run_block(block, tmp_path, python=bare.python, checkout=False)
    assert result.returncode == 0, (
        f"the example at {block.id} failed in a normal install (exit {result.returncode}):\n"
        f"--- code ---\n{block.code}--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
    )
