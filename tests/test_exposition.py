"""/metrics exposition: byte-for-byte the stock exporter's text, plus exemplars in OpenMetrics."""

from __future__ import annotations

import math
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.prometheus import _CustomCollector
from opentelemetry.exporter.prometheus._mapping import sanitize_full_name
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline._internal.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    ScrapeReader,
    negotiate,
    render,
)
from otel_pipeline.config import Config

CUMULATIVE = AggregationTemporality.CUMULATIVE
DELTA = AggregationTemporality.DELTA
OM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
EXEMPLAR = re.compile(r' # \{trace_id="([0-9a-f]{32})",span_id="([0-9a-f]{16})"\} (\S+) (\d+\.\d{9})$')
_om_generate = cast("Callable[..., bytes]", openmetrics_exposition.generate_latest)
_om_parse = cast("Callable[[str], Iterator[Any]]", openmetrics_parser.text_string_to_metric_families)


def stock(data: MetricsData, openmetrics: bool = False) -> bytes:
    """What opentelemetry-exporter-prometheus + prometheus_client make of ``data``."""
    collector = _CustomCollector()
    collector.add_metrics_data(data)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return _om_generate(registry) if openmetrics else generate_latest(registry)


def without_exemplars(body: bytes) -> bytes:
    return re.sub(rb' # \{trace_id="[0-9a-f]+",span_id="[0-9a-f]+"\} \S+ \S+\n', b"\n", body)


def number(
    attributes: Mapping[str, Any], value: float, exemplars: Sequence[Exemplar] = ()
) -> NumberDataPoint:
    return NumberDataPoint(dict(attributes), 1, 2, value, list(exemplars))


def histogram_point(
    attributes: Mapping[str, Any],
    counts: Sequence[int],
    bounds: Sequence[float],
    total: float,
    exemplars: Sequence[Exemplar] = (),
) -> HistogramDataPoint:
    return HistogramDataPoint(
        dict(attributes), 1, 2, sum(counts), total, list(counts), list(bounds), 0.0, 1.0, list(exemplars)
    )


def metrics_data(
    scopes: Sequence[tuple[InstrumentationScope, Sequence[Metric]]], **resource: Any
) -> MetricsData:
    scope_metrics = [ScopeMetrics(scope, list(metrics), scope.schema_url or "") for scope, metrics in scopes]
    return MetricsData([ResourceMetrics(Resource(resource), scope_metrics, "")])


SCOPE = InstrumentationScope("app", "1.0", "https://opentelemetry.io/schemas/1.21.0", {"tier": "web"})
OTHER_SCOPE = InstrumentationScope("lib", None, None, None)
BOUNDS = (0.005, 0.1, 1.0, 2.5)


def rich_data() -> MetricsData:
    """Every shape the stock exporter handles, with the awkward values it must escape or format."""
    odd = 'back\\slash "quoted"\nnewline ünïcode'
    attrs = {"queue.name": "emails", "9lives": odd, "n": 3, "f": 1.5, "b": True, "l": ["a", 2], "x": math.nan}
    metrics = [
        Metric("jobs.done", "Jobs done.\nSecond \\ line", "{job}", Sum([number(attrs, 7)], CUMULATIVE, True)),
        # A counter named *_total with a unit: the suffix moves after the unit.
        Metric("bytes_total", "Bytes.", "By", Sum([number({"q": "a"}, 1e21)], CUMULATIVE, True)),
        # Cumulative non-monotonic: a gauge. Delta non-monotonic stays a counter.
        Metric("in.flight", "In flight.", "{job}", Sum([number({"q": "a"}, -2)], CUMULATIVE, False)),
        Metric("delta.sum", "Delta.", "1", Sum([number({}, 4)], DELTA, False)),
        Metric(
            "temperature",
            "",
            "Cel",
            Gauge([number({"room": "a"}, math.inf), number({"room": "b"}, -math.inf), number({}, math.nan)]),
        ),
        Metric("speed", "Speed.", "m/s", Gauge([number({"le": "attr"}, 0.1 + 0.2)])),
        Metric(
            "job.duration",
            "Durations.",
            "s",
            Histogram(
                [
                    histogram_point({"queue.name": "emails"}, [1, 0, 2, 0, 1], BOUNDS, 3.25),
                    # Labels sorting after "le", a missing label backfilled with "".
                    histogram_point({"zone": "z", "queue.name": "sms"}, [0, 0, 0, 0, 5], BOUNDS, math.inf),
                    histogram_point({"le": "attr"}, [2], (), 0.5),
                ],
                CUMULATIVE,
            ),
        ),
        Metric(
            "signed",
            "Negative bounds.",
            "",
            Histogram([histogram_point({}, [1, 1], (-1.0,), -0.5)], CUMULATIVE),
        ),
        Metric(
            "big.bounds",
            "Go floats.",
            "ms",
            Histogram([histogram_point({}, [1, 2, 3], (1e-7, 12345678.0), 9)], DELTA),
        ),
        Metric("empty", "No points yet.", "s", Sum([], CUMULATIVE, True)),
    ]
    same_family = Metric(
        "jobs.done", "Jobs done.\nSecond \\ line", "{job}", Sum([number(attrs, 1)], CUMULATIVE, True)
    )
    return metrics_data(
        [(SCOPE, metrics), (InstrumentationScope("lib", "2.0", None, {"tier": "db"}), [same_family])],
        **{"service.name": "orders", "host.name": 'h"1', "process.pid": 42, "weird key!": 1.0},
    )


