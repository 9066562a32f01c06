"""configure() with an option it does not know: the TypeError configuration.md promises."""

from __future__ import annotations

from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline._internal.options import suggestions

KNOWN = (
    "cardinality_limit, enabled, export_interval, export_timeout, exporter, histogram_buckets, "
    "instrument_mode, otlp_endpoint, otlp_protocol, prometheus_host, prometheus_port, "
    "resource_attributes, service_name, service_version, trace_sample_rate"
)


def configure(**options: Any) -> op.Pipeline:
    return op.configure(**options)


def test_an_unknown_option_is_a_type_error_with_a_suggestion_and_the_known_options() -> None:
    with pytest.raises(TypeError) as error:
        configure(port=1)
    message = str(error.value)
    assert message.startswith(
        "otel_pipeline.configure() got unknown option(s) port (did you mean prometheus_port?); "
        "known options: "
    )
    # Every option of the signature is listed, whatever options it grows.
    listed = message.split("known options: ", 1)[1].split(", ")
    assert set(KNOWN.split(", ")) <= set(listed)
    assert listed == sorted(listed)
    assert "unknown" not in listed
    assert runtime.current() is None  # nothing was configured


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"sevice_name": "x", "colour": "red"}, "colour, sevice_name (did you mean service_name?)"),
        ({"endpoint": "http://x"}, "endpoint (did you mean otlp_endpoint?)"),
        ({"interval": 5}, "interval (did you mean export_interval?)"),
        ({"buckets": [1.0]}, "buckets (did you mean histogram_buckets?)"),
        ({"host": "0.0.0.0", "exporter": "none"}, "host (did you mean prometheus_host?)"),
        ({"sample_rate": 0.5}, "sample_rate (did you mean trace_sample_rate?)"),
        ({"xyz": 1}, "xyz"),
    ],
)
def test_each_unknown_option_is_named_with_what_it_may_have_meant(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(
        TypeError, match=r"^otel_pipeline\.configure\(\) got unknown option\(s\) (.*); known"
    ) as error:
        configure(**options)
    assert str(error.value).split("; known options: ")[0].endswith(f"option(s) {named}")
    assert runtime.current() is None


def test_suggestions_are_close_spellings_then_options_the_name_is_a_word_of() -> None:
    known = ["export_interval", "export_timeout", "prometheus_host", "prometheus_port", "service_name"]
    assert suggestions("prometheus_prot", known) == ["prometheus_port", "prometheus_host"]  # best first
    assert suggestions("export", known) == ["export_interval", "export_timeout"]
    assert suggestions("PORT", known) == ["prometheus_port"]
    assert suggestions("colour", known) == []
