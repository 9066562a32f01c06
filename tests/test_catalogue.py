"""The metric catalogue: docs/metrics.md is current, names follow the rules, and the Prometheus
names we compute are exactly what the /metrics exposition and the stock exporter produce."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

from otel_pipeline._internal.exposition import ScrapeReader
from otel_pipeline._internal.promnames import (
    label_name,
    metric_name,
    prometheus_name,
    prometheus_type,
    sample_names,
)
from otel_pipeline._internal.spec import Kind, MetricSpec
from otel_pipeline.hooks import all_metrics
from tools import docgen

CATALOGUE = all_metrics()
UNIT = re.compile(r"^(s|By|1|\{[a-z_]+\})$")


def test_docs_metrics_md_is_current() -> None:
    committed = docgen.DEFAULT_OUTPUT.read_text(encoding="utf-8")
    assert committed == docgen.render(), (
        f"docs/metrics.md is out of date with the metric catalogue; run: {docgen.COMMAND}"
    )


def test_docgen_main_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "metrics.md"
    assert docgen.main(["--check", "--output", str(output)]) == 1
    assert "is out of date with the metric catalogue; run: python -m tools.docgen" in (
        capsys.readouterr().err
    )
    assert docgen.main(["--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == docgen.render()
    assert docgen.main(["--check", "--output", str(output)]) == 0
    output.write_text(docgen.render() + "edited by hand\n", encoding="utf-8")
    assert docgen.main(["--check", "--output", str(output)]) == 1


def test_render_lists_every_metric_under_its_hook() -> None:
    specs = [
        MetricSpec("b.count", Kind.COUNTER, "{thing}", "Things | counted.", ("b.name",), "beta"),
        MetricSpec("a.time", Kind.HISTOGRAM, "s", "Time.", (), "alpha"),
        MetricSpec("b.level", Kind.OBSERVABLE_UP_DOWN_COUNTER, "By", "Level.", (), "beta"),
    ]
    text = docgen.render(specs)
    body, _, rules = text[text.index("3 metrics") :].partition("\n## Worker groups: merge rules\n")
    assert rules.endswith(
        "| Metric | Merge |\n|---|---|\n"
        "| `a.time` | `sum` |\n| `b.count` | `sum` |\n| `b.level` | `live_sum` |\n"
    )
    assert body == (
        "3 metrics from 2 hooks: alpha, beta.\n\n"
        "## alpha\n\n"
        "| Metric | Kind | Unit | Attributes | Prometheus | Description |\n"
        "|---|---|---|---|---|---|\n"
        "| `a.time` | histogram | `s` | — | `a_time_seconds` histogram | Time. |\n\n"
        "## beta\n\n"
        "| Metric | Kind | Unit | Attributes | Prometheus | Description |\n"
        "|---|---|---|---|---|---|\n"
        "| `b.count` | counter | `{thing}` | `b.name` | `b_count_total` counter | Things \\| counted. |\n"
        "| `b.level` | observable up-down counter | `By` | — | `b_level_bytes` gauge | Level. |\n"
    )


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("queue.job.duration", "s", Kind.HISTOGRAM, "queue_job_duration_seconds"),
        ("queue.jobs.enqueued", "{job}", Kind.COUNTER, "queue_jobs_enqueued_total"),
        ("queue.jobs.in_progress", "{job}", Kind.UP_DOWN_COUNTER, "queue_jobs_in_progress"),
        ("cache.hit_ratio", "1", Kind.OBSERVABLE_GAUGE, "cache_hit_ratio"),
        ("cache.size", "By", Kind.OBSERVABLE_UP_DOWN_COUNTER, "cache_size_bytes"),
        ("process.cpu.time", "s", Kind.OBSERVABLE_COUNTER, "process_cpu_time_seconds_total"),
        ("requests.total", "{request}", Kind.COUNTER, "requests_total"),
        ("io.time_seconds", "s", Kind.GAUGE, "io_time_seconds"),
        ("net.rate", "By/s", Kind.GAUGE, "net_rate_bytes_per_second"),
        ("2xx.responses", "", Kind.COUNTER, "_xx_responses_total"),
    ],
)
def test_metric_name_rules(name: str, unit: str, kind: Kind, expected: str) -> None:
    assert metric_name(name, unit, kind) == expected


def test_types_labels_and_samples() -> None:
    assert [prometheus_type(kind) for kind in Kind] == [
        "counter",
        "gauge",
        "gauge",
        "histogram",
        "counter",
        "gauge",
        "gauge",
    ]
    assert label_name("queue.name") == "queue_name"
    histogram = MetricSpec("a.b", Kind.HISTOGRAM, "s", "x.")
    assert sample_names(histogram) == ("a_b_seconds_bucket", "a_b_seconds_sum", "a_b_seconds_count")
    assert sample_names(MetricSpec("a.b", Kind.COUNTER, "1", "x.")) == ("a_b_total",)


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.name)
def test_catalogue_entry_follows_the_conventions(spec: MetricSpec) -> None:
    # The SDK lowercases instrument names and the core does not: lowercase keeps both modes equal.
    assert spec.name == spec.name.lower()
    assert UNIT.match(spec.unit), f"{spec.name}: unit {spec.unit!r} is not s, By, 1 or a {{annotation}}"
    assert spec.description.endswith(".")
    assert "\n" not in spec.description
    assert spec.hook
    assert len(set(spec.attributes)) == len(spec.attributes)
    if spec.name.endswith(".duration"):
        assert (spec.kind, spec.unit) == (Kind.HISTOGRAM, "s")


def test_prometheus_names_are_unique_across_the_catalogue() -> None:
    owners: dict[str, str] = {}
    for spec in CATALOGUE:
        for sample in {prometheus_name(spec), *sample_names(spec)}:
            assert sample not in owners, f"{spec.name} and {owners[sample]} are both exposed as {sample}"
            owners[sample] = spec.name


def exposition_names(text: str) -> tuple[set[tuple[str, str]], set[str]]:
    """({(family, type)} from the TYPE lines, {sample names}) of a Prometheus text exposition."""
    families = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    samples = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    return families, samples


def test_computed_names_are_those_the_expositions_produce() -> None:
    """Every catalogue metric, recorded through plain SDK instruments, read by /metrics' reader and
    by the stock OpenTelemetry Prometheus exporter: the names and types are exactly ours."""
    registry = CollectorRegistry()
    stock = PrometheusMetricReader(registry=registry)
    ours = ScrapeReader()
    provider = MeterProvider(metric_readers=[stock, ours])
    meter = provider.get_meter("catalogue-test")
    for spec in CATALOGUE:
        attributes = {key: "x" for key in spec.attributes}

        def observe(options: CallbackOptions, attributes: dict[str, str] = attributes) -> list[Observation]:
            return [Observation(1, attributes)]

        if spec.kind is Kind.COUNTER:
            meter.create_counter(spec.name, spec.unit, spec.description).add(1, attributes)
        elif spec.kind is Kind.UP_DOWN_COUNTER:
            meter.create_up_down_counter(spec.name, spec.unit, spec.description).add(1, attributes)
        elif spec.kind is Kind.GAUGE:
            meter.create_gauge(spec.name, spec.unit, spec.description).set(1, attributes)
        elif spec.kind is Kind.HISTOGRAM:
            meter.create_histogram(spec.name, spec.unit, spec.description).record(1, attributes)
        elif spec.kind is Kind.OBSERVABLE_COUNTER:
            meter.create_observable_counter(spec.name, [observe], spec.unit, spec.description)
        elif spec.kind is Kind.OBSERVABLE_UP_DOWN_COUNTER:
            meter.create_observable_up_down_counter(spec.name, [observe], spec.unit, spec.description)
        else:
            meter.create_observable_gauge(spec.name, [observe], spec.unit, spec.description)
    try:
        expected_families = {(prometheus_name(s), prometheus_type(s.kind)) for s in CATALOGUE}
        expected_samples = {sample for s in CATALOGUE for sample in sample_names(s)}
        for text in (generate_latest(registry).decode(), ours.scrape("")[0].decode()):
            families, samples = exposition_names(text)
            assert families - {("target_info", "gauge")} == expected_families
            assert samples - {"target_info"} == expected_samples
    finally:
        provider.shutdown()