# -- the stock exporter's output, byte for byte ---------------------------------------------------


def test_text_is_byte_identical_to_the_stock_exporter() -> None:
    data = rich_data()
    ours = render(data)
    assert ours == stock(data)
    text = ours.decode()
    assert "# HELP target_info Target metadata\n# TYPE target_info gauge\n" in text
    assert (
        'target_info{host_name="h\\"1",process_pid="42",service_name="orders",weird_key_="1.0"} 1.0\n' in text
    )
    assert "# TYPE bytes_bytes_total counter\nbytes_bytes_total{" in text
    assert "# TYPE in_flight gauge\n" in text
    assert "# TYPE delta_sum_total counter\n" in text
    assert "# HELP jobs_done_total Jobs done.\\nSecond \\\\ line\n" in text
    assert '_lives="back\\\\slash \\"quoted\\"\\nnewline ünïcode"' in text
    assert 'b="true",f="1.5",l="[\\"a\\", 2]",n="3"' in text
    assert 'x="NaN"' in text
    assert "temperature_celsius{" in text
    assert "} +Inf\n" in text
    assert "} -Inf\n" in text
    assert "} NaN\n" in text
    assert 'speed_meters_per_second{le="attr",' in text
    assert (
        'job_duration_seconds_bucket{le="0.005",otel_scope_name="app",otel_scope_schema_url='
        '"https://opentelemetry.io/schemas/1.21.0",otel_scope_tier="web",otel_scope_version="1.0",'
        'queue_name="emails",zone=""} 1.0\n'
    ) in text
    assert 'job_duration_seconds_bucket{le="+Inf",' in text
    assert 'queue_name="sms",zone="z"} 5.0\njob_duration_seconds_count{' in text
    assert "job_duration_seconds_sum{" in text
    assert "} +Inf\n" in text
    assert 'big_bounds_milliseconds_bucket{le="1e-07",' in text
    assert 'big_bounds_milliseconds_bucket{le="12345678.0",' in text
    assert "signed_bucket" in text
    assert "signed_count" not in text
    assert "signed_sum" not in text
    assert text.endswith("# HELP empty_seconds_total No points yet.\n# TYPE empty_seconds_total counter\n")
    # The second scope's metric joins the first one's family.
    assert text.count("# TYPE jobs_done_total counter") == 1
    assert text.count("jobs_done_total{") == 2


def test_openmetrics_without_exemplars_is_byte_identical_to_the_stock_exporter() -> None:
    data = rich_data()
    ours = render(data, openmetrics=True)
    assert ours == stock(data, openmetrics=True)
    text = ours.decode()
    assert text.startswith("# HELP target Target metadata\n# TYPE target info\ntarget_info{")
    assert "# HELP jobs_done Jobs done.\\nSecond \\\\ line\n# TYPE jobs_done counter\n" in text
    assert "# TYPE job_duration_seconds histogram\n# UNIT job_duration_seconds seconds\n" in text
    assert text.endswith("# EOF\n")


