"""The Collector configs, checked statically: no Collector can run on this project's machines.

What the Collector (otelcol-contrib 0.136) would check at start-up, and what it would silently
get wrong, checked here instead:
- every component type exists in otelcol-contrib (tests/ops/data/otelcol-contrib-components.yaml);
- every pipeline reference is defined, every definition is used, connectors join pipelines of the
  data types they support, the persistent queues name a file_storage extension that is enabled;
- every duration is a string Go's ``time.ParseDuration`` accepts. The Collector decodes durations
  with mapstructure's ``StringToTimeDurationHookFunc`` (confmap/internal/decoder.go), i.e.
  ``time.ParseDuration``: ``"2.5s"``, ``"2500ms"`` and ``"1h30m"`` are all accepted; ``"1d"``,
  ``"5 s"`` and ``"5"`` are refused. A bare YAML number is the silent trap: ``WeaklyTypedInput``
  is off, so an int decodes straight into ``time.Duration`` as *nanoseconds* (``timeout: 5`` is
  5 ns). So durations must be strings, and parse.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "collector-config"
COLLECTOR_CONFIGS = ("agent.yaml", "agent-to-gateway.yaml", "gateway.yaml")
COMPONENTS = yaml.safe_load((Path(__file__).parent / "data" / "otelcol-contrib-components.yaml").read_text())
CLASSES = ("receivers", "processors", "exporters", "extensions", "connectors")
SIGNALS = ("traces", "metrics", "logs")

# Go's time.ParseDuration, ported: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+ with these units (in ns).
_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_MAX_NS = 2**63 - 1


def go_duration_ns(text: str) -> int:
    """Nanoseconds of a Go duration string, as time.ParseDuration computes them; ValueError otherwise."""
    rest, sign = text, 1
    if rest[:1] in ("-", "+"):
        sign, rest = (-1 if rest[0] == "-" else 1), rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0
    while rest:
        match = re.match(r"([0-9]*)(?:\.([0-9]*))?", rest)
        assert match is not None
        whole, fraction = match.group(1), match.group(2)
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {text!r}")
        rest = rest[match.end() :]
        unit_match = re.match(r"[^0-9.]+", rest)
        if unit_match is None:
            raise ValueError(f"time: missing unit in duration {text!r}")
        unit = unit_match.group(0)
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {unit!r} in duration {text!r}")
        rest = rest[unit_match.end() :]
        scale = _UNITS[unit]
        total += int(whole or "0") * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)
        if total > _MAX_NS:
            raise ValueError(f"time: invalid duration {text!r}")
    return sign * total


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("2500ms", 2_500_000_000),
        ("2.5s", 2_500_000_000),
        ("1h30m", 5_400_000_000_000),
        ("0", 0),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("100us", 100_000),
        ("100µs", 100_000),
        ("1m0.5s", 60_500_000_000),
        ("-1s", -1_000_000_000),
    ],
)
def test_go_duration_accepts_what_go_accepts(text: str, nanoseconds: int) -> None:
    assert go_duration_ns(text) == nanoseconds


@pytest.mark.parametrize("text", ["5", "1d", "5 s", "5sec", "", "s", ".s", "1.5", "5S", "3000000h"])
def test_go_duration_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        go_duration_ns(text)


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((CONFIG_DIR / name).read_text())
    assert isinstance(document, dict)
    return document


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def test_every_yaml_file_parses() -> None:
    files = sorted(
        p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*") if p.suffix in (".yaml", ".yml")
    )
    assert files == [
        "agent-to-gateway.yaml",
        "agent.yaml",
        "docker-compose.yaml",
        "gateway.yaml",
        "grafana/provisioning/dashboards/dashboards.yaml",
        "grafana/provisioning/datasources/datasources.yaml",
        "prometheus/embedded.yml",
        "prometheus/prometheus.yml",
        "tempo/tempo.yaml",
    ]
    for name in files:
        assert isinstance(load(name), dict), name


def component_problems(config: dict[str, Any]) -> list[str]:
    """Components whose type is not an otelcol-contrib component of that class."""
    problems = [f"section {key!r}" for key in config if key not in (*CLASSES, "service")]
    for kind in CLASSES:
        for component_id in config.get(kind, {}):
            module = COMPONENTS["types"][kind].get(component_type(component_id))
            if module not in COMPONENTS["modules"][kind]:
                problems.append(f"{kind}/{component_id}")
    return problems


def reference_problems(config: dict[str, Any]) -> list[str]:
    """Pipeline references to undefined components, unused definitions, malformed pipelines."""
    problems = []
    connectors = set(config.get("connectors", {}))
    used: dict[str, set[str]] = {kind: set() for kind in CLASSES}
    for pipeline_id, pipeline in config["service"]["pipelines"].items():
        if component_type(pipeline_id) not in SIGNALS or not set(pipeline) <= {
            "receivers",
            "processors",
            "exporters",
        }:
            problems.append(f"pipeline {pipeline_id}")
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            problems.append(f"{pipeline_id}: needs receivers and exporters")
        for kind in ("receivers", "processors", "exporters"):
            ids = pipeline.get(kind, [])
            if len(ids) != len(set(ids)):
                problems.append(f"{pipeline_id}: {kind} listed twice")
            defined = set(config.get(kind, {})) | (connectors if kind != "processors" else set())
            problems += [f"{pipeline_id}: undefined {c}" for c in ids if c not in defined]
            for component_id in ids:
                used["connectors" if component_id in connectors else kind].add(component_id)
        if pipeline.get("processors", [None])[0] != "memory_limiter":
            problems.append(f"{pipeline_id}: memory_limiter must come first")
    used["extensions"] = set(config["service"].get("extensions", []))
    for kind in CLASSES:
        problems += [f"unused {kind}/{c}" for c in sorted(set(config.get(kind, {})) - used[kind])]
        problems += [f"undefined {kind}/{c}" for c in sorted(used[kind] - set(config.get(kind, {})))]
    return problems


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_every_component_is_in_otelcol_contrib(name: str) -> None:
    assert component_problems(load(name)) == []


def test_component_check_refuses_unknown_and_misplaced_types() -> None:
    config: dict[str, Any] = {
        "exporters": {"jaeger": {}, "otlp/tempo": {}},  # jaeger left contrib: Jaeger takes OTLP
        "processors": {"spanmetrics": {}},  # the processor was replaced by the connector
        "pipelines": {},
    }
    assert component_problems(config) == ["section 'pipelines'", "processors/spanmetrics", "exporters/jaeger"]


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    result: dict[str, dict[str, list[str]]] = config["service"]["pipelines"]
    return result


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_pipeline_references_are_defined_and_definitions_used(name: str) -> None:
    assert reference_problems(load(name)) == []


def test_reference_check_names_each_fault() -> None:
    config: dict[str, Any] = {
        "receivers": {"otlp": {}},
        "processors": {"batch": {}},
        "exporters": {"otlp": {}, "debug": {}},
        "extensions": {"health_check": {}},
        "service": {
            "extensions": ["health_check", "pprof"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch", "batch"],
                    "exporters": ["otlp/tempo"],
                },
                "profiles/x": {"receivers": ["otlp"], "exporters": []},
            },
        },
    }
    assert reference_problems(config) == [
        "traces: processors listed twice",
        "traces: undefined otlp/tempo",
        "traces: memory_limiter must come first",
        "pipeline profiles/x",
        "profiles/x: needs receivers and exporters",
        "profiles/x: memory_limiter must come first",
        "unused exporters/debug",
        "unused exporters/otlp",
        "undefined exporters/otlp/tempo",
        "undefined extensions/pprof",
    ]


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_connectors_join_pipelines_of_supported_types(name: str) -> None:
    config = load(name)
    for connector in config.get("connectors", {}):
        pairs = {tuple(pair) for pair in COMPONENTS["connectors"][component_type(connector)]}
        exporting = {
            component_type(p) for p, spec in pipelines(config).items() if connector in spec["exporters"]
        }
        receiving = {
            component_type(p) for p, spec in pipelines(config).items() if connector in spec["receivers"]
        }
        assert exporting, f"{connector} must export from a pipeline"
        assert receiving, f"{connector} must feed a pipeline"
        assert {(a, b) for a in exporting for b in receiving} <= pairs, connector


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, str(key)), value
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, str(index)))


#: Keys whose values are Go durations in the components we use (their config structs).
DURATION_KEYS = re.compile(r"(^|_)(interval|timeout|expiration|elapsed_time|wait)$")
#: Keys matching that pattern that are not durations.
NOT_DURATIONS = {"check_interval_ms"}


def durations(config: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for path, value in walk(config):
        key = path[-1]
        if DURATION_KEYS.search(key) and key not in NOT_DURATIONS:
            found.append(("/".join(path), value))
        if path[-2:] == ("explicit", "buckets"):  # spanmetrics: []time.Duration
            found.extend(("/".join(path) + f"/{i}", item) for i, item in enumerate(value))
    return found


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_durations_are_go_duration_strings(name: str) -> None:
    found = durations(load(name))
    assert len(found) >= 8, found  # the walk really finds the durations
    for path, value in found:
        assert isinstance(value, str), (
            f"{name}: {path}: {value!r} would decode as nanoseconds; write e.g. '5s'"
        )
        assert go_duration_ns(value) > 0, f"{name}: {path}: {value!r}"


def test_duration_check_catches_a_bare_number() -> None:
    config = {
        "processors": {"batch": {"timeout": 5}},
        "exporters": {"otlp": {"retry_on_failure": {"max_interval": "30s"}}},
    }
    assert durations(config) == [
        ("processors/batch/timeout", 5),
        ("exporters/otlp/retry_on_failure/max_interval", "30s"),
    ]


@pytest.mark.parametrize("name", COLLECTOR_CONFIGS)
def test_persistent_queues_use_an_enabled_file_storage(name: str) -> None:
    config = load(name)
    storages = [(path, value) for path, value in walk(config.get("exporters", {})) if path[-1] == "storage"]
    assert storages, f"{name}: no exporter has a persistent queue"
    for path, storage in storages:
        assert component_type(storage) == "file_storage", path
        assert storage in config["service"]["extensions"], path


def test_agent_exports_openmetrics_with_resource_labels_and_span_metrics_with_exemplars() -> None:
    config = load("agent.yaml")
    prometheus = config["exporters"]["prometheus"]
    assert prometheus["enable_open_metrics"] is True
    assert prometheus["resource_to_telemetry_conversion"] == {"enabled": True}
    assert config["connectors"]["spanmetrics"]["exemplars"] == {"enabled": True}
    assert config["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"


def test_gateway_topology_routes_traces_by_trace_id_to_tail_sampling() -> None:
    agent = load("agent-to-gateway.yaml")
    gateway = load("gateway.yaml")
    assert agent["exporters"]["loadbalancing/traces"]["routing_key"] == "traceID"
    assert agent["exporters"]["loadbalancing/metrics"]["routing_key"] == "resource"
    assert [p["name"] for p in gateway["processors"]["tail_sampling"]["policies"]] == [
        "errors",
        "slow",
        "baseline",
    ]
    sampled = pipelines(gateway)["traces/sampled"]
    assert sampled["processors"] == ["memory_limiter", "tail_sampling", "batch"]
    # spanmetrics sees every span, before sampling drops any.
    assert "spanmetrics" in pipelines(gateway)["traces"]["exporters"]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("name", ["prometheus/embedded.yml", "prometheus/prometheus.yml"])
def test_prometheus_configs_pass_promtool(name: str) -> None:
    done = promtool("check", "config", str(CONFIG_DIR / name))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_embedded_scrape_config_loads_the_shipped_rules() -> None:
    done = promtool("check", "config", str(CONFIG_DIR / "prometheus/embedded.yml"))
    assert "alerts.yml" in done.stdout, done.stdout
    assert "recording.yml" in done.stdout, done.stdout


def test_grafana_datasources_link_exemplars_to_tempo() -> None:
    datasources = {
        d["uid"]: d for d in load("grafana/provisioning/datasources/datasources.yaml")["datasources"]
    }
    assert set(datasources) == {"prometheus", "tempo"}
    assert datasources["tempo"]["type"] == "tempo"
    assert datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "tempo", "urlDisplayLabel": "Open trace in Tempo"}
    ]


def test_compose_stack_mounts_existing_files_and_pins_images() -> None:
    compose = load("docker-compose.yaml")
    services = compose["services"]
    assert set(services) == {"otelcol", "prometheus", "tempo", "grafana"}
    assert services["otelcol"]["image"] == f"otel/opentelemetry-collector-contrib:{COMPONENTS['version']}"
    for service in services.values():
        assert not service["image"].endswith(":latest")
        assert ":" in service["image"]
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (CONFIG_DIR / source).exists(), volume
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]


def test_compose_mounts_every_generated_dashboard() -> None:
    from dashboards.boards import all_boards

    provider = load("grafana/provisioning/dashboards/dashboards.yaml")["providers"][0]
    target = provider["options"]["path"]
    mounted = sorted(
        volume.split(":")[1].removeprefix(target + "/")
        for volume in load("docker-compose.yaml")["services"]["grafana"]["volumes"]
        if volume.split(":")[1].startswith(target + "/")
    )
    assert mounted == sorted(f"{board.file_stem}.json" for board in all_boards())
