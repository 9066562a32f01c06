"""The ```python examples of a page in docs/, so that a test can run them."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DOCS", "python_blocks"]

DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(page: str) -> list[str]:
    """The code of every ```python block in ``docs/<page>``, in order."""
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