def test_the_text_format_parses_to_the_recorded_values() -> None:
    data = metrics_data(
        [
            (
                SCOPE,
                [
                    Metric("jobs", "Jobs.", "{job}", Sum([number({"q": 'a"b'}, 3)], CUMULATIVE, True)),
                    Metric(
                        "wait",
                        "Wait.",
                        "s",
                        Histogram([histogram_point({"q": "a"}, [1, 2, 0, 0, 4], BOUNDS, 9.5)], CUMULATIVE),
                    ),
                ],
            )
        ]
    )
    families = {family.name: family for family in text_string_to_metric_families(render(data).decode())}
    assert sorted(families) == ["jobs", "target_info", "wait_seconds"]
    (jobs,) = families["jobs"].samples
    assert (jobs.name, jobs.labels["q"], jobs.value) == ("jobs_total", 'a"b', 3.0)
    buckets = [
        (s.labels["le"], s.value) for s in families["wait_seconds"].samples if s.name.endswith("_bucket")
    ]
    assert buckets == [("0.005", 1.0), ("0.1", 3.0), ("1.0", 3.0), ("2.5", 3.0), ("+Inf", 7.0)]
    others = {s.name: s.value for s in families["wait_seconds"].samples if not s.name.endswith("_bucket")}
    assert others == {"wait_seconds_count": 7.0, "wait_seconds_sum": 9.5}


def test_same_family_with_other_label_names_keeps_each_samples_labels() -> None:
    # The stock exporter would pair the second metric's values with the first one's label names.
    first = Metric("jobs", "Jobs.", "", Sum([number({"a": "1"}, 1)], CUMULATIVE, True))
    second = Metric("jobs", "Jobs.", "", Sum([number({"b": "2"}, 2)], CUMULATIVE, True))
    scope = InstrumentationScope("s", None, None, None)
    text = render(metrics_data([(scope, [first]), (OTHER_SCOPE, [second])])).decode()
    scope_labels = 'otel_scope_schema_url="",otel_scope_version=""'
    assert text.split("\n")[3:] == [
        "# HELP jobs_total Jobs.",
        "# TYPE jobs_total counter",
        f'jobs_total{{a="1",otel_scope_name="s",{scope_labels}}} 1.0',
        f'jobs_total{{b="2",otel_scope_name="lib",{scope_labels}}} 2.0',
        "",
    ]


def test_a_colon_from_the_unit_stays_in_openmetrics_sample_names() -> None:
    data = metrics_data([(OTHER_SCOPE, [Metric("x", "X.", "a:b", Sum([number({}, 1)], CUMULATIVE, True))])])
    assert render(data) == stock(data)
    text = render(data, openmetrics=True).decode()
    # The stock exporter writes the sample as x_a_b_total under a family x_a:b.
    assert b"x_a_b_total{" in stock(data, openmetrics=True)
    assert "# TYPE x_a:b counter\n# UNIT x_a:b a:b\nx_a:b_total{" in text
    (family,) = [f for f in _om_parse(text) if f.name != "target"]
    assert [(s.name, s.value) for s in family.samples] == [("x_a:b_total", 1.0)]


def test_exponential_histograms_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    point = ExponentialHistogramDataPoint(
        {}, 1, 2, 1, 1.0, 0, 0, Buckets(0, [1]), Buckets(0, []), 0, 1.0, 1.0
    )
    kept = Metric("kept", "Kept.", "", Gauge([number({}, 1)]))
    skipped = Metric("expo", "Exponential.", "s", ExponentialHistogram([point], CUMULATIVE))
    with caplog.at_level("WARNING", logger="otel_pipeline"):
        ours = render(metrics_data([(OTHER_SCOPE, [skipped, kept])]))
        render(metrics_data([(OTHER_SCOPE, [skipped])]))
    # The stock exporter fails the whole scrape on them (it reads ``point.value``).
    with pytest.raises(AttributeError, match="value"):
        stock(metrics_data([(OTHER_SCOPE, [skipped, kept])]))
    assert ours == stock(metrics_data([(OTHER_SCOPE, [kept])]))
    assert [r.getMessage() for r in caplog.records if r.name == "otel_pipeline"] == [
        "/metrics: expo has data of type ExponentialHistogram, which Prometheus cannot show; skipped"
    ]


def test_nothing_collected_renders_an_empty_exposition() -> None:
    assert render(None) == b""
    assert render(None, openmetrics=True) == b"# EOF\n"
    empty = MetricsData([])
    assert (
        render(empty)
        == stock(empty)
        == b"# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info 1.0\n"
    )


# -- property: any data, same bytes ------------------------------------------------------------------

