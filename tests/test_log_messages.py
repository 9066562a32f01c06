"""Log messages do not repeat the logger's name: a handler's format (``%(name)s: %(message)s``) adds it.

Exception messages keep the ``otel_pipeline:`` prefix (they reach users without a logger's name).
"""

from __future__ import annotations

import ast
from pathlib import Path

import otel_pipeline

PACKAGE = Path(otel_pipeline.__file__).parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _message(call: ast.Call) -> ast.expr | None:
    function = call.func
    if isinstance(function, ast.Attribute) and function.attr in LEVELS:
        owner = function.value
        name = (
            owner.id
            if isinstance(owner, ast.Name)
            else owner.attr
            if isinstance(owner, ast.Attribute)
            else ""
        )
        if "logger" in name:
            index = 1 if function.attr == "log" else 0
            return call.args[index] if len(call.args) > index else None
    if (isinstance(function, ast.Name) and function.id == "warn_once") or (
        isinstance(function, ast.Attribute) and function.attr == "warn_once"
    ):
        return call.args[1] if len(call.args) > 1 else None
    return None


def _text(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.JoinedStr) and node.values:
        node = node.values[0]
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_no_log_message_starts_with_the_loggers_name() -> None:
    found = []
    calls = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and (message := _text(_message(node))) is not None:
                calls += 1
                if message.startswith("otel_pipeline:"):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {message[:60]}")
    assert calls > 50  # the scan sees the package's log calls (96 when written)
    assert found == []
