"""Every ```python block in README.md and docs/**/*.md runs, each in a fresh interpreter.

A block runs as a script in a subprocess of its own (a fresh process: nothing configured, the
OpenTelemetry globals unset), in an empty temporary directory, with warnings as errors and the
``OTEL_*`` variables cleared except ``OTEL_EXPORTER_PROMETHEUS_PORT=0``, so an example that
serves ``/metrics`` on the default port cannot collide with anything else on the machine. A
block whose first line starts with ``>>>`` runs as a doctest (its outputs are checked). A block
preceded by ``<!-- not-run -->`` is only shown, not run: keep those rare.
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = "<!-- not-run -->"
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: bool

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def blocks_of(text: str, path: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the not-run marker applied."""
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    previous = ""  # the last non-blank line outside code blocks
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            if lines[index].strip():
                previous = lines[index].strip()
            index += 1
            continue
        indent, fence, language = opening.groups()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index])
            index += 1
        if index == len(lines):
            raise ValueError(f"{path}:{start + 1}: code block is never closed")
        index += 1
        found.append(Block(path, start + 1, language.lower(), "\n".join(body) + "\n", previous == NOT_RUN))
        previous = ""
    return found


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def python_blocks() -> list[Block]:
    blocks = []
    for file in markdown_files():
        path = file.relative_to(ROOT).as_posix()
        blocks += [
            b for b in blocks_of(file.read_text(encoding="utf-8"), path) if b.language in ("python", "py")
        ]
    return blocks


BLOCKS = python_blocks()


def run_block(
    block: Block, directory: Path, python: str = sys.executable, checkout: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one block in a fresh interpreter (``python``) in ``directory``.

    With ``checkout`` the package is imported from this checkout; without it, from wherever
    ``python`` has it installed (``PYTHONPATH`` is then left out altogether).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env["OTEL_EXPORTER_PROMETHEUS_PORT"] = "0"
    if checkout:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    else:
        env.pop("PYTHONPATH", None)
    if block.code.lstrip().startswith(">>>"):
        script = directory / "example.txt"
        command = [python, "-W", "error", "-m", "doctest", str(script)]
    else:
        script = directory / "example.py"
        command = [python, "-W", "error", str(script)]
    script.write_text(block.code, encoding="utf-8")
    return subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=90)


def test_docs_have_python_examples() -> None:
    paths = {block.path for block in BLOCKS}
    for page in ("docs/hooks/cache.md", "docs/hooks/dedup.md", "docs/hooks/checkpoint.md"):
        assert page in paths


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.not_run], ids=lambda b: b.id)
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    result = run_block(block, tmp_path)
    assert result.returncode == 0, (
        f"the example at {block.id} failed (exit {result.returncode}):\n"
        f"--- code ---\n{block.code}--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
    )


def test_not_run_markers_precede_a_python_block() -> None:
    for file in markdown_files():
        path = file.relative_to(ROOT).as_posix()
        text = file.read_text(encoding="utf-8")
        marked = {b.line for b in blocks_of(text, path) if b.not_run and b.language in ("python", "py")}
        markers = text.count(NOT_RUN)
        assert markers == len(marked), f"{path}: every {NOT_RUN} must come right before a ```python block"


SAMPLE = """# Title

```python
print("runs")
```

<!-- not-run -->

```python
serve_forever()
```

- a list item:

  ```py
  x = 1
      y = 2
  ```

~~~bash
echo not python
~~~
"""


def test_blocks_of_finds_blocks_lines_languages_and_markers() -> None:
    assert blocks_of(SAMPLE, "sample.md") == [
        Block("sample.md", 3, "python", 'print("runs")\n', False),
        Block("sample.md", 9, "python", "serve_forever()\n", True),
        Block("sample.md", 15, "py", "x = 1\n    y = 2\n", False),
        Block("sample.md", 20, "bash", "echo not python\n", False),
    ]


def test_blocks_of_refuses_an_unclosed_block() -> None:
    with pytest.raises(ValueError, match=r"^broken\.md:2: code block is never closed$"):
        blocks_of("text\n```python\nprint(1)\n", "broken.md")


def test_a_failing_example_fails_with_its_output(tmp_path: Path) -> None:
    result = run_block(
        Block("x.md", 1, "python", "import otel_pipeline\nraise SystemExit('boom')\n", False), tmp_path
    )
    assert (result.returncode, result.stderr.strip()) == (1, "boom")


def test_doctest_blocks_check_their_output(tmp_path: Path) -> None:
    good = run_block(Block("x.md", 1, "python", ">>> 1 + 1\n2\n", False), tmp_path)
    bad = run_block(Block("x.md", 1, "python", ">>> 1 + 1\n3\n", False), tmp_path)
    assert (good.returncode, bad.returncode) == (0, 1)
    assert "Expected:\n    3\nGot:\n    2" in bad.stdout


def test_examples_run_with_a_free_prometheus_port_and_no_otel_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    code = (
        "import os\n"
        "import otel_pipeline as op\n"
        "pipeline = op.configure(service_name='docs')\n"
        "assert pipeline.enabled and pipeline.prometheus_port != 9464, pipeline.prometheus_port\n"
        "assert sorted(k for k in os.environ if k.startswith('OTEL_')) == ['OTEL_EXPORTER_PROMETHEUS_PORT']\n"
        "assert os.getcwd() == os.environ['EXPECTED_CWD']\n"
        "op.shutdown()\n"
    )
    monkeypatch.setenv("EXPECTED_CWD", str(tmp_path))
    result = run_block(Block("x.md", 1, "python", code, False), tmp_path)
    assert result.returncode == 0, result.stderr


def _package_modules() -> list[str]:
    import otel_pipeline

    names = ["otel_pipeline"]
    names += [m.name for m in pkgutil.walk_packages(otel_pipeline.__path__, "otel_pipeline.")]
    return sorted(names)


#: Public modules: each must show at least one runnable example.
_PUBLIC = [m for m in _package_modules() if "._" not in m and m != "otel_pipeline.hooks"]


@pytest.mark.parametrize("module", _package_modules())
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module in _PUBLIC:
        assert result.attempted > 0, f"{module} has no runnable docstring example"