_UNITS = ["", "1", "s", "ms", "By", "{job}", "m/s", "1/s", "%", "Cel", "odd unit", "By/{x}"]
_attribute_values = st.one_of(
    st.text(max_size=8),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
)
_attributes = st.dictionaries(
    st.one_of(st.sampled_from(["le", "queue.name", "a.b", "a_b", "9x"]), st.text(min_size=1, max_size=6)),
    _attribute_values,
    max_size=4,
)
_values = st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def _metric(draw: st.DrawFn, name: str) -> Metric:
    description = draw(st.text(max_size=12))
    unit = draw(st.sampled_from(_UNITS))
    kind = draw(st.sampled_from(["counter", "updown", "delta", "gauge", "histogram"]))
    count = draw(st.integers(0, 3))
    points: list[Any] = []
    if kind == "histogram":
        bounds = sorted(set(draw(st.lists(st.floats(-10, 1e9, allow_nan=False), max_size=4))))
        for _ in range(count):
            counts = draw(st.lists(st.integers(0, 10**7), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
            points.append(histogram_point(draw(_attributes), counts, bounds, draw(_values)))
        return Metric(name, description, unit, Histogram(points, draw(st.sampled_from([CUMULATIVE, DELTA]))))
    points = [number(draw(_attributes), draw(_values)) for _ in range(count)]
    if kind == "gauge":
        return Metric(name, description, unit, Gauge(points))
    temporality = DELTA if kind == "delta" else CUMULATIVE
    return Metric(name, description, unit, Sum(points, temporality, kind == "counter"))


@st.composite
def _metrics_data(draw: st.DrawFn) -> MetricsData:
    names = draw(
        st.lists(
            st.from_regex(r"[a-zA-Z][a-zA-Z0-9_./-]{0,12}", fullmatch=True),
            max_size=5,
            unique_by=sanitize_full_name,  # one family per name: see the mislabelling test above
        )
    )
    scopes = [SCOPE, OTHER_SCOPE]
    groups: list[tuple[InstrumentationScope, list[Metric]]] = [(scope, []) for scope in scopes]
    for name in names:
        groups[draw(st.integers(0, 1))][1].append(draw(_metric(name)))
    resource = draw(st.dictionaries(st.text(min_size=1, max_size=6), _attribute_values, max_size=3))
    return metrics_data(groups, **resource)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_metrics_data())
def test_any_metrics_data_renders_like_the_stock_exporter(data: MetricsData) -> None:
    assert render(data) == stock(data)
    assert render(data, openmetrics=True) == stock(data, openmetrics=True)


# -- content negotiation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        ("", False),
        ("text/plain", False),
        ("text/plain;version=0.0.4", False),
        ("*/*", False),
        ("application/openmetrics-text", True),
        (OM_ACCEPT, True),
        ("text/plain;q=0.5, application/openmetrics-text; version=1.0.0", True),
        ("application/openmetrics-text;version=0.0.1", False),
        ("application/openmetrics-text;version=0.0.1,application/openmetrics-text;version=2.0.0", True),
        ("application/openmetrics-text;version=x", False),
    ],
)
def test_negotiate_follows_prometheus_client(accept: str, openmetrics: bool) -> None:
    assert negotiate(accept) is openmetrics


# -- exemplars ----------------------------------------------------------------------------------------


class Scraped:
    """A pipeline (in ``mode``) whose metrics are read by a ScrapeReader, with captured spans."""

    def __init__(self, mode: str, sample_rate: float = 1.0) -> None:
        self.reader = ScrapeReader()
        self.spans = InMemorySpanExporter()
        config = Config.resolve(
            {}, service_name="scraped", exporter="none", instrument_mode=mode, trace_sample_rate=sample_rate
        )
        self.pipeline = runtime.build_pipeline(
            config,
            extra_readers=[self.reader],
            span_processors=[SimpleSpanProcessor(self.spans)],
            serve=False,
        )
        runtime.install(self.pipeline)

    def openmetrics(self) -> str:
        body, content_type = self.reader.scrape(OM_ACCEPT)
        assert content_type == OPENMETRICS_CONTENT_TYPE
        text = body.decode()
        list(_om_parse(text))  # valid OpenMetrics, or this raises
        return text

    def tracer(self) -> Any:
        assert self.pipeline.tracer_provider is not None
        return self.pipeline.tracer_provider.get_tracer("user")


