"""The TypeError for options a function does not know, with the closest known ones suggested."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["unknown_options"]


def suggestions(name: str, known: Iterable[str]) -> list[str]:
    """Known options ``name`` may have meant: close spellings, and options it is a word of.

    >>> suggestions("port", ["prometheus_port", "prometheus_host", "enabled"])
    ['prometheus_port']
    >>> suggestions("sevice_name", ["service_name", "service_version"])
    ['service_name']
    """
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.75)
    words = set(name.lower().split("_"))
    containing = [option for option in known if words <= set(option.split("_")) and option not in close]
    return (close + containing)[:3]


def unknown_options(function: str, given: Iterable[str], known: Iterable[str]) -> TypeError:
    r"""``function() got unknown option(s) ...; known options: ...``, with a "did you mean" each.

    >>> error = unknown_options("f", ["port", "colour"], ["prometheus_port", "enabled"])
    >>> print(str(error).replace("; ", ";\n"))
    f() got unknown option(s) colour, port (did you mean prometheus_port?);
    known options: enabled, prometheus_port
    """
    known = sorted(known)
    names = []
    for name in sorted(given):
        meant = suggestions(name, known)
        names.append(f"{name} (did you mean {' or '.join(meant)}?)" if meant else name)
    return TypeError(
        f"{function}() got unknown option(s) {', '.join(names)}; known options: {', '.join(known)}"
    )
