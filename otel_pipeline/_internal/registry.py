"""Instruments the hooks record through, in two interchangeable modes.

* ``core`` (default): :class:`CoreInstrument` keeps pre-bound series aggregated in process and
  turns them into OpenTelemetry points when a reader collects (see ``merge.py``).
* ``sdk``: :class:`SdkInstrument` calls plain OpenTelemetry SDK instruments. It is the reference
  the core is tested against, point for point.

Both give ``bind(attributes)`` a series with ``add`` / ``set`` / ``record``; observable metrics
go through the SDK's observable instruments in both modes. :meth:`Registry.instrument` is typed
by the spec's kind (see ``spec.SumSpec``...): the series of a counter has ``add`` only, a
histogram's ``record``, a gauge's ``set`` (typing only: the objects are the same).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from threading import Lock
from typing import Any, Generic, Protocol, TypeVar, overload

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics._internal.exemplar import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.errors import warn_once
from otel_pipeline._internal.series import (
    CounterSeries,
    GaugeSeries,
    HistogramSeries,
    RawExemplar,
    SumSeries,
    UpDownCounterSeries,
)
from otel_pipeline._internal.spec import GaugeSpec, HistogramSpec, Kind, MetricSpec, SumSpec
from otel_pipeline._internal.validation import INT64_MAX, INT64_MIN, drop_point, exportable, finite

__all__ = [
    "Adds",
    "CoreInstrument",
    "Instrument",
    "Observed",
    "Records",
    "Registry",
    "SdkInstrument",
    "Series",
    "Sets",
    "attribute_key",
]

AttributeValue = str | bool | int | float
Observed = Iterable[tuple[float, Mapping[str, AttributeValue]]]
OVERFLOW_ATTRIBUTES: dict[str, Any] = {"otel.metric.overflow": True}
_CUMULATIVE = AggregationTemporality.CUMULATIVE


def attribute_key(attributes: Mapping[str, Any]) -> tuple[tuple[str, str, Any], ...]:
    """A hashable identity of an attribute set (the value's type counts: True is not 1)."""
    return tuple(sorted((k, type(v).__name__, v) for k, v in attributes.items()))


class Adds(Protocol):
    """A bound counter or up-down counter series."""

    def add(self, amount: float = 1) -> None: ...


class Records(Protocol):
    """A bound histogram series."""

    def record(self, value: float) -> None: ...


class Sets(Protocol):
    """A bound gauge series."""

    def set(self, value: float) -> None: ...


class Series(Adds, Records, Sets, Protocol):
    """A series of a spec whose kind is not known statically: each kind implements its one method."""


S_co = TypeVar("S_co", covariant=True)


class Instrument(Protocol, Generic[S_co]):
    """A metric the hooks bind series on; ``S_co`` is what its series offer (``Adds``...)."""

    @property
    def spec(self) -> MetricSpec: ...

    def bind(
        self, attributes: Mapping[str, AttributeValue] | None = None, lock: Lock | None = None
    ) -> S_co: ...


class CoreInstrument:
    """A metric whose series aggregate in process, capped at ``limit`` distinct attribute sets."""

    def __init__(self, spec: MetricSpec, buckets: tuple[float, ...], limit: int, readers: int = 1) -> None:
        self.spec = spec
        self._buckets = buckets
        self._limit = limit
        #: How many readers collect this instrument (each has exemplar reservoirs of its own).
        self._readers = readers
        self._series: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def _new_series(self, attributes: dict[str, Any], lock: Lock | None = None) -> Any:
        kind = self.spec.kind
        if kind is Kind.COUNTER:
            return CounterSeries(self.spec.name, attributes, lock, self._readers)
        if kind is Kind.UP_DOWN_COUNTER:
            return UpDownCounterSeries(self.spec.name, attributes, lock, self._readers)
        if kind is Kind.GAUGE:
            return GaugeSeries(self.spec.name, attributes, lock, self._readers)
        return HistogramSeries(self.spec.name, attributes, self._buckets, lock, self._readers)

    def bind(self, attributes: Mapping[str, AttributeValue] | None = None, lock: Lock | None = None) -> Any:
        """The series for this attribute set; the overflow series once the cap is reached.

        A series created by this call uses ``lock`` when given, so that series recorded together
        (see ``OutcomeSeries``) can share one lock.
        """
        attrs = dict(attributes) if attributes else {}
        key = attribute_key(attrs)
        series = self._series.get(key)
        if series is not None:
            return series
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self._limit:
                    # Like the SDK: past the cap every new attribute set folds into one series.
                    key = attribute_key(OVERFLOW_ATTRIBUTES)
                    series = self._series.get(key)
                    if series is None:
                        warn_once(
                            f"overflow:{self.spec.name}",
                            "metric %s reached its cardinality limit of %d attribute sets; further sets are "
                            "folded into otel.metric.overflow=true",
                            self.spec.name,
                            self._limit,
                        )
                        series = self._series[key] = self._new_series(dict(OVERFLOW_ATTRIBUTES))
                else:
                    series = self._series[key] = self._new_series(attrs, lock)
        return series

    def series_count(self) -> int:
        return len(self._series)

    def collect(self, now: int, reader: int = 0) -> Metric | None:
        """A metric with one cumulative point per series recorded into, with ``reader``'s exemplars."""
        with self._lock:
            all_series = list(self._series.values())
        spec = self.spec
        if spec.kind is Kind.HISTOGRAM:
            histogram_points = [
                p for p in (_histogram_point(s, now, reader) for s in all_series) if p is not None
            ]
            if not histogram_points:
                return None
            data: Any = Histogram(data_points=histogram_points, aggregation_temporality=_CUMULATIVE)
        else:
            number_points = [
                p for p in (_number_point(s, now, spec.kind, reader) for s in all_series) if p is not None
            ]
            if not number_points:
                return None
            if spec.kind is Kind.GAUGE:
                data = Gauge(data_points=number_points)
            else:
                data = Sum(
                    data_points=number_points,
                    aggregation_temporality=_CUMULATIVE,
                    is_monotonic=spec.kind is Kind.COUNTER,
                )
        return Metric(name=spec.name, description=spec.description, unit=spec.unit, data=data)


def _exemplar(raw: RawExemplar, attributes: dict[str, Any]) -> Exemplar:
    value, time_unix_nano, span_id, trace_id = raw
    # The SDK keeps the measurement's attributes not already on the point: none, for a bound series.
    return Exemplar({} if attributes else None, value, time_unix_nano, span_id, trace_id)


def _number_point(series: SumSeries, now: int, kind: Kind, reader: int) -> NumberDataPoint | None:
    touched, value, raw = series.snapshot(reader)
    if not touched:
        return None
    cls = type(value)  # the usual int or float is checked inline: this runs once per series
    if not (
        (cls is int and INT64_MIN <= value <= INT64_MAX) or (cls is float and value - value == 0.0)
    ) and not exportable(value):  # e.g. an integer sum past int64 (OTLP's as_int)
        drop_point(series.name, value, series.attributes)
        return None
    return NumberDataPoint(
        attributes=series.attributes,
        exemplars=[_exemplar(raw, series.attributes)] if raw else [],
        start_time_unix_nano=None if kind is Kind.GAUGE else series.start_time,  # type: ignore[arg-type]
        time_unix_nano=now,
        value=value,
    )


def _histogram_point(series: HistogramSeries, now: int, reader: int) -> HistogramDataPoint | None:
    counts, total, minimum, maximum, raws = series.snapshot(reader)
    count = sum(counts)
    if not count:
        return None
    # Recorded values are >= 0, so a finite sum means finite values, min and max too.
    if not (type(total) is float and total - total == 0.0) and not finite(total):
        drop_point(series.name, total, series.attributes)
        return None
    return HistogramDataPoint(
        attributes=series.attributes,
        exemplars=[_exemplar(raw, series.attributes) for raw in raws],
        start_time_unix_nano=series.start_time,
        time_unix_nano=now,
        count=count,
        sum=total,
        bucket_counts=tuple(counts),
        explicit_bounds=series.bounds,
        min=minimum,
        max=maximum,
    )


class _SdkSeries:
    """A plain SDK instrument with its attributes frozen (the reference mode)."""

    __slots__ = ("_attributes", "_call")

    def __init__(self, call: Callable[..., None], attributes: dict[str, Any]) -> None:
        self._call = call
        self._attributes = attributes

    def add(self, amount: float = 1) -> None:
        self._call(amount, self._attributes)

    set = record = add


class SdkInstrument:
    """A metric recorded straight into an OpenTelemetry SDK instrument."""

    def __init__(self, spec: MetricSpec, meter: Meter, buckets: tuple[float, ...], limit: int) -> None:
        self.spec = spec
        self._limit = limit
        self._cache: dict[tuple[Any, ...], _SdkSeries] = {}
        kind = spec.kind
        if kind is Kind.COUNTER:
            self._call = meter.create_counter(spec.name, spec.unit, spec.description).add
        elif kind is Kind.UP_DOWN_COUNTER:
            self._call = meter.create_up_down_counter(spec.name, spec.unit, spec.description).add
        elif kind is Kind.GAUGE:
            self._call = meter.create_gauge(spec.name, spec.unit, spec.description).set
        else:
            self._call = meter.create_histogram(
                spec.name, spec.unit, spec.description, explicit_bucket_boundaries_advisory=list(buckets)
            ).record

    def bind(
        self, attributes: Mapping[str, AttributeValue] | None = None, lock: Lock | None = None
    ) -> _SdkSeries:
        attrs = dict(attributes) if attributes else {}
        key = attribute_key(attrs)
        series = self._cache.get(key)
        if series is None:
            series = _SdkSeries(self._call, attrs)
            if len(self._cache) < self._limit:  # the SDK applies the cap itself; we only bound our cache
                self._cache[key] = series
        return series

    def collect(self, now: int, reader: int = 0) -> Metric | None:
        return None  # the SDK collects its own instruments


class Registry:
    """The instruments of one configured pipeline, in ``core`` or ``sdk`` mode."""

    def __init__(
        self,
        meter: Meter,
        *,
        mode: str = "core",
        buckets: tuple[float, ...],
        cardinality_limit: int = 2000,
    ) -> None:
        self.meter = meter
        self.mode = mode
        self.buckets = buckets
        self.cardinality_limit = cardinality_limit
        self.enabled = True
        #: Readers attached so far (see ``add_reader``); fixed before any hook binds a series.
        self.readers = 0
        self._instruments: dict[str, CoreInstrument | SdkInstrument] = {}
        self._observed: set[str] = set()
        self._lock = threading.Lock()
        #: What hooks keep per pipeline (see ``hook.state_on``): it is freed with the registry.
        self.hook_states: dict[Any, Any] = {}

    # A typed spec is a MetricSpec too: its overload wins, the last is for specs of unknown kind.
    @overload
    def instrument(self, spec: SumSpec) -> Instrument[Adds]: ...  # type: ignore[overload-overlap]
    @overload
    def instrument(self, spec: HistogramSpec) -> Instrument[Records]: ...  # type: ignore[overload-overlap]
    @overload
    def instrument(self, spec: GaugeSpec) -> Instrument[Sets]: ...  # type: ignore[overload-overlap]
    @overload
    def instrument(self, spec: MetricSpec) -> Instrument[Series]: ...

    def instrument(self, spec: MetricSpec) -> CoreInstrument | SdkInstrument:
        """The instrument for ``spec``, created on first use (same spec, same instrument).

        Typed by the spec's kind (``catalogue.declare`` types it): see the module docs.
        """
        found = self._instruments.get(spec.name)
        if found is not None:
            return found
        if spec.kind.observable:
            raise ValueError(f"metric {spec.name!r} is observable: register it with observe()")
        with self._lock:
            found = self._instruments.get(spec.name)
            if found is None:
                if self.mode == "core":
                    found = CoreInstrument(spec, self.buckets, self.cardinality_limit, max(1, self.readers))
                else:
                    found = SdkInstrument(spec, self.meter, self.buckets, self.cardinality_limit)
                self._instruments[spec.name] = found
        return found

    def observe(self, spec: MetricSpec, callback: Callable[[], Observed]) -> None:
        """Register an observable metric; ``callback`` yields ``(value, attributes)`` at collection.

        A callback that raises is logged once and yields nothing; after shutdown it is not called.
        One callback per metric name: later registrations of the same name are ignored, so hooks
        register a single callback that walks all their instances.
        """
        if not spec.kind.observable:
            raise ValueError(f"metric {spec.name!r} is not observable: use instrument()")
        with self._lock:
            if spec.name in self._observed:
                return
            self._observed.add(spec.name)

        monotonic = spec.kind is Kind.OBSERVABLE_COUNTER

        def observations(options: CallbackOptions) -> Iterable[Observation]:
            if not self.enabled:
                return []
            try:
                found = []
                for value, attributes in callback():
                    # A value no exporter can encode (or a negative counter) is dropped, not the rest.
                    if exportable(value) and (not monotonic or value >= 0):
                        found.append(Observation(value, dict(attributes)))
                    else:
                        drop_point(spec.name, value, attributes)
                return found
            except Exception as exc:  # hooks contain the application's functions: this one is ours
                internal_error(
                    f"callback:{spec.name}", exc, "observable %s: callback failed; skipped", spec.name
                )
                return []

        create = {
            Kind.OBSERVABLE_COUNTER: self.meter.create_observable_counter,
            Kind.OBSERVABLE_UP_DOWN_COUNTER: self.meter.create_observable_up_down_counter,
            Kind.OBSERVABLE_GAUGE: self.meter.create_observable_gauge,
        }[spec.kind]
        create(spec.name, [observations], spec.unit, spec.description)

    def add_reader(self) -> int:
        """Register one more reader of this registry; returns its index (for its exemplars)."""
        with self._lock:
            self.readers += 1
            return self.readers - 1

    def collect(self, now: int, reader: int = 0) -> list[Metric]:
        """Points of every core-mode instrument (empty in sdk mode), as reader ``reader`` sees them."""
        if not self.enabled:
            return []
        with self._lock:
            instruments = list(self._instruments.values())
        metrics = []
        for instrument in instruments:
            metric = instrument.collect(now, reader)
            if metric is not None:
                metrics.append(metric)
        return metrics