@pytest.fixture(params=["core", "sdk"])
def scraped(request: pytest.FixtureRequest) -> Iterator[Scraped]:
    target = Scraped(str(request.param))
    yield target
    runtime.install(None)
    target.pipeline.shutdown(timeout=5)


def exemplar_lines(text: str) -> dict[str, tuple[str, str, float, float]]:
    """Sample (name and labels) -> (trace id, span id, value, timestamp) of each exemplar."""
    found = {}
    for line in text.splitlines():
        match = EXEMPLAR.search(line)
        if match:
            trace_id, span_id, value, seconds = match.groups()
            found[line[: match.start()].rsplit(" ", 1)[0]] = (trace_id, span_id, float(value), float(seconds))
    return found


def test_exemplars_carry_the_hook_span_and_its_trace(scraped: Scraped) -> None:
    queue = op.queue("emails")
    before = time.time()
    with scraped.tracer().start_as_current_span("handle") as user_span:
        with queue.processing():
            pass
        queue.enqueued()
    after = time.time()
    op.queue("sms").enqueued()  # outside any span: no exemplar
    (hook_span,) = [s for s in scraped.spans.get_finished_spans() if s.name == "queue.process emails"]
    assert hook_span.context is not None
    assert hook_span.parent is not None
    assert hook_span.parent.span_id == user_span.get_span_context().span_id
    trace_id = f"{user_span.get_span_context().trace_id:032x}"
    hook_span_id = f"{hook_span.context.span_id:016x}"
    user_span_id = f"{user_span.get_span_context().span_id:016x}"

    text = scraped.openmetrics()
    found = exemplar_lines(text)
    labels = f'otel_scope_name="otel_pipeline",otel_scope_schema_url="",otel_scope_version="{op.__version__}"'
    processed = f'queue_jobs_processed_total{{{labels},outcome="success",queue_name="emails"}}'
    enqueued = f'queue_jobs_enqueued_total{{{labels},queue_name="emails"}}'
    assert found[processed][:3] == (trace_id, hook_span_id, 1.0)
    assert found[enqueued][:3] == (trace_id, user_span_id, 1.0)
    (bucket,) = [key for key in found if key.startswith("queue_job_duration_seconds_bucket")]
    duration_trace, duration_span, duration, seconds = found[bucket]
    assert (duration_trace, duration_span) == (trace_id, hook_span_id)
    assert before <= seconds <= after
    # The one measurement: the exemplar's value is the histogram's sum, in the bucket it sits on.
    assert (
        f'queue_job_duration_seconds_sum{{{labels},outcome="success",queue_name="emails"}} {duration!r}'
        in text
    )
    le = float(bucket.split('le="', 1)[1].split('"', 1)[0])
    bounds = (0.0, *op.DEFAULT_DURATION_BUCKETS, math.inf)
    assert bounds[bounds.index(le) - 1] < duration <= le
    assert "queue_jobs_enqueued_total{" + labels + ',queue_name="sms"} 1.0\n' in text
    assert len(found) == 3  # none on sms (no span), in-progress (a gauge), _count/_sum
    # Exemplar labels stay within OpenMetrics' 128 characters.
    assert len("trace_id" + trace_id + "span_id" + hook_span_id) == 63


def test_the_text_format_carries_no_exemplars(scraped: Scraped) -> None:
    with scraped.tracer().start_as_current_span("handle"):
        op.queue("emails").enqueued(2)
    body, content_type = scraped.reader.scrape("text/plain")
    assert content_type == TEXT_CONTENT_TYPE
    assert b" # {" not in body
    assert (
        b'queue_jobs_enqueued_total{otel_scope_name="otel_pipeline",otel_scope_schema_url="",'
        b'otel_scope_version="' + op.__version__.encode() + b'",queue_name="emails"} 2.0\n'
    ) in body


def test_unsampled_spans_give_no_exemplars(scraped: Scraped) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    unsampled = NonRecordingSpan(SpanContext(0xABC, 0xDEF, False, TraceFlags(TraceFlags.DEFAULT)))
    with trace.use_span(unsampled):
        with op.queue("emails").processing():
            pass
        op.queue("emails").enqueued()
    text = scraped.openmetrics()
    assert exemplar_lines(text) == {}
    assert "queue_jobs_enqueued_total{" in text


