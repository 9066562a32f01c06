"""Pipeline runs and their stages: started, completed, failed, durations, runs active, items.

One span per run, with a child span per stage (also when a stage runs in another thread).

>>> import otel_pipeline as op
>>> with op.pipeline("nightly-export") as run:
...     with run.stage("fetch") as stage:
...         stage.processed(120)
"""

from __future__ import annotations

import abc
import functools
import inspect
import re
import threading
from collections.abc import Callable, Sized
from contextvars import ContextVar
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.hook import (
    OVERFLOW_NAME,
    Hook,
    check_name,
    get_hook,
    state_on,
    warn_names,
)
from otel_pipeline._internal.outcomes import OutcomeOperation, OutcomeSeries
from otel_pipeline._internal.registry import Adds
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Timed, decorate
from otel_pipeline._internal.validation import amount, is_amount, safe_repr

__all__ = [
    "ActiveStage",
    "Run",
    "Scope",
    "Stage",
    "StageRun",
    "active_stages",
    "pipeline",
    "stage",
]

HOOK = "pipeline"
PIPELINE = "pipeline.name"
STAGE = "pipeline.stage"
#: The pipeline a stage is recorded under when no run is in progress and none is named.
DEFAULT_PIPELINE = "default"

RUNS_STARTED = declare(
    "pipeline.runs.started", Kind.COUNTER, "{run}", "Pipeline runs started.", [PIPELINE], hook=HOOK
)
RUNS_FINISHED = declare(
    "pipeline.runs.finished",
    Kind.COUNTER,
    "{run}",
    "Pipeline runs finished, by outcome: success (completed) or failure (failed, with error.type).",
    [PIPELINE, "outcome", "error.type"],
    hook=HOOK,
)
RUNS_ACTIVE = declare(
    "pipeline.runs.active",
    Kind.UP_DOWN_COUNTER,
    "{run}",
    "Pipeline runs in progress now.",
    [PIPELINE],
    hook=HOOK,
)
RUN_DURATION = declare(
    "pipeline.run.duration",
    Kind.HISTOGRAM,
    "s",
    "Duration of one pipeline run, by outcome.",
    [PIPELINE, "outcome", "error.type"],
    hook=HOOK,
)
STAGES_STARTED = declare(
    "pipeline.stages.started",
    Kind.COUNTER,
    "{stage}",
    "Pipeline stages started.",
    [PIPELINE, STAGE],
    hook=HOOK,
)
STAGES_FINISHED = declare(
    "pipeline.stages.finished",
    Kind.COUNTER,
    "{stage}",
    "Pipeline stages finished, by outcome: success (completed) or failure (failed, with error.type).",
    [PIPELINE, STAGE, "outcome", "error.type"],
    hook=HOOK,
)
STAGES_ACTIVE = declare(
    "pipeline.stages.active",
    Kind.UP_DOWN_COUNTER,
    "{stage}",
    "Pipeline stages in progress now.",
    [PIPELINE, STAGE],
    hook=HOOK,
)
STAGE_DURATION = declare(
    "pipeline.stage.duration",
    Kind.HISTOGRAM,
    "s",
    "Duration of one pipeline stage, by outcome.",
    [PIPELINE, STAGE, "outcome", "error.type"],
    hook=HOOK,
)
STAGE_ITEMS = declare(
    "pipeline.stage.items",
    Kind.COUNTER,
    "{item}",
    "Items processed by a pipeline stage.",
    [PIPELINE, STAGE],
    hook=HOOK,
)

_CURRENT_RUN: ContextVar[Run | None] = ContextVar("otel_pipeline_run", default=None)
_ACTIVE: dict[int, StageRun] = {}
_ACTIVE_LOCK = threading.Lock()


F = TypeVar("F", bound=Callable[..., Any])
T_co = TypeVar("T_co", covariant=True)


