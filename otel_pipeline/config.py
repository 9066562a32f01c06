"""Configuration: the public options, read from arguments and the standard ``OTEL_*`` variables.

Precedence, highest first: an explicit argument to :func:`otel_pipeline.configure`, then the
standard environment variable, then the default. Every value is validated here, once, so that
a mistake fails at start-up with a message naming the option, the bad value and what is allowed.

>>> cfg = Config.resolve(service_name="orders", exporter="none", environ={})
>>> (cfg.service_name, cfg.exporter, cfg.prometheus_port)
('orders', 'none', 9464)
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from otel_pipeline._internal.validation import safe_repr

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "ENVIRONMENT_VARIABLES",
    "EXPORTERS",
    "GROUP_EXPORTS",
    "INSTRUMENT_MODES",
    "OTLP_PROTOCOLS",
    "Config",
]

#: Seconds buckets advised by the OpenTelemetry semantic conventions for durations.
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
#: ``exporter`` takes one of these, or several joined by commas (``"prometheus,pushgateway"``).
EXPORTERS = ("prometheus", "otlp", "pushgateway", "remote_write", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
INSTRUMENT_MODES = ("core", "sdk")
#: What a worker group pushes over OTLP: one merged stream (the hub's) or each process its own.
GROUP_EXPORTS = ("merged", "per_process")

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


class _InvalidOption(ValueError):
    """A ValueError that remembers which option was bad."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def _fail(option: str, value: object, allowed: str) -> ValueError:
    return _InvalidOption(option, f"otel_pipeline: {option}={safe_repr(value)} is not valid; {allowed}")


