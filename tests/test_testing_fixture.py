"""The public test fixture: otel_capture / Capture, fresh in-memory providers per test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.trace import StatusCode

import _otel_pipeline_pytest
import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline.testing import Capture
from tests.support.docs import python_blocks
from tests.support.points import find_point

EMAILS = {"queue.name": "emails"}


def test_fixture_is_registered_by_the_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("otel_pipeline") is _otel_pipeline_pytest


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )


LIGHT_PLUGIN_TESTS = """
import sys


def test_nothing_of_otel_pipeline_or_opentelemetry_is_imported():
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("otel_pipeline", "opentelemetry"))
    assert loaded == []
    assert "_otel_pipeline_pytest" in sys.modules  # the plugin is loaded, and light


def test_the_fixture_imports_the_package_when_used(otel_capture):
    import otel_pipeline as op

    op.queue("emails").enqueued(2)
    assert otel_capture.value("queue.jobs.enqueued", {"queue.name": "emails"}) == 2
    assert "opentelemetry.sdk.metrics" in sys.modules
"""


def test_the_plugin_imports_nothing_heavy_until_the_fixture_is_used(tmp_path: Path) -> None:
    """Every pytest run of a project that installs otel_pipeline loads the plugin: it must stay light."""
    (tmp_path / "test_light.py").write_text(LIGHT_PLUGIN_TESTS)
    done = run_pytest(tmp_path, "test_light.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("2 passed")
    listed = run_pytest(tmp_path, "--fixtures", "test_light.py").stdout.splitlines()
    (line,) = [line for line in listed if line.startswith("otel_capture -- ")]
    assert re.search(r"_otel_pipeline_pytest\.py:\d+$", line), line


def test_fixture_captures_metrics_and_spans(otel_capture: Capture) -> None:
    assert runtime.current() is otel_capture.pipeline
    q = op.queue("emails")
    q.enqueued(2)
    with q.processing():
        pass
    with pytest.raises(ValueError, match="bad"), q.processing():
        raise ValueError("bad")

    assert otel_capture.value("queue.jobs.enqueued", EMAILS) == 2
    assert otel_capture.value("queue.job.duration", {**EMAILS, "outcome": "success"}) == 1  # a count
    failure = otel_capture.point(
        "queue.job.duration", {**EMAILS, "outcome": "failure", "error.type": "ValueError"}
    )
    assert failure.count == 1
    assert sum(failure.bucket_counts) == 1
    assert {frozenset(p.attributes.items()) for p in otel_capture.points("queue.job.duration")} == {
        frozenset({**EMAILS, "outcome": "success"}.items()),
        frozenset({**EMAILS, "outcome": "failure", "error.type": "ValueError"}.items()),
    }
    assert otel_capture.metric("queue.jobs.enqueued").unit == "{job}"
    assert {"queue.jobs.enqueued", "queue.job.duration"} <= set(otel_capture.metrics())

    spans = otel_capture.spans()
    assert [s.name for s in spans] == ["queue.process emails", "queue.process emails"]
    assert [s.status.status_code for s in spans] == [StatusCode.UNSET, StatusCode.ERROR]
    assert all(s.parent is None for s in spans)
    assert otel_capture.spans("no such span") == []
    otel_capture.clear_spans()
    assert otel_capture.spans() == []


def test_fixture_missing_names_say_what_exists(otel_capture: Capture) -> None:
    op.queue("emails").enqueued()
    with pytest.raises(KeyError, match=r"no metric 'queue.nope'; collected: \[.*'queue.jobs.enqueued'.*\]"):
        otel_capture.metric("queue.nope")
    with pytest.raises(KeyError, match=r"no point with attributes \{'queue.name': 'other'\}; points have"):
        otel_capture.point("queue.jobs.enqueued", {"queue.name": "other"})


def test_nothing_recorded_means_no_metrics(otel_capture: Capture) -> None:
    assert otel_capture.metrics() == {}
    assert otel_capture.spans() == []


def test_fixture_never_touches_the_global_providers(otel_capture: Capture) -> None:
    assert otel_metrics.get_meter_provider() is not otel_capture.pipeline.meter_provider
    assert otel_trace.get_tracer_provider() is not otel_capture.pipeline.tracer_provider


@pytest.mark.parametrize("otel_capture", ["core", "sdk"], indirect=True)
def test_fixture_parametrized_by_instrument_mode(otel_capture: Capture) -> None:
    op.queue("emails").enqueued(4)
    assert otel_capture.value("queue.jobs.enqueued", EMAILS) == 4
    assert otel_capture.config.instrument_mode in ("core", "sdk")


@pytest.mark.parametrize(
    "otel_capture", [{"histogram_buckets": (1.0, 2.0), "service_name": "svc"}], indirect=True
)
def test_fixture_parametrized_by_options(otel_capture: Capture) -> None:
    with op.queue("emails").processing():
        pass
    point = otel_capture.point("queue.job.duration", {**EMAILS, "outcome": "success"})
    assert tuple(point.explicit_bounds) == (1.0, 2.0)
    assert otel_capture.spans()[0].resource.attributes["service.name"] == "svc"


def test_captures_are_fresh_and_restore_what_was_current() -> None:
    with Capture() as outer:
        op.queue("emails").enqueued(1)
        with Capture() as inner:
            assert runtime.current() is inner.pipeline
            op.queue("emails").enqueued(10)
            assert inner.value("queue.jobs.enqueued", EMAILS) == 10
        assert runtime.current() is outer.pipeline
        op.queue("emails").enqueued(1)
        assert outer.value("queue.jobs.enqueued", EMAILS) == 2
    assert runtime.current() is None
    assert inner.pipeline.enabled is False


def test_capture_restores_a_configured_pipeline() -> None:
    configured = op.configure(service_name="orders", exporter="none")
    with Capture() as capture:
        op.queue("emails").enqueued(3)
        assert capture.value("queue.jobs.enqueued", EMAILS) == 3
    assert runtime.current() is configured
    op.queue("emails").enqueued(1)
    assert find_point(configured.collect(), "queue.jobs.enqueued", EMAILS).value == 1


def test_capture_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    with Capture() as capture:
        op.queue("emails").enqueued()
        assert capture.value("queue.jobs.enqueued", EMAILS) == 1
        assert capture.config.service_name == "test"


def test_capture_with_sampling_off_records_metrics_but_no_spans() -> None:
    with Capture(trace_sample_rate=0.0) as capture:
        with op.queue("emails").processing():
            pass
        assert capture.value("queue.job.duration", {**EMAILS, "outcome": "success"}) == 1
        assert capture.spans() == []


def test_capture_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match=r"instrument_mode='fast' is not valid"):
        Capture(instrument_mode="fast")


TESTING_EXAMPLES = python_blocks("testing.md")


@pytest.mark.parametrize(
    "example", TESTING_EXAMPLES, ids=[f"example{i}" for i, _ in enumerate(TESTING_EXAMPLES)]
)
def test_testing_doc_examples_run(example: str, tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(example)
    is_test = "def test_" in example
    command = (
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"]
        if is_test
        else ["test_example.py"]
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if is_test:
        summary = done.stdout.strip().splitlines()[-1]
        assert " passed" in summary
        assert "failed" not in summary