class Scope(Protocol[T_co]):
    """A context manager (sync and async) binding a ``T_co``; also a decorator (one scope per call)."""

    def __enter__(self) -> T_co: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    async def __aenter__(self) -> T_co: ...
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def __call__(self, function: F) -> F:
        """Decorate a function or coroutine function."""
        ...


class ActiveStage(NamedTuple):
    """A stage in progress, as the live view shows it."""

    pipeline: str
    stage: str
    items: float
    elapsed: float


def active_stages() -> list[ActiveStage]:
    """The stages in progress now, oldest first.

    >>> from otel_pipeline.hooks.pipeline import active_stages
    >>> active_stages()
    []
    """
    with _ACTIVE_LOCK:
        stages = list(_ACTIVE.values())
    now = perf_counter()
    ordered = sorted(stages, key=lambda s: s.started)
    return [ActiveStage(s.pipeline, s.name, s.items, now - s.started) for s in ordered]


class Run:
    """One pipeline run, bound by ``with op.pipeline(name) as run``.

    >>> import otel_pipeline as op
    >>> with op.pipeline("etl") as run:
    ...     with run.stage("load") as stage:
    ...         stage.processed(3)
    """

    __slots__ = ("_hook", "_token", "name", "span", "started")

    def __init__(self, hook: PipelineHook | None, name: str, span: Any) -> None:
        self._hook = hook
        self.name = name
        #: The run's span (non-recording when not sampled or instrumentation is off).
        self.span = span
        self.started = perf_counter()
        self._token: Any = None

    def stage(self, name: str) -> Scope[StageRun]:
        """Time one stage of this run: ``with run.stage("fetch") as stage: stage.processed(n)``."""
        check_name("stage name", name)
        if self._hook is None:
            return _NoopStage(functools.partial(self.stage, name))
        scope: Scope[StageRun] = self._hook.stage(name, self)
        return scope

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return perf_counter() - self.started


class StageRun:
    """One stage call, bound by ``with run.stage(name) as stage``; count items with :meth:`processed`.

    >>> import otel_pipeline as op
    >>> with op.stage("transform") as stage:
    ...     stage.processed(10)
    >>> stage.items
    10
    """

    __slots__ = ("_items", "items", "name", "pipeline", "run", "started")
    #: How record-time warnings name it (with its stage name).
    kind: ClassVar[str] = "pipeline stage"

    def __init__(self, pipeline: str, name: str, run: Run | None, items_series: Adds | None) -> None:
        self.pipeline = pipeline
        self.name = name
        self.run = run
        self.items: float = 0
        self.started = perf_counter()
        self._items = items_series

    def processed(self, count: float = 1) -> None:
        """Count ``count`` items processed by this stage (a number >= 0; else not counted, one warning)."""
        items = amount(self, "processed", "count", count)
        if items is None:
            return
        self.items += items
        try:
            if self._items is not None:
                self._items.add(items)
        except Exception as exc:
            internal_error("stage.processed", exc)


class _RunOp(OutcomeOperation):
    """One run: started and active while it runs, then finished by outcome and timed."""

    __slots__ = ("_bound", "_hook", "_summary_path")

    def __init__(self, hook: PipelineHook, bound: _Bound, summary_path: Path | None) -> None:
        super().__init__(
            bound.pipeline.tracer,
            f"pipeline.run {hook.name}",
            {PIPELINE: hook.name},
            functools.partial(hook.run, summary_path),
            bound.runs,
        )
        self._hook = hook
        self._bound = bound
        self._summary_path = summary_path

    def begin(self) -> None:
        self._bound.started.add(1)
        super().begin()

    def result(self, timed: Timed) -> Run:
        run = Run(self._hook, self._hook.name, timed.span)
        run._token = _CURRENT_RUN.set(run)
        timed.extra = run
        return run

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        run: Run | None = timed.extra
        try:
            super().end(duration, exc_type, timed)
        finally:  # a run whose recording failed is over all the same: never left current
            if run is not None and run._token is not None:
                try:
                    _CURRENT_RUN.reset(run._token)
                except ValueError:  # ended in another context than it started in
                    _CURRENT_RUN.set(None)
        if self._summary_path is not None:
            _write_summary(self._summary_path)


