"""One module per domain hook; the one place that lists them.

Importing this package imports every hook module, so every hook's metrics are declared (each
module declares its own with ``declare()`` when imported). A new hook module needs no entry
here: :func:`modules` finds every module of the package.

>>> from otel_pipeline import hooks
>>> "queue" in [module.__name__.rsplit(".", 1)[1] for module in hooks.modules()]
True
>>> [spec.name for spec in hooks.all_metrics() if spec.hook == "dedup"][:1]
['dedup.checks']
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from otel_pipeline._internal.catalogue import declared
from otel_pipeline._internal.spec import MetricSpec

__all__ = ["all_metrics", "modules"]


def modules() -> list[ModuleType]:
    """Every hook module of this package, imported, by name."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def all_metrics() -> list[MetricSpec]:
    """Every metric the hooks declare (with any declared by other modules imported so far), by name."""
    modules()
    return sorted(declared(), key=lambda spec: spec.name)


modules()
