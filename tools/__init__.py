"""Development tooling: generators of the committed files (not part of the installed package).

``python -m tools.generate`` writes every generated file, ``python -m tools.generate --check``
names the stale ones (``make generate`` / ``make check-generated``).
"""