def _write_summary(path: Path) -> None:
    try:
        from otel_pipeline.summary import write_summary

        write_summary(path)
    except Exception:
        warn_once(f"summary:{path}", "could not write the run summary to %s", path)
        logger.debug("summary failure", exc_info=True)


class _StageOp(OutcomeOperation):
    """One stage of one pipeline: started and active, then finished by outcome and timed; items as counted."""

    __slots__ = ("_pipeline", "_stage", "_started", "items")

    def __init__(self, hook: PipelineHook, name: str, pipeline_: Runtime) -> None:
        registry = pipeline_.registry
        assert registry is not None
        attributes = {PIPELINE: hook.name, STAGE: name}
        super().__init__(
            pipeline_.tracer,
            f"pipeline.stage {name}",
            attributes,
            functools.partial(hook.stage, name),
            OutcomeSeries(registry, STAGES_FINISHED, STAGE_DURATION, STAGES_ACTIVE, attributes),
        )
        self._pipeline = hook.name
        self._stage = name
        self._started = registry.instrument(STAGES_STARTED).bind(attributes)
        self.items = registry.instrument(STAGE_ITEMS).bind(attributes)

    def begin(self) -> None:
        self._started.add(1)
        super().begin()

    def result(self, timed: Timed) -> StageRun:
        run = timed._run if isinstance(timed, _StageTimed) else None
        stage_run = StageRun(self._pipeline, self._stage, run, self.items)
        timed.extra = stage_run
        with _ACTIVE_LOCK:
            _ACTIVE[id(stage_run)] = stage_run
        return stage_run

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        stage_run: StageRun | None = timed.extra
        try:
            super().end(duration, exc_type, timed)
        finally:  # a stage whose recording failed is over all the same: never left "active"
            if stage_run is not None:
                with _ACTIVE_LOCK:
                    _ACTIVE.pop(id(stage_run), None)
        if stage_run is not None:
            timed.span_attributes = {"pipeline.stage.items": stage_run.items}


class _StageTimed(Timed):
    """A stage call: its span is a child of its run's span, even in another thread."""

    __slots__ = ("_factory", "_parent_token", "_run")

    def __init__(self, op: _StageOp, run: Run | None, factory: Callable[[], Any]) -> None:
        super().__init__(op)
        self._run = run
        self._factory = factory
        self._parent_token: Any = None

    def __enter__(self) -> Any:
        run = self._run
        if run is not None:
            parent = run.span.get_span_context()
            current = trace.get_current_span().get_span_context()
            if parent.is_valid and current.trace_id != parent.trace_id:
                self._parent_token = otel_context.attach(trace.set_span_in_context(run.span))
        return super().__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            if self._parent_token is not None:
                otel_context.detach(self._parent_token)
                self._parent_token = None

    def __call__(self, function: F) -> F:
        return decorate(function, self._factory)


class _StageNames:
    """The stage names of all pipelines on one configured pipeline, at most ``limit`` of them."""

    __slots__ = ("count", "limit", "lock")

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.limit = limit
        self.lock = threading.Lock()


