"""benchmarks/group.py keeps running: the whole benchmark at a tiny size, its figures checked for shape only.

No timing is asserted (the benchmark's ratios are for ``make bench``); what is asserted exactly is
what does not depend on the machine: the processes took their roles, the group's /metrics and
prometheus_client's MultiProcessCollector serve the same totals, and those totals are the sums
over every process.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import group

MEMBERS = 2
SERIES = 12


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return group.run(number=200, rounds=2, members=MEMBERS, series=SERIES, scrapes=2)


def test_the_hot_path_cases_are_all_timed(result: dict[str, Any]) -> None:
    hot = result["hot_path"]
    assert (hot["number"], hot["rounds"], hot["series"]) == (200, 2, SERIES)
    cases = {
        f"{who}_{what}"
        for who in ("member", "single", "prometheus_multiprocess")
        for what in ("hook", "enqueue")
    } | {"prometheus_multiprocess_inc", "prometheus_multiprocess_observe"}
    for figures in ("ns_per_op_median", "ns_per_op_best"):
        assert set(hot[figures]) == cases
        assert all(value > 0 for value in hot[figures].values())
    assert hot["member_handover"]["interval_s"] == 1.0
    assert hot["member_handover"]["ms"] > 0
    assert set(hot["targets"]) == {
        "hook_member_vs_single",
        "enqueue_member_vs_single",
        "hook_member_vs_prometheus_multiprocess",
        "enqueue_member_vs_prometheus_multiprocess",
    }
    for target in hot["targets"].values():
        assert target["target"] in (1.2, 0.3)
        assert target["met"] is (target["ratio"] <= target["target"])


def test_the_group_and_prometheus_client_serve_the_same_exact_totals(result: dict[str, Any]) -> None:
    scrape = result["scrape"]
    assert (scrape["members"], scrape["series_per_member"], scrape["scrapes"]) == (MEMBERS, SERIES, 2)
    # Series 0, 3, 6, 9 count 1, 4, 7, 10; 1, 4, 7, 10 are in progress -2, 1, -3, 0; 2, 5, 8, 11
    # observe 0.02, 0.05, 0.08, 0.11 s: in each of the MEMBERS processes.
    totals = scrape["totals"]
    assert totals["bench_jobs_processed_total"] == 22 * MEMBERS
    assert totals["bench_jobs_in_progress"] == -4 * MEMBERS
    assert totals["bench_job_duration_seconds_count"] == 4 * MEMBERS
    assert totals["bench_job_duration_seconds_sum"] == pytest.approx(0.26 * MEMBERS)
    assert scrape["same_totals"] is True
    for side in ("group", "prometheus_multiprocess"):
        figures = scrape["ms"][side]
        assert 0 < figures["best"] <= figures["median"] <= figures["p90"]
        assert figures["bytes"] > 0
    assert set(scrape["group_parts_ms"]) == {"refresh", "collect_own", "merge", "render"}
    cpu = scrape["cpu_ms_per_scrape"]
    assert set(cpu) == {"group_hub", "group_members", "prometheus_multiprocess"}
    assert all(value >= 0 for value in cpu.values())
    median = scrape["targets"]["group_scrape_median_ms"]
    assert median["met"] is (median["value"] < 100.0)


def test_the_summary_names_every_target(result: dict[str, Any]) -> None:
    text = group.summary(result)
    for name in result["hot_path"]["targets"]:
        assert name in text
    assert f"scrape of {MEMBERS} processes x {SERIES} series" in text
    assert "same totals: True" in text