def test_only_counters_and_buckets_carry_exemplars_and_only_with_ids() -> None:
    span_id, trace_id = 0x00F1, 0x0ABC
    with_ids = Exemplar({}, 0.05, 1_700_000_000_123_456_789, span_id, trace_id)
    no_ids = Exemplar({}, 2.0, 1_700_000_000_000_000_000, None, None)
    data = metrics_data(
        [
            (
                OTHER_SCOPE,
                [
                    Metric("c", "C.", "", Sum([number({}, 5, [with_ids])], CUMULATIVE, True)),
                    Metric("u", "U.", "", Sum([number({}, 5, [with_ids])], CUMULATIVE, False)),
                    Metric("g", "G.", "", Gauge([number({}, 5, [with_ids])])),
                    Metric(
                        "h",
                        "H.",
                        "s",
                        Histogram(
                            [histogram_point({}, [0, 1, 0, 1, 0], BOUNDS, 2.05, [no_ids, with_ids])],
                            CUMULATIVE,
                        ),
                    ),
                ],
            )
        ]
    )
    text = render(data, openmetrics=True).decode()
    list(_om_parse(text))
    ids = 'trace_id="00000000000000000000000000000abc",span_id="00000000000000f1"'
    suffix = f" # {{{ids}}} 0.05 1700000000.123456789"
    scope = 'otel_scope_name="lib",otel_scope_schema_url="",otel_scope_version=""'
    assert f"c_total{{{scope}}} 5.0{suffix}\n" in text
    assert f"u{{{scope}}} 5.0\n" in text
    assert f"g{{{scope}}} 5.0\n" in text
    assert f'h_seconds_bucket{{le="0.1",{scope}}} 1.0{suffix}\n' in text
    assert f'h_seconds_bucket{{le="2.5",{scope}}} 2.0\n' in text  # the exemplar without ids is dropped
    assert text.count(" # {") == 2
    assert without_exemplars(text.encode()) == stock(data, openmetrics=True)


# -- the reader and the /metrics route ----------------------------------------------------------------


def test_an_unregistered_reader_scrapes_nothing() -> None:
    reader = ScrapeReader()
    assert reader.scrape("") == (b"", TEXT_CONTENT_TYPE)
    assert reader.scrape("application/openmetrics-text") == (b"# EOF\n", OPENMETRICS_CONTENT_TYPE)
    reader.shutdown()


def test_concurrent_scrapes_each_get_the_whole_collection() -> None:
    reader = ScrapeReader()
    provider = MeterProvider(resource=Resource({}), metric_readers=[reader])
    counter = provider.get_meter("app").create_counter("jobs", "1", "Jobs.")
    for index in range(50):
        counter.add(index + 1, {"n": str(index)})
    bodies: list[bytes] = []

    def scrape() -> None:
        bodies.append(reader.scrape("")[0])

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.shutdown()
    assert len(bodies) == 4
    assert len(set(bodies)) == 1
    assert bodies[0].count(b"jobs_total{") == 50
    assert (
        b'jobs_total{n="49",otel_scope_name="app",otel_scope_schema_url="",otel_scope_version=""} 50.0\n'
        in bodies[0]
    )


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_metrics_endpoint_negotiates_the_format(mode: str) -> None:
    pipeline = op.configure(
        service_name="endpoint", exporter="prometheus", prometheus_port=0, instrument_mode=mode
    )
    assert pipeline.metrics_url is not None
    assert pipeline.tracer_provider is not None
    with pipeline.tracer_provider.get_tracer("user").start_as_current_span("handle") as span:
        op.queue("emails").enqueued(4)
    trace_id = f"{span.get_span_context().trace_id:032x}"

    def get(accept: str | None) -> tuple[str, str]:
        request = urllib.request.Request(pipeline.metrics_url or "")
        if accept is not None:
            request.add_header("Accept", accept)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["Content-Type"], response.read().decode()

    content_type, om = get(OM_ACCEPT)
    assert content_type == OPENMETRICS_CONTENT_TYPE
    families = {family.name: family for family in _om_parse(om)}
    (sample,) = families["queue_jobs_enqueued"].samples
    assert sample.value == 4.0
    assert sample.exemplar.labels == {
        "trace_id": trace_id,
        "span_id": f"{span.get_span_context().span_id:016x}",
    }
    assert sample.exemplar.value == 4.0

    content_type, text = get(None)
    assert content_type == TEXT_CONTENT_TYPE
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert [s.value for s in families["queue_jobs_enqueued"].samples] == [4.0]
    assert families["target_info"].samples[0].labels["service_name"] == "endpoint"
