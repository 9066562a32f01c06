"""Layers point one way: ``otel_pipeline._internal`` imports nothing above it; no import cycles.

Every module of the package is parsed with ``ast`` (never imported): module-level and
function-level imports, ``from . import x`` and other relative imports all count. An import
under ``if TYPE_CHECKING:`` is an import for the layering check (a type from above is a
dependency on above) but not for the cycle check (it never runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "otel_pipeline"
INTERNAL = f"{PACKAGE}._internal"
#: What ``_internal`` may import from above it: the configuration, and the version string.
ALLOWED_ABOVE = {f"{PACKAGE}.config", f"{PACKAGE}._version"}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    typing_only: bool


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its ``__init__``)."""
    return {module_name(path, root): path for path in sorted((root / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under ``node`` (functions and classes included), marking the TYPE_CHECKING branches."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                yield statement, True
                yield from _walk(statement, True)
            for statement in child.orelse:
                yield statement, typing_only
                yield from _walk(statement, typing_only)
            continue
        yield child, typing_only
        yield from _walk(child, typing_only)


def _base(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute module a ``from`` import names (``from ..x import y`` in ``a.b.c``: ``a.x``)."""
    if level == 0:
        return module or ""
    parts = importer.split(".")
    if not is_package:
        parts.pop()
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, module] if module else parts)


def imports(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """The package modules ``name`` imports (``from m import x``: ``m.x`` if that is a module, else ``m``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node, typing_only in _walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(name, is_package, node.level, node.module)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in known else base)
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                # ``import a.b.c`` needs a.b.c; a name below a module is that module.
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                found.append(Import(name, target, getattr(node, "lineno", 0), typing_only))
    return list(dict.fromkeys(found))  # one per imported module and line


def all_imports(root: Path = ROOT) -> list[Import]:
    known = modules(root)
    return [found for name, path in known.items() for found in imports(name, path, known)]


def upward_imports(found: list[Import]) -> list[Import]:
    """Imports from ``_internal`` of a module above it (other than config and the version)."""
    return [
        i
        for i in found
        if (i.importer == INTERNAL or i.importer.startswith(INTERNAL + "."))
        and not (i.imported == INTERNAL or i.imported.startswith(INTERNAL + "."))
        and i.imported not in ALLOWED_ABOVE
    ]


def cycles(found: list[Import]) -> list[list[str]]:
    """One cycle path (``a -> b -> ... -> a``) per strongly connected group of modules (Tarjan).

    A group is the modules that all reach each other: breaking the cycle shown may leave others
    in it, which the next run shows.
    """
    graph: dict[str, set[str]] = {}
    for i in found:
        if not i.typing_only and i.imported != i.importer:
            graph.setdefault(i.importer, set()).add(i.imported)
            graph.setdefault(i.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for following in sorted(graph[node]):
            if following not in index:
                connect(following)
                low[node] = min(low[node], low[following])
            elif following in on_stack:
                low[node] = min(low[node], index[following])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest cycle through the group's first module (breadth first, inside the group)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(group)}")  # pragma: no cover  (Tarjan's groups have one)


def test_internal_imports_nothing_above_it() -> None:
    found = upward_imports(all_imports())
    assert found == [], "otel_pipeline._internal imports modules above it:\n" + "\n".join(
        f"  {i.importer} (line {i.line}) imports {i.imported}" for i in found
    )


def test_no_import_cycles() -> None:
    found = cycles(all_imports())
    assert found == [], "import cycles among otel_pipeline modules:\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in found
    )


# -- the checks themselves, on a package written for the purpose ------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        {
            "otel_pipeline/__init__.py": "from otel_pipeline.hooks import a\n",
            "otel_pipeline/config.py": "",
            "otel_pipeline/_version.py": "",
            "otel_pipeline/server.py": "",
            "otel_pipeline/hooks/__init__.py": "from . import a, b\n",
            "otel_pipeline/hooks/a.py": "from .b import thing\n",
            "otel_pipeline/hooks/b.py": "def f():\n    from otel_pipeline.hooks import a\n",
            "otel_pipeline/_internal/__init__.py": "",
            "otel_pipeline/_internal/ok.py": (
                "from typing import TYPE_CHECKING\nfrom otel_pipeline import config\n"
                "from otel_pipeline._version import v\nfrom . import low\n"
                "if TYPE_CHECKING:\n    from .low import T\n"
            ),
            "otel_pipeline/_internal/low.py": (
                "if TYPE_CHECKING:\n    from otel_pipeline._internal.ok import x\n"
            ),
            "otel_pipeline/_internal/up.py": (
                "import otel_pipeline\n"
                "def f():\n    from ..server import S\n"
                "if TYPE_CHECKING:\n    from otel_pipeline.hooks.a import A\n"
            ),
        },
    )
    return tmp_path


def test_the_checks_find_upward_imports_at_any_level(sample: Path) -> None:
    found = upward_imports(all_imports(sample))
    assert [(i.importer, i.imported, i.line, i.typing_only) for i in found] == [
        ("otel_pipeline._internal.up", "otel_pipeline", 1, False),
        ("otel_pipeline._internal.up", "otel_pipeline.server", 3, False),
        ("otel_pipeline._internal.up", "otel_pipeline.hooks.a", 5, True),
    ]


def test_the_checks_find_cycles_through_function_level_and_relative_imports(sample: Path) -> None:
    # hooks.a -> hooks.b (relative), hooks.b -> hooks.a (in a function); ok <-> low only for typing.
    assert cycles(all_imports(sample)) == [
        ["otel_pipeline.hooks.a", "otel_pipeline.hooks.b", "otel_pipeline.hooks.a"]
    ]


def test_relative_imports_resolve_against_the_package() -> None:
    assert _base("a.b.c", False, 1, "x") == "a.b.x"
    assert _base("a.b.c", False, 2, None) == "a"
    assert _base("a.b", True, 1, "x") == "a.b.x"
    assert _base("a.b", True, 2, "x") == "a.x"