class _Bound:
    """One pipeline's series on one configured pipeline; stage operations made on first use."""

    __slots__ = ("_hook", "_names", "_stages", "pipeline", "runs", "started")

    def __init__(self, hook: PipelineHook, pipeline_: Runtime) -> None:
        registry = pipeline_.registry
        assert registry is not None
        attributes = {PIPELINE: hook.name}
        self._hook = hook
        self.pipeline = pipeline_
        self.started = registry.instrument(RUNS_STARTED).bind(attributes)
        self.runs = OutcomeSeries(registry, RUNS_FINISHED, RUN_DURATION, RUNS_ACTIVE, attributes)
        self._stages: dict[str, _StageOp] = {}
        # Shared by every pipeline hook on this registry: stage names are capped in total.
        self._names = state_on(registry, _StageNames, lambda: _StageNames(pipeline_.config.hook_name_limit))

    def stage(self, name: str) -> _StageOp:
        op = self._stages.get(name)
        if op is None:
            names = self._names
            examples: list[str] = []
            with names.lock:
                op = self._stages.get(name)
                if op is None and names.count >= names.limit:
                    # Past the limit, new stage names share this pipeline's overflow stage.
                    op = self._stages.get(OVERFLOW_NAME)
                    if op is None:
                        examples = [*list(self._stages)[-3:], name]
                    name = OVERFLOW_NAME
                if op is None:
                    op = self._stages[name] = _StageOp(self._hook, name, self.pipeline)
                    names.count += name != OVERFLOW_NAME
            if examples:
                warn_names("pipeline stage", names.limit, examples)
        return op


class PipelineHook(Hook[_Bound]):
    """The runs and stages of one named pipeline. Use :func:`otel_pipeline.pipeline`."""

    kind = "pipeline"

    def _bind(self, pipeline_: Runtime) -> _Bound:
        return _Bound(self, pipeline_)

    def run(self, summary_path: Path | None = None) -> Any:
        """Time one run (see :func:`otel_pipeline.pipeline`)."""
        try:
            bound = self._current()
            if bound is not None:
                return Timed(_RunOp(self, bound, summary_path))
        except Exception as exc:
            internal_error("pipeline.run", exc)
        return _NoopRun(functools.partial(self.run, summary_path), self.name)

    def stage(self, name: str, run: Run | None = None, factory: Callable[[], Any] | None = None) -> Any:
        """Time one stage of this pipeline, as part of ``run`` when given."""
        factory = factory or functools.partial(self.stage, name, run)
        try:
            bound = self._current()
            if bound is not None:
                return _StageTimed(bound.stage(name), run, factory)
        except Exception as exc:
            internal_error("pipeline.stage", exc)
        return _NoopStage(factory)


class _NoopRun(Noop):
    """A run when instrumentation is off: ``with ... as run`` still offers ``run.stage()``."""

    __slots__ = ("_run",)

    def __init__(self, factory: Callable[[], Any], name: str) -> None:
        super().__init__(factory)
        self._run = Run(None, name, trace.INVALID_SPAN)

    def __enter__(self) -> Any:
        return self._run

    async def __aenter__(self) -> Any:
        return self._run


class _NoopStage(Noop):
    """A stage when instrumentation is off: ``with ... as stage`` still offers ``stage.processed()``."""

    __slots__ = ()

    def __enter__(self) -> Any:
        factory = self._factory  # partial(stage, name, ...): the name, for a warning to give
        name = factory.args[0] if isinstance(factory, functools.partial) and factory.args else ""
        return StageRun("", name, None, None)

    async def __aenter__(self) -> Any:
        return self.__enter__()


def pipeline(name: str, *, summary_path: str | Path | None = None) -> Scope[Run]:
    """Time one run of the pipeline ``name``; ``with ... as run`` binds a :class:`Run`.

    Also ``async with``, and a decorator for functions and coroutines (one run per call). With
    ``summary_path``, the run summary is written there as JSON when the run ends.

    >>> import otel_pipeline as op
    >>> @op.pipeline("hourly")
    ... def hourly() -> None:
    ...     with op.stage("fetch") as stage:
    ...         stage.processed(2)
    >>> hourly()
    """
    check_name("pipeline name", name)
    if summary_path is not None and not isinstance(summary_path, (str, Path)):
        raise TypeError(
            f"otel_pipeline: summary_path must be a str or pathlib.Path, got {type(summary_path).__name__} "
            f"{safe_repr(summary_path)}"
        )
    path = None if summary_path is None else Path(summary_path)
    scope: Scope[Run] = get_hook(PipelineHook, name).run(path)
    return scope


