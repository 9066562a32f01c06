"""Config: defaults, the OTEL_* variables, precedence, and every validation error."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from otel_pipeline.config import DEFAULT_DURATION_BUCKETS, ENVIRONMENT_VARIABLES, EXPORTERS, Config


def resolve(environ: dict[str, str] | None = None, **arguments: Any) -> Config:
    return Config.resolve(environ or {}, **arguments)


def test_defaults() -> None:
    config = resolve()
    assert config == Config(
        service_name="unknown_service",
        service_version="",
        exporter="prometheus",
        prometheus_host="127.0.0.1",
        prometheus_port=9464,
        otlp_endpoint=None,
        otlp_protocol="grpc",
        export_interval=10.0,
        export_timeout=5.0,
        trace_sample_rate=1.0,
        histogram_buckets=DEFAULT_DURATION_BUCKETS,
        enabled=True,
        instrument_mode="core",
        cardinality_limit=2000,
        resource_attributes={},
        pushgateway_url=None,
        pushgateway_grouping={},
        pushgateway_delete_on_shutdown=False,
        remote_write_url=None,
    )
    assert (config.exporters, config.exports("prometheus"), config.exports("otlp")) == (
        ("prometheus",),
        True,
        False,
    )
    assert config.histogram_buckets == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    )  # fmt: skip
    assert config.resolved_otlp_endpoint == "http://localhost:4317"
    assert resolve(otlp_protocol="http/protobuf").resolved_otlp_endpoint == "http://localhost:4318"
    assert resolve(otlp_endpoint="https://c:1").resolved_otlp_endpoint == "https://c:1"


EVERY_VARIABLE = {
    "OTEL_SERVICE_NAME": "from-env",
    "OTEL_SDK_DISABLED": "true",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_ENDPOINT": " http://collector:4318 ",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRIC_EXPORT_INTERVAL": "2500",
    "OTEL_METRIC_EXPORT_TIMEOUT": "1500",
    "OTEL_TRACES_SAMPLER_ARG": "0.25",
    "OTEL_EXPORTER_PROMETHEUS_HOST": "0.0.0.0",
    "OTEL_EXPORTER_PROMETHEUS_PORT": "9999",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=a%20b",
}


def test_every_variable_is_read() -> None:
    config = resolve(EVERY_VARIABLE)
    assert (
        config.service_name,
        config.enabled,
        config.exporter,
        config.otlp_endpoint,
        config.otlp_protocol,
        config.export_interval,
        config.export_timeout,
        config.trace_sample_rate,
        config.prometheus_host,
        config.prometheus_port,
        dict(config.resource_attributes),
    ) == (
        "from-env",
        False,
        "otlp",
        "http://collector:4318",
        "http/protobuf",
        2.5,
        1.5,
        0.25,
        "0.0.0.0",
        9999,
        {"deployment.environment": "prod", "team": "a b"},
    )


def test_explicit_arguments_win_over_every_variable() -> None:
    config = resolve(
        EVERY_VARIABLE,
        service_name="arg",
        enabled=True,
        exporter="none",
        otlp_endpoint="http://other:4317",
        otlp_protocol="grpc",
        export_interval=7.0,
        export_timeout=3.0,
        trace_sample_rate=1.0,
        prometheus_host="127.0.0.1",
        prometheus_port=1234,
        resource_attributes={"team": "c"},
    )
    assert (
        config.service_name,
        config.enabled,
        config.exporter,
        config.otlp_endpoint,
        config.otlp_protocol,
        config.export_interval,
        config.export_timeout,
        config.trace_sample_rate,
        config.prometheus_host,
        config.prometheus_port,
        dict(config.resource_attributes),
    ) == ("arg", True, "none", "http://other:4317", "grpc", 7.0, 3.0, 1.0, "127.0.0.1", 1234, {
        "deployment.environment": "prod",
        "team": "c",
    })  # fmt: skip


def test_none_means_not_given() -> None:
    assert resolve({"OTEL_SERVICE_NAME": "env"}, service_name=None).service_name == "env"


def test_every_documented_variable_maps_to_an_option() -> None:
    assert set(ENVIRONMENT_VARIABLES) <= {f for f in Config.__dataclass_fields__}
    assert ENVIRONMENT_VARIABLES["trace_sample_rate"] == "OTEL_TRACES_SAMPLER_ARG"


@pytest.mark.parametrize(
    ("raw", "enabled"),
    [
        ("true", False),
        ("TRUE", False),
        ("1", False),
        ("yes", False),
        ("false", True),
        ("0", True),
        ("", True),
    ],
)
def test_sdk_disabled(raw: str, enabled: bool) -> None:
    assert resolve({"OTEL_SDK_DISABLED": raw}).enabled is enabled


def test_service_name_and_version_from_resource_attributes() -> None:
    config = resolve({"OTEL_RESOURCE_ATTRIBUTES": "service.name=res,service.version=1.2"})
    assert (config.service_name, config.service_version) == ("res", "1.2")
    # OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES (as the spec says).
    config = resolve({"OTEL_RESOURCE_ATTRIBUTES": "service.name=res", "OTEL_SERVICE_NAME": "svc"})
    assert config.service_name == "svc"
    assert resolve({"OTEL_RESOURCE_ATTRIBUTES": " , a=1 ,"}).resource_attributes == {"a": "1"}


@pytest.mark.parametrize(
    ("sampler", "arg", "rate"),
    [
        ("always_on", "", 1.0),
        ("parentbased_always_on", "0.1", 1.0),
        ("always_off", "", 0.0),
        ("parentbased_always_off", "", 0.0),
        ("traceidratio", "0.5", 0.5),
        ("parentbased_traceidratio", "0.125", 0.125),
        ("parentbased_traceidratio", "", 1.0),
        ("", "0.75", 0.75),
    ],
)
def test_traces_sampler(sampler: str, arg: str, rate: float) -> None:
    environ = {"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": arg}
    assert resolve(environ).trace_sample_rate == rate


@pytest.mark.parametrize(
    ("given", "exporter", "exporters"),
    [
        ("prometheus,otlp", "prometheus,otlp", ("prometheus", "otlp")),
        (" console , otlp ", "console,otlp", ("console", "otlp")),
        (("prometheus", "pushgateway"), "prometheus,pushgateway", ("prometheus", "pushgateway")),
        (
            ["otlp", "remote_write", "prometheus"],
            "otlp,remote_write,prometheus",
            ("otlp", "remote_write", "prometheus"),
        ),
        ("none", "none", ("none",)),
    ],
)
def test_exporter_takes_several(given: Any, exporter: str, exporters: tuple[str, ...]) -> None:
    urls: dict[str, Any] = {
        "pushgateway_url": "http://gw:9091",
        "remote_write_url": "http://prom:9090/api/v1/write",
    }
    config = resolve(exporter=given, **urls)
    assert (config.exporter, config.exporters) == (exporter, exporters)
    assert {name for name in EXPORTERS if config.exports(name)} == set(exporters)
    # The same exporters, given as a string or a sequence, are the same configuration.
    assert config == resolve(exporter=",".join(exporters), **urls)


def test_metrics_exporter_variable_takes_a_list() -> None:
    config = resolve({"OTEL_METRICS_EXPORTER": "console, otlp"})
    assert (config.exporter, config.exporters) == ("console,otlp", ("console", "otlp"))
    assert resolve({"OTEL_METRICS_EXPORTER": "otlp,prometheus"}, exporter="none").exporter == "none"


ALLOWED_EXPORTERS = (
    "use one of 'prometheus', 'otlp', 'pushgateway', 'remote_write', 'console', 'none', "
    "or several joined by commas (e.g. 'prometheus,pushgateway')"
)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("jaeger", f"exporter='jaeger' is not valid; {ALLOWED_EXPORTERS}"),
        (
            "prometheus,jaeger",
            f"exporter='prometheus,jaeger' is not valid; 'jaeger' is not an exporter; {ALLOWED_EXPORTERS}",
        ),
        ("prometheus,", f"exporter='prometheus,' is not valid; '' is not an exporter; {ALLOWED_EXPORTERS}"),
        ("", f"exporter='' is not valid; {ALLOWED_EXPORTERS}"),
        (("otlp", "jaeger"), "exporter='otlp,jaeger' is not valid; 'jaeger' is not an exporter"),
        (("otlp", 3), f"exporter=('otlp', 3) is not valid; {ALLOWED_EXPORTERS}"),
        (7, f"exporter=7 is not valid; {ALLOWED_EXPORTERS}"),
        ("otlp,prometheus,otlp", "exporter='otlp,prometheus,otlp' is not valid; 'otlp' is named twice"),
        (
            ("prometheus", "prometheus"),
            "exporter='prometheus,prometheus' is not valid; 'prometheus' is named twice",
        ),
        ("none,otlp", "exporter='none,otlp' is not valid; 'none' cannot be combined with other exporters"),
        (
            "prometheus,pushgateway",
            "exporter='prometheus,pushgateway' needs pushgateway_url (e.g. 'http://localhost:9091'), "
            "or the environment variable OTEL_PIPELINE_PUSHGATEWAY_URL",
        ),
        (
            "remote_write",
            "exporter='remote_write' needs remote_write_url (e.g. 'http://localhost:9090/api/v1/write'), "
            "or the environment variable OTEL_PIPELINE_REMOTE_WRITE_URL",
        ),
    ],
)
def test_bad_exporters_name_the_value_and_what_is_allowed(given: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"^otel_pipeline: ") as raised:
        resolve(exporter=given)
    assert message in str(raised.value)
    assert type(raised.value) is ValueError


def test_bad_exporter_list_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ValueError, match="named twice") as raised:
        resolve({"OTEL_METRICS_EXPORTER": "prometheus,otlp,prometheus"})
    assert str(raised.value) == (
        "otel_pipeline: exporter='prometheus,otlp,prometheus' is not valid; 'prometheus' is named twice; "
        "name each exporter once (set by the environment variable OTEL_METRICS_EXPORTER)"
    )


def test_push_options_from_arguments_and_variables() -> None:
    environ = {
        "OTEL_METRICS_EXPORTER": "pushgateway,remote_write",
        "OTEL_PIPELINE_PUSHGATEWAY_URL": " http://gw:9091 ",
        "OTEL_PIPELINE_PUSHGATEWAY_GROUPING": "instance=host-1,shard=a%2Fb",
        "OTEL_PIPELINE_PUSHGATEWAY_DELETE": "true",
        "OTEL_PIPELINE_REMOTE_WRITE_URL": "https://mimir:443/api/v1/push",
    }
    config = resolve(environ)
    assert (
        config.exporters,
        config.pushgateway_url,
        dict(config.pushgateway_grouping),
        config.pushgateway_delete_on_shutdown,
        config.remote_write_url,
    ) == (
        ("pushgateway", "remote_write"),
        "http://gw:9091",
        {"instance": "host-1", "shard": "a/b"},
        True,
        "https://mimir:443/api/v1/push",
    )
    explicit = resolve(
        environ,
        pushgateway_url="http://other:9091",
        pushgateway_grouping={"region": "eu"},
        pushgateway_delete_on_shutdown=False,
        remote_write_url="http://prom:9090/api/v1/write",
    )
    assert (
        explicit.pushgateway_url,
        dict(explicit.pushgateway_grouping),
        explicit.pushgateway_delete_on_shutdown,
        explicit.remote_write_url,
    ) == ("http://other:9091", {"region": "eu"}, False, "http://prom:9090/api/v1/write")
    assert {ENVIRONMENT_VARIABLES[o] for o in ("pushgateway_url", "remote_write_url")} == {
        "OTEL_PIPELINE_PUSHGATEWAY_URL",
        "OTEL_PIPELINE_REMOTE_WRITE_URL",
    }


def test_histogram_buckets_list_becomes_tuple() -> None:
    assert resolve(histogram_buckets=[0.1, 1, 10]).histogram_buckets == (0.1, 1, 10)


def test_prometheus_port_zero_is_allowed() -> None:
    assert resolve(prometheus_port=0).prometheus_port == 0


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(
        TypeError, match=r"unknown option\(s\) colour, sevice_name; known options: .*service_name"
    ):
        resolve(sevice_name="x", colour="red")


# Every bad value: (option, value, text of what is allowed).
BAD_ARGUMENTS: list[tuple[str, Any, str]] = [
    ("service_name", "", "a non-empty string is required"),
    ("service_name", "   ", "a non-empty string is required"),
    ("service_name", 42, "a non-empty string is required"),
    ("service_version", 1.0, "a string is required"),
    (
        "exporter",
        "jaeger",
        "use one of 'prometheus', 'otlp', 'pushgateway', 'remote_write', 'console', 'none'",
    ),
    (
        "pushgateway_url",
        "localhost:9091",
        "use an http:// or https:// URL with a host, e.g. 'http://localhost:9091'",
    ),
    ("pushgateway_url", 9091, "use an http:// or https:// URL with a host"),
    (
        "remote_write_url",
        "ftp://prom/api/v1/write",
        "use an http:// or https:// URL with a host, e.g. 'http://localhost:9090/api/v1/write'",
    ),
    ("pushgateway_grouping", [("instance", "a")], "use a mapping of label name to str"),
    ("pushgateway_grouping", {"job": "x"}, "keys must be Prometheus label names other than 'job'"),
    ("pushgateway_grouping", {"bad-name": "x"}, "keys must be Prometheus label names other than 'job'"),
    ("pushgateway_grouping", {"__meta": "x"}, "keys must be Prometheus label names other than 'job'"),
    ("pushgateway_grouping", {"instance": 1}, "values must be strings"),
    ("pushgateway_delete_on_shutdown", "yes", "use True or False"),
    ("prometheus_host", "", "a host name or IP address is required"),
    ("prometheus_port", -1, "use an integer from 0 to 65535 (0 picks a free port)"),
    ("prometheus_port", 65536, "use an integer from 0 to 65535 (0 picks a free port)"),
    ("prometheus_port", "9464", "use an integer from 0 to 65535 (0 picks a free port)"),
    ("prometheus_port", True, "use an integer from 0 to 65535 (0 picks a free port)"),
    ("prometheus_port", 9464.0, "use an integer from 0 to 65535 (0 picks a free port)"),
    ("otlp_protocol", "http/json", "use one of 'grpc', 'http/protobuf'"),
    ("otlp_endpoint", "localhost:4317", "use an http:// or https:// URL with a host"),
    ("otlp_endpoint", "ftp://collector:4317", "use an http:// or https:// URL with a host"),
    ("otlp_endpoint", "http://", "use an http:// or https:// URL with a host"),
    ("otlp_endpoint", "http://collector:99999", "use an http:// or https:// URL with a host"),
    ("otlp_endpoint", "http://collector:port", "use an http:// or https:// URL with a host"),
    ("otlp_endpoint", "http://collector:0", "use an http:// or https:// URL with a host"),
    ("otlp_endpoint", "", "use an http:// or https:// URL with a host"),
    ("otlp_endpoint", 4317, "use an http:// or https:// URL with a host"),
    ("export_interval", -1.0, "use a positive, finite number of seconds"),
    ("export_interval", 0, "use a positive, finite number of seconds"),
    ("export_interval", math.inf, "use a positive, finite number of seconds"),
    ("export_interval", math.nan, "use a positive, finite number of seconds"),
    ("export_interval", "10", "use a positive, finite number of seconds"),
    ("export_interval", True, "use a positive, finite number of seconds"),
    ("export_timeout", -5, "use a positive, finite number of seconds"),
    ("trace_sample_rate", -0.1, "use a number from 0.0 to 1.0"),
    ("trace_sample_rate", 1.5, "use a number from 0.0 to 1.0"),
    ("trace_sample_rate", math.nan, "use a number from 0.0 to 1.0"),
    ("trace_sample_rate", "0.5", "use a number from 0.0 to 1.0"),
    ("trace_sample_rate", False, "use a number from 0.0 to 1.0"),
    ("histogram_buckets", (), "use a non-empty sequence of finite numbers (seconds) in strictly increasing"),
    ("histogram_buckets", (1.0, 0.5), "use a non-empty sequence of finite numbers (seconds) in strictly"),
    ("histogram_buckets", (1.0, 1.0), "use a non-empty sequence of finite numbers (seconds) in strictly"),
    ("histogram_buckets", (1.0, math.inf), "use a non-empty sequence of finite numbers (seconds)"),
    ("histogram_buckets", (1.0, "2"), "use a non-empty sequence of finite numbers (seconds)"),
    ("histogram_buckets", (True, 2.0), "use a non-empty sequence of finite numbers (seconds)"),
    ("histogram_buckets", "0.1,1", "use a non-empty sequence of finite numbers (seconds)"),
    ("histogram_buckets", 5, "use a non-empty sequence of finite numbers (seconds)"),
    ("enabled", "yes", "use True or False"),
    ("enabled", 1, "use True or False"),
    ("instrument_mode", "fast", "use one of 'core', 'sdk'"),
    ("cardinality_limit", 0, "use a whole number of at least 1"),
    ("cardinality_limit", 2.5, "use a whole number of at least 1"),
    ("cardinality_limit", True, "use a whole number of at least 1"),
    ("resource_attributes", {"k": 1}, "keys and values must be non-empty strings"),
    ("resource_attributes", {"": "v"}, "keys and values must be non-empty strings"),
    ("resource_attributes", [("k", "v")], "use a mapping of str to str"),
]


@pytest.mark.parametrize(("option", "value", "allowed"), BAD_ARGUMENTS)
def test_every_bad_argument_names_option_value_and_what_is_allowed(
    option: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{option}=")) as raised:
        resolve(**{option: value})
    message = str(raised.value)
    assert message.startswith(f"otel_pipeline: {option}=")
    assert allowed in message
    shown = tuple(value) if option == "histogram_buckets" and isinstance(value, tuple) else value
    if option != "resource_attributes":
        assert repr(shown) in message
    assert "environment variable" not in message


# Bad values in the environment: the message names the variable.
BAD_VARIABLES: list[tuple[str, str, str]] = [
    ("OTEL_SDK_DISABLED", "maybe", "OTEL_SDK_DISABLED='maybe' is not valid; use true or false"),
    (
        "OTEL_METRICS_EXPORTER",
        "jaeger",
        "exporter='jaeger' is not valid; use one of 'prometheus', 'otlp', 'pushgateway', 'remote_write', "
        "'console', 'none', or several joined by commas (e.g. 'prometheus,pushgateway') "
        "(set by the environment variable OTEL_METRICS_EXPORTER)",
    ),
    (
        "OTEL_PIPELINE_PUSHGATEWAY_GROUPING",
        "instance",
        "OTEL_PIPELINE_PUSHGATEWAY_GROUPING='instance' is not valid; use comma-separated key=value pairs",
    ),
    (
        "OTEL_PIPELINE_PUSHGATEWAY_DELETE",
        "sometimes",
        "OTEL_PIPELINE_PUSHGATEWAY_DELETE='sometimes' is not valid; use true or false",
    ),
    (
        "OTEL_PIPELINE_PUSHGATEWAY_URL",
        "gw:9091",
        "pushgateway_url='gw:9091' is not valid; use an http:// or https:// URL with a host, "
        "e.g. 'http://localhost:9091' (set by the environment variable OTEL_PIPELINE_PUSHGATEWAY_URL)",
    ),
    ("OTEL_METRIC_EXPORT_INTERVAL", "soon", "OTEL_METRIC_EXPORT_INTERVAL='soon' is not valid; use a number"),
    ("OTEL_METRIC_EXPORT_TIMEOUT", "1s", "OTEL_METRIC_EXPORT_TIMEOUT='1s' is not valid; use a number"),
    ("OTEL_TRACES_SAMPLER_ARG", "half", "OTEL_TRACES_SAMPLER_ARG='half' is not valid; use a number"),
    ("OTEL_TRACES_SAMPLER", "jaeger_remote", "OTEL_TRACES_SAMPLER='jaeger_remote' is not valid; use one of"),
    (
        "OTEL_EXPORTER_PROMETHEUS_PORT",
        "http",
        "OTEL_EXPORTER_PROMETHEUS_PORT='http' is not valid; use an integer",
    ),
    (
        "OTEL_EXPORTER_PROMETHEUS_PORT",
        "94.5",
        "OTEL_EXPORTER_PROMETHEUS_PORT='94.5' is not valid; use an integer",
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "novalue",
        "OTEL_RESOURCE_ATTRIBUTES='novalue' is not valid; use comma-separated",
    ),
    ("OTEL_RESOURCE_ATTRIBUTES", "=v", "OTEL_RESOURCE_ATTRIBUTES='=v' is not valid; use comma-separated"),
    # Parsed, then refused by validation: the option is named, and the variable that set it.
    (
        "OTEL_EXPORTER_PROMETHEUS_PORT",
        "70000",
        "prometheus_port=70000 is not valid; use an integer from 0 to 65535 (0 picks a free port) "
        "(set by the environment variable OTEL_EXPORTER_PROMETHEUS_PORT)",
    ),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/json",
        "otlp_protocol='http/json' is not valid; use one of 'grpc', 'http/protobuf' "
        "(set by the environment variable OTEL_EXPORTER_OTLP_PROTOCOL)",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "collector:4317",
        "otlp_endpoint='collector:4317' is not valid; use an http:// or https:// URL with a host, "
        "e.g. 'http://localhost:4317' (set by the environment variable OTEL_EXPORTER_OTLP_ENDPOINT)",
    ),
    (
        "OTEL_METRIC_EXPORT_INTERVAL",
        "-1000",
        "export_interval=-1.0 is not valid; use a positive, finite number of seconds "
        "(set by the environment variable OTEL_METRIC_EXPORT_INTERVAL)",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        "2",
        "trace_sample_rate=2.0 is not valid; use a number from 0.0 to 1.0 "
        "(set by the environment variable OTEL_TRACES_SAMPLER_ARG)",
    ),
]


@pytest.mark.parametrize(("variable", "raw", "message"), BAD_VARIABLES)
def test_every_bad_variable_names_the_variable(variable: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^otel_pipeline: ") as raised:
        resolve({variable: raw})
    assert message in str(raised.value)


def test_bad_sampler_arg_with_ratio_sampler_names_both_variables() -> None:
    with pytest.raises(ValueError, match=r"OTEL_TRACES_SAMPLER/OTEL_TRACES_SAMPLER_ARG\)$"):
        resolve({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "7"})


def test_explicit_argument_overrides_a_bad_variable_value_after_parsing() -> None:
    # The variable parses (a number) but is out of range; the argument replaces it, so no error.
    assert resolve({"OTEL_EXPORTER_PROMETHEUS_PORT": "70000"}, prometheus_port=9000).prometheus_port == 9000


def test_bad_argument_is_not_blamed_on_a_variable() -> None:
    with pytest.raises(ValueError, match=r"prometheus_port=70000 is not valid") as raised:
        resolve({"OTEL_EXPORTER_PROMETHEUS_PORT": "9000"}, prometheus_port=70000)
    assert "environment variable" not in str(raised.value)


def test_errors_are_plain_value_errors() -> None:
    cases: list[tuple[dict[str, str], dict[str, Any]]] = [
        ({}, {"exporter": "x"}),
        ({"OTEL_SDK_DISABLED": "x"}, {}),
        ({}, {"resource_attributes": 1}),
    ]
    for environ, arguments in cases:
        with pytest.raises(ValueError, match=r"^otel_pipeline: ") as raised:
            resolve(environ, **arguments)
        assert type(raised.value) is ValueError
    with pytest.raises(ValueError, match=r"^otel_pipeline: prometheus_port=-1 is not valid") as raised:
        Config(prometheus_port=-1).validate()
    assert type(raised.value) is ValueError