@dataclass(frozen=True)
class Config:
    """The resolved, validated options of one :func:`otel_pipeline.configure` call.

    >>> Config.resolve({"OTEL_SERVICE_NAME": "orders"}, prometheus_port=0).service_name
    'orders'
    >>> Config.resolve({}, exporter="jaeger")
    Traceback (most recent call last):
    ValueError: otel_pipeline: exporter='jaeger' is not valid; use one of 'prometheus', 'otlp', ...
    """

    service_name: str = "unknown_service"
    service_version: str = ""
    exporter: str = "prometheus"
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9464
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    export_interval: float = 10.0
    export_timeout: float = 5.0
    trace_sample_rate: float = 1.0
    histogram_buckets: tuple[float, ...] = DEFAULT_DURATION_BUCKETS
    enabled: bool = True
    instrument_mode: str = "core"
    cardinality_limit: int = 2000
    handle_sigterm: bool = True
    #: Distinct names per hook kind (queues, caches, stages ...); past it new names share one hook.
    hook_name_limit: int = 500
    worker_group: bool = True
    #: With exporter "otlp": "merged" (one stream for the worker group) or "per_process".
    group_export: str = "per_process"
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    # Batch runs (docs/batch.md): the Pushgateway and Prometheus remote write.
    pushgateway_url: str | None = None
    pushgateway_grouping: Mapping[str, str] = field(default_factory=dict)
    pushgateway_delete_on_shutdown: bool = False
    remote_write_url: str | None = None

    def __post_init__(self) -> None:
        # A sequence of names is kept as the comma-joined string, so that ``exporter`` reads as it
        # always did and two configs naming the same exporters compare equal.
        exporter = self.exporter
        if isinstance(exporter, (list, tuple)) and all(isinstance(name, str) for name in exporter):
            exporter = ",".join(exporter)
        if isinstance(exporter, str):
            object.__setattr__(self, "exporter", ",".join(name.strip() for name in exporter.split(",")))

    @property
    def exporters(self) -> tuple[str, ...]:
        """The exporters, in the order given.

        >>> Config(exporter=("prometheus", "pushgateway")).exporters
        ('prometheus', 'pushgateway')
        """
        return tuple(self.exporter.split(","))

    def exports(self, name: str) -> bool:
        """True when ``name`` is one of the exporters.

        >>> Config(exporter="prometheus, otlp").exports("otlp")
        True
        """
        return name in self.exporters

    @classmethod
    def resolve(cls, environ: Mapping[str, str], **arguments: Any) -> Config:
        """Merge explicit arguments (``None`` means "not given") over the environment and defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise TypeError(
                f"otel_pipeline.configure() got unknown option(s) {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(known))}"
            )
        sources: dict[str, str] = {}
        try:
            return cls._resolve(environ, arguments, sources)
        except _InvalidOption as error:
            # Name the variable a bad value came from, so the fix is obvious.
            variable = sources.get(error.option)
            suffix = f" (set by the environment variable {variable})" if variable else ""
            raise ValueError(f"{error}{suffix}") from None

    @classmethod
    def _resolve(
        cls, environ: Mapping[str, str], arguments: dict[str, Any], sources: dict[str, str]
    ) -> Config:
        values: dict[str, Any] = _from_environment(environ, sources)
        given = {k: v for k, v in arguments.items() if v is not None}
        for name in given:
            sources.pop(name, None)
        values.update(given)
        if isinstance(values.get("histogram_buckets"), list):
            values["histogram_buckets"] = tuple(values["histogram_buckets"])
        resource = dict(_parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES", "")))
        extra = values.pop("resource_attributes", None) or {}
        if not isinstance(extra, Mapping):
            raise _fail("resource_attributes", extra, "use a mapping of str to str")
        resource.update(extra)
        if "service_name" not in values and "service.name" in resource:
            values["service_name"] = resource["service.name"]
        if "service_version" not in values and "service.version" in resource:
            values["service_version"] = resource["service.version"]
        config = cls(resource_attributes=resource, **values)
        config._check()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option, its value and what is allowed."""
        try:
            self._check()
        except _InvalidOption as error:
            raise ValueError(str(error)) from None

    def _check(self) -> None:
        if not isinstance(self.service_name, str) or not self.service_name.strip():
            raise _fail("service_name", self.service_name, "a non-empty string is required")
        if not isinstance(self.service_version, str):
            raise _fail("service_version", self.service_version, "a string is required")
        self._check_exporters()
        if not isinstance(self.prometheus_host, str) or not self.prometheus_host:
            raise _fail("prometheus_host", self.prometheus_host, "a host name or IP address is required")
        port = self.prometheus_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise _fail("prometheus_port", port, "use an integer from 0 to 65535 (0 picks a free port)")
        if self.otlp_protocol not in OTLP_PROTOCOLS:
            raise _fail(
                "otlp_protocol", self.otlp_protocol, f"use one of {', '.join(map(repr, OTLP_PROTOCOLS))}"
            )
        if self.otlp_endpoint is not None:
            _check_endpoint(self.otlp_endpoint)
        _check_positive("export_interval", self.export_interval)
        _check_positive("export_timeout", self.export_timeout)
        rate = self.trace_sample_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise _fail("trace_sample_rate", rate, "use a number from 0.0 to 1.0")
        _check_buckets(self.histogram_buckets)
        if not isinstance(self.enabled, bool):
            raise _fail("enabled", self.enabled, "use True or False")
        if self.instrument_mode not in INSTRUMENT_MODES:
            raise _fail(
                "instrument_mode",
                self.instrument_mode,
                f"use one of {', '.join(map(repr, INSTRUMENT_MODES))}",
            )
        if not isinstance(self.handle_sigterm, bool):
            raise _fail("handle_sigterm", self.handle_sigterm, "use True or False")
        if not isinstance(self.worker_group, bool):
            raise _fail("worker_group", self.worker_group, "use True or False")
        if self.group_export not in GROUP_EXPORTS:
            raise _fail(
                "group_export", self.group_export, f"use one of {', '.join(map(repr, GROUP_EXPORTS))}"
            )
        limit = self.cardinality_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _fail("cardinality_limit", limit, "use a whole number of at least 1")
        names = self.hook_name_limit
        if isinstance(names, bool) or not isinstance(names, int) or names < 1:
            raise _fail("hook_name_limit", names, "use a whole number of at least 1")
        for key, value in self.resource_attributes.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise _fail("resource_attributes", {key: value}, "keys and values must be non-empty strings")
        self._check_push()

    def _check_exporters(self) -> None:
        allowed = (
            f"use one of {', '.join(map(repr, EXPORTERS))}, or several joined by commas "
            "(e.g. 'prometheus,pushgateway')"
        )
        if not isinstance(self.exporter, str):
            raise _fail("exporter", self.exporter, allowed)
        names = self.exporters
        for name in names:
            if name not in EXPORTERS:
                unknown = f"{name!r} is not an exporter; " if len(names) > 1 else ""
                raise _fail("exporter", self.exporter, unknown + allowed)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise _fail("exporter", self.exporter, f"{repeated[0]!r} is named twice; name each exporter once")
        if "none" in names and len(names) > 1:
            raise _fail("exporter", self.exporter, "'none' cannot be combined with other exporters")
        for name, option, example in (
            ("pushgateway", "pushgateway_url", "http://localhost:9091"),
            ("remote_write", "remote_write_url", "http://localhost:9090/api/v1/write"),
        ):
            if self.exports(name) and getattr(self, option) is None:
                raise _InvalidOption(
                    "exporter",
                    f"otel_pipeline: exporter={self.exporter!r} needs {option} (e.g. {example!r}), "
                    f"or the environment variable {ENVIRONMENT_VARIABLES[option]}",
                )

    def _check_push(self) -> None:
        if self.pushgateway_url is not None:
            _check_url("pushgateway_url", self.pushgateway_url, "http://localhost:9091")
        if self.remote_write_url is not None:
            _check_url("remote_write_url", self.remote_write_url, "http://localhost:9090/api/v1/write")
        grouping = self.pushgateway_grouping
        if not isinstance(grouping, Mapping):
            raise _fail("pushgateway_grouping", grouping, "use a mapping of label name to str")
        for key, value in grouping.items():
            if not isinstance(key, str) or not _LABEL_NAME.match(key) or key == "job" or key.startswith("__"):
                raise _fail(
                    "pushgateway_grouping",
                    {key: value},
                    "keys must be Prometheus label names other than 'job' (the job is service_name)",
                )
            if not isinstance(value, str):
                raise _fail("pushgateway_grouping", {key: value}, "values must be strings")
        delete = self.pushgateway_delete_on_shutdown
        if not isinstance(delete, bool):
            raise _fail("pushgateway_delete_on_shutdown", delete, "use True or False")

    @property
    def resolved_otlp_endpoint(self) -> str:
        """The OTLP endpoint to use: the configured one or the protocol's default on localhost."""
        if self.otlp_endpoint:
            return self.otlp_endpoint
        return "http://localhost:4317" if self.otlp_protocol == "grpc" else "http://localhost:4318"