def stage(name: str, *, pipeline: str | None = None) -> Scope[StageRun]:
    """Time one stage of the run in progress; ``with ... as stage`` binds a :class:`StageRun`.

    The stage belongs to the run in progress in this context (``with op.pipeline(...)``), else to
    the pipeline named ``pipeline``, else to the pipeline ``"default"``. Also ``async with`` and
    a decorator: a decorated function finds the run in progress at each call.

    >>> import otel_pipeline as op
    >>> with op.pipeline("etl"):
    ...     with op.stage("extract") as stage:
    ...         stage.processed(5)
    """
    check_name("stage name", name)
    if pipeline is not None:
        check_name("pipeline name", pipeline)
    factory = functools.partial(stage, name, pipeline=pipeline)
    run = _CURRENT_RUN.get()
    scope: Scope[StageRun]
    if run is not None and (pipeline is None or pipeline == run.name):
        scope = _NoopStage(factory) if run._hook is None else run._hook.stage(name, run, factory)
    else:
        scope = get_hook(PipelineHook, pipeline or DEFAULT_PIPELINE).stage(name, None, factory)
    return scope


_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class Stage(abc.ABC):
    """Base class of a class-based stage: calling it runs :meth:`process` as a timed, counted stage.

    The stage is named ``stage_name`` (default: the class name in snake_case) and belongs to the
    run in progress (or to ``pipeline_name``). Items counted: :meth:`count_items`. ``process``
    may be a coroutine function; then calling the stage returns a coroutine.

    >>> import otel_pipeline as op
    >>> class Double(op.Stage):
    ...     def process(self, batch: list[int]) -> list[int]:
    ...         return [2 * x for x in batch]
    >>> with op.pipeline("numbers"):
    ...     Double()([1, 2, 3])
    [2, 4, 6]
    """

    stage_name: ClassVar[str | None] = None
    pipeline_name: ClassVar[str | None] = None

    @abc.abstractmethod
    def process(self, *args: Any, **kwargs: Any) -> Any:
        """Do the stage's work."""

    def count_items(self, result: Any, args: tuple[Any, ...]) -> float:
        """Items processed: ``len(result)`` if sized, else ``len`` of the first argument, else 1."""
        for candidate in (result, *args[:1]):
            if isinstance(candidate, Sized) and not isinstance(candidate, (str, bytes)):
                return len(candidate)
        return 1

    @property
    def name(self) -> str:
        """The stage's name."""
        return self.stage_name or _SNAKE.sub("_", type(self).__name__).lower()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run :meth:`process` inside the stage (awaitable when ``process`` is a coroutine function)."""
        if inspect.iscoroutinefunction(self.process):
            return self._run_async(*args, **kwargs)
        with stage(self.name, pipeline=self.pipeline_name) as current:
            result = self.process(*args, **kwargs)
            _count(self, current, result, args)
        return result

    async def _run_async(self, *args: Any, **kwargs: Any) -> Any:
        async with stage(self.name, pipeline=self.pipeline_name) as current:
            result = await self.process(*args, **kwargs)
            _count(self, current, result, args)
        return result


def _count(owner: Stage, current: StageRun, result: Any, args: tuple[Any, ...]) -> None:
    try:
        count = owner.count_items(result, args)
    except Exception:
        warn_once(f"count:{type(owner).__qualname__}", "%s.count_items failed", type(owner).__name__)
        return
    if is_amount(count):
        current.processed(count)
    else:
        warn_once(
            f"count-value:{type(owner).__qualname__}",
            "stage %r: count_items() returned %s, not a number >= 0 (at most 2**53); not counted",
            owner.name,
            safe_repr(count),
        )
