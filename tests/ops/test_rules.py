"""Prometheus rules: generated as committed, valid for promtool, every alert tested firing and quiet."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.rules import ALERTS, RECORDING, RUNBOOKS, alert_rules_yaml, recording_rules_yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "dashboards" / "rules"
RULE_FILES = [RULES_DIR / "alerts.yml", RULES_DIR / "recording.yml"]
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def test_committed_rule_files_are_what_the_code_generates() -> None:
    assert (RULES_DIR / "alerts.yml").read_text() == alert_rules_yaml()
    assert (RULES_DIR / "recording.yml").read_text() == recording_rules_yaml()


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", *RULE_FILES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == 2
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout
    assert f"SUCCESS: {len(RECORDING)} rules found" in done.stdout


def test_promtool_check_rules_rejects_a_broken_expression(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(alert_rules_yaml().replace("up == 0", "up == ", 1))
    done = promtool("check", "rules", broken)
    assert done.returncode == 1
    assert "parse error" in done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    assert [path.name for path in TEST_FILES] == ["alerts_test.yml"]
    done = promtool("test", "rules", *TEST_FILES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_rules_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    document = yaml.safe_load(TEST_FILES[0].read_text())
    document["rule_files"] = [str(path) for path in RULE_FILES]  # absolute: the copy lives elsewhere
    for test in document["tests"]:
        for case in test["alert_rule_test"]:
            for alert in case["exp_alerts"]:
                alert["exp_labels"]["severity"] = "page"
    wrong = tmp_path / "wrong_test.yml"
    wrong.write_text(yaml.safe_dump(document))
    done = promtool("test", "rules", wrong)
    assert done.returncode == 1
    assert (done.stdout + done.stderr).count('severity="page"') == sum(
        len(case["exp_alerts"]) for test in document["tests"] for case in test["alert_rule_test"]
    )


def alert_cases() -> dict[str, list[list[Any]]]:
    cases: dict[str, list[list[Any]]] = {}
    for test_file in TEST_FILES:
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            for case in test["alert_rule_test"]:
                cases.setdefault(case["alertname"], []).append(case["exp_alerts"])
    return cases


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = alert_cases()
    assert sorted(cases) == sorted(alert.name for alert in ALERTS)
    for alert in ALERTS:
        assert any(expected for expected in cases[alert.name]), f"{alert.name} is never expected to fire"
        assert any(not expected for expected in cases[alert.name]), f"{alert.name} is never expected quiet"


def test_every_alert_has_summary_description_and_runbook() -> None:
    groups = yaml.safe_load(alert_rules_yaml())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert [rule["alert"] for rule in rules] == [alert.name for alert in ALERTS]
    for rule in rules:
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["runbook_url"].startswith(f"{RUNBOOKS}#")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_runbook_anchors_exist() -> None:
    text = (ROOT / RUNBOOKS).read_text()
    anchors = [github_anchor(line[3:]) for line in text.splitlines() if line.startswith("## ")]
    assert anchors == [alert.anchor for alert in ALERTS]
    for alert in ALERTS:
        assert f"**Alert:** `{alert.name}`" in text


def test_recording_rule_names_follow_the_convention() -> None:
    for rule in RECORDING:
        level, name, operation = rule.record.split(":")
        assert level.startswith("job"), rule.record
        assert name, rule.record
        assert re.fullmatch(r"(rate5m|p9[59]_5m|seconds)", operation), rule.record


@pytest.mark.parametrize("alert", ALERTS, ids=[a.name for a in ALERTS])
def test_alerts_read_recorded_series_or_cheap_expressions(alert: Any) -> None:
    # An alert either reads a recording rule, or a plain selector/increase: never a raw bucket quantile.
    assert "histogram_quantile" not in alert.expr
    assert "_bucket" not in alert.expr