def _check_positive(option: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise _fail(option, value, "use a positive, finite number of seconds")


def _check_buckets(buckets: object) -> None:
    allowed = "use a non-empty sequence of finite numbers (seconds) in strictly increasing order"
    if not isinstance(buckets, Sequence) or isinstance(buckets, (str, bytes)) or not buckets:
        raise _fail("histogram_buckets", buckets, allowed)
    previous = -math.inf
    for bound in buckets:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise _fail("histogram_buckets", tuple(buckets), allowed)
        if bound <= previous:
            raise _fail("histogram_buckets", tuple(buckets), allowed)
        previous = bound


def _check_endpoint(endpoint: object) -> None:
    _check_url("otlp_endpoint", endpoint, "http://localhost:4317")


def _check_url(option: str, endpoint: object, example: str) -> None:
    allowed = f"use an http:// or https:// URL with a host, e.g. {example!r}"
    if not isinstance(endpoint, str):
        raise _fail(option, endpoint, allowed)
    try:
        parsed = urllib.parse.urlsplit(endpoint)
        port = parsed.port  # raises ValueError for a bad port
    except ValueError:
        raise _fail(option, endpoint, allowed) from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise _fail(option, endpoint, allowed)
    if port is not None and not 0 < port <= 65535:
        raise _fail(option, endpoint, allowed)


def _parse_resource_attributes(raw: str, variable: str = "OTEL_RESOURCE_ATTRIBUTES") -> dict[str, str]:
    result: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _fail(variable, raw, "use comma-separated key=value pairs")
        result[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return result


def _env_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _fail(name, raw, "use true or false")


def _env_number(name: str, raw: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(raw.strip())
    except ValueError:
        raise _fail(name, raw, f"use a{'n integer' if kind is int else ' number'}") from None


#: OTEL_TRACES_SAMPLER values we honour, and the sample rate each means (None: take OTEL_TRACES_SAMPLER_ARG).
#: Sampling is always parent-based: a child follows its parent's decision.
_SAMPLERS: dict[str, float | None] = {
    "always_on": 1.0,
    "parentbased_always_on": 1.0,
    "always_off": 0.0,
    "parentbased_always_off": 0.0,
    "traceidratio": None,
    "parentbased_traceidratio": None,
}

#: Option -> the variable it is read from (OTEL_METRIC_EXPORT_* are in milliseconds).
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "service_name": "OTEL_SERVICE_NAME",
    "enabled": "OTEL_SDK_DISABLED",
    "exporter": "OTEL_METRICS_EXPORTER",
    "otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "otlp_protocol": "OTEL_EXPORTER_OTLP_PROTOCOL",
    "export_interval": "OTEL_METRIC_EXPORT_INTERVAL",
    "export_timeout": "OTEL_METRIC_EXPORT_TIMEOUT",
    "trace_sample_rate": "OTEL_TRACES_SAMPLER_ARG",
    "prometheus_host": "OTEL_EXPORTER_PROMETHEUS_HOST",
    "prometheus_port": "OTEL_EXPORTER_PROMETHEUS_PORT",
    "handle_sigterm": "OTEL_PIPELINE_HANDLE_SIGTERM",
    "hook_name_limit": "OTEL_PIPELINE_HOOK_NAME_LIMIT",
    "pushgateway_url": "OTEL_PIPELINE_PUSHGATEWAY_URL",
    "pushgateway_grouping": "OTEL_PIPELINE_PUSHGATEWAY_GROUPING",
    "pushgateway_delete_on_shutdown": "OTEL_PIPELINE_PUSHGATEWAY_DELETE",
    "remote_write_url": "OTEL_PIPELINE_REMOTE_WRITE_URL",
    "worker_group": "OTEL_PIPELINE_WORKER_GROUP",
    "group_export": "OTEL_PIPELINE_GROUP_EXPORT",
}


def _from_environment(environ: Mapping[str, str], sources: dict[str, str] | None = None) -> dict[str, Any]:
    """The options the standard OTEL_* variables set; each one's variable goes in ``sources``."""
    values = _read_environment(environ)
    if sources is not None:
        for name in values:
            sources[name] = ENVIRONMENT_VARIABLES[name]
        if "trace_sample_rate" in values and environ.get("OTEL_TRACES_SAMPLER", "").strip():
            sources["trace_sample_rate"] = "OTEL_TRACES_SAMPLER/OTEL_TRACES_SAMPLER_ARG"
    return values


def _read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if environ.get("OTEL_SERVICE_NAME"):
        values["service_name"] = environ["OTEL_SERVICE_NAME"]
    if "OTEL_SDK_DISABLED" in environ and _env_bool("OTEL_SDK_DISABLED", environ["OTEL_SDK_DISABLED"]):
        values["enabled"] = False
    if environ.get("OTEL_METRICS_EXPORTER", "").strip():
        # A comma-separated list, as the specification has it: validated with the option.
        values["exporter"] = environ["OTEL_METRICS_EXPORTER"]
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        values["otlp_endpoint"] = environ["OTEL_EXPORTER_OTLP_ENDPOINT"].strip()
    if environ.get("OTEL_EXPORTER_OTLP_PROTOCOL"):
        values["otlp_protocol"] = environ["OTEL_EXPORTER_OTLP_PROTOCOL"].strip()
    if environ.get("OTEL_METRIC_EXPORT_INTERVAL"):
        # The variable is in milliseconds; our option is in seconds.
        millis = _env_number("OTEL_METRIC_EXPORT_INTERVAL", environ["OTEL_METRIC_EXPORT_INTERVAL"], float)
        values["export_interval"] = millis / 1000.0
    if environ.get("OTEL_METRIC_EXPORT_TIMEOUT"):
        millis = _env_number("OTEL_METRIC_EXPORT_TIMEOUT", environ["OTEL_METRIC_EXPORT_TIMEOUT"], float)
        values["export_timeout"] = millis / 1000.0
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in _SAMPLERS:
        raise _fail(
            "OTEL_TRACES_SAMPLER", environ["OTEL_TRACES_SAMPLER"], f"use one of {', '.join(_SAMPLERS)}"
        )
    fixed_rate = _SAMPLERS.get(sampler)
    if fixed_rate is not None:
        values["trace_sample_rate"] = fixed_rate
    elif environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip():
        values["trace_sample_rate"] = _env_number(
            "OTEL_TRACES_SAMPLER_ARG", environ["OTEL_TRACES_SAMPLER_ARG"], float
        )
    if environ.get("OTEL_EXPORTER_PROMETHEUS_HOST"):
        values["prometheus_host"] = environ["OTEL_EXPORTER_PROMETHEUS_HOST"].strip()
    if environ.get("OTEL_PIPELINE_HANDLE_SIGTERM", "").strip():
        values["handle_sigterm"] = _env_bool(
            "OTEL_PIPELINE_HANDLE_SIGTERM", environ["OTEL_PIPELINE_HANDLE_SIGTERM"]
        )
    if environ.get("OTEL_PIPELINE_WORKER_GROUP", "").strip():
        values["worker_group"] = _env_bool(
            "OTEL_PIPELINE_WORKER_GROUP", environ["OTEL_PIPELINE_WORKER_GROUP"]
        )
    if environ.get("OTEL_PIPELINE_GROUP_EXPORT", "").strip():
        values["group_export"] = environ["OTEL_PIPELINE_GROUP_EXPORT"].strip()
    if environ.get("OTEL_EXPORTER_PROMETHEUS_PORT"):
        values["prometheus_port"] = int(
            _env_number("OTEL_EXPORTER_PROMETHEUS_PORT", environ["OTEL_EXPORTER_PROMETHEUS_PORT"], int)
        )
    if environ.get("OTEL_PIPELINE_HOOK_NAME_LIMIT"):
        values["hook_name_limit"] = int(
            _env_number("OTEL_PIPELINE_HOOK_NAME_LIMIT", environ["OTEL_PIPELINE_HOOK_NAME_LIMIT"], int)
        )
    for option in ("pushgateway_url", "remote_write_url"):
        if environ.get(ENVIRONMENT_VARIABLES[option], "").strip():
            values[option] = environ[ENVIRONMENT_VARIABLES[option]].strip()
    if environ.get("OTEL_PIPELINE_PUSHGATEWAY_GROUPING", "").strip():
        values["pushgateway_grouping"] = _parse_resource_attributes(
            environ["OTEL_PIPELINE_PUSHGATEWAY_GROUPING"], "OTEL_PIPELINE_PUSHGATEWAY_GROUPING"
        )
    if "OTEL_PIPELINE_PUSHGATEWAY_DELETE" in environ:
        values["pushgateway_delete_on_shutdown"] = _env_bool(
            "OTEL_PIPELINE_PUSHGATEWAY_DELETE", environ["OTEL_PIPELINE_PUSHGATEWAY_DELETE"]
        )
    return values
