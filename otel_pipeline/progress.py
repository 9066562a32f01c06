"""A live view of the stages running now (items, rate, elapsed), drawn with rich on a terminal.

Off when the output is not a terminal (a pipe, a file, CI logs): then it does nothing at all.

>>> import otel_pipeline as op
>>> with op.live_progress() as view:  # not a terminal here: nothing is drawn
...     view.enabled
False
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from otel_pipeline._internal.validation import safe_repr
from otel_pipeline.hooks.pipeline import ActiveStage, active_stages

__all__ = ["LiveProgress", "live_progress", "render"]


def render(stages: list[ActiveStage]) -> Any:
    """A rich table of ``stages``: pipeline, stage, items, items per second, elapsed.

    >>> from rich.console import Console
    >>> from otel_pipeline.hooks.pipeline import ActiveStage
    >>> console = Console(width=80, color_system=None)
    >>> with console.capture() as captured:
    ...     console.print(render([ActiveStage("etl", "fetch", 120, 2.0)]))
    >>> "60.0/s" in captured.get()
    True
    """
    from rich.table import Table

    table = Table("pipeline", "stage", "items", "rate", "elapsed", title="running stages")
    for stage in stages:
        rate = stage.items / stage.elapsed if stage.elapsed > 0 else 0.0
        table.add_row(
            stage.pipeline, stage.stage, f"{stage.items:g}", f"{rate:.1f}/s", f"{stage.elapsed:.1f}s"
        )
    if not stages:
        table.add_row("-", "(none running)", "", "", "")
    return table


class LiveProgress:
    """Redraws :func:`render` of the running stages a few times a second while started.

    ``enabled`` defaults to whether the console is a terminal.
    """

    def __init__(
        self, *, console: Any = None, enabled: bool | None = None, refresh_per_second: float = 2.0
    ) -> None:
        from rich.console import Console

        if refresh_per_second <= 0:
            raise ValueError(
                f"otel_pipeline: refresh_per_second={safe_repr(refresh_per_second)} is not valid; "
                "use a number > 0"
            )
        self.console = console if console is not None else Console()
        self.enabled = bool(self.console.is_terminal) if enabled is None else enabled
        self._refresh = refresh_per_second
        self._live: Any = None

    def start(self) -> LiveProgress:
        """Start redrawing (when enabled); idempotent."""
        if self.enabled and self._live is None:
            from rich.live import Live

            self._live = Live(
                console=self.console,
                get_renderable=lambda: render(active_stages()),
                refresh_per_second=self._refresh,
                transient=True,
            )
            self._live.start()
        return self

    def stop(self) -> None:
        """Stop redrawing and clear the view; idempotent."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def refresh(self) -> None:
        """Redraw now (it also redraws by itself ``refresh_per_second`` times a second)."""
        if self._live is not None:
            self._live.refresh()

    @property
    def running(self) -> bool:
        """True while redrawing."""
        return self._live is not None

    def __enter__(self) -> LiveProgress:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def live_progress(
    *, console: Any = None, enabled: bool | None = None, refresh_per_second: float = 2.0
) -> LiveProgress:
    """A :class:`LiveProgress` (use it with ``with``); drawn only when the console is a terminal.

    >>> import otel_pipeline as op
    >>> op.live_progress(enabled=False).start().running
    False
    """
    return LiveProgress(console=console, enabled=enabled, refresh_per_second=refresh_per_second)
