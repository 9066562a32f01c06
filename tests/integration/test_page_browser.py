"""The live page in a real browser: headless Chromium renders the process's own values.

Chromium (Debian package ``chromium``, installed by scripts/system-deps.sh) loads ``GET /``, runs
its script (which reads /health, /stats and /trends) and prints the DOM (``--dump-dom``); the
test finds the exact values its own hooks recorded. A screenshot of the page (desktop and
phone widths) is written to the test's tmp dir and to benchmarks/results/ (gitignored).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

import otel_pipeline as op
from otel_pipeline._internal import snapshot
from tests.support import require_binary

pytestmark = pytest.mark.integration

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
HOSTILE = '<img src=x onerror="document.title=1">&'


def chromium(url: str, *arguments: str) -> str:
    """Run headless Chromium on ``url`` (after 5 s of virtual time: the scripts ran); its stdout."""
    binary = require_binary("chromium")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                *arguments,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def value_of(dom: str, key: str) -> str:
    """The text of the element whose ``data-m`` is ``key`` (tags inside stripped)."""
    found = re.search(rf'data-m="{re.escape(html.escape(key))}">(.*?)</(?:b|td|span)>', dom, re.S)
    assert found is not None, f"no {key!r} in the page"
    return html.unescape(re.sub(r"<[^>]+>", "", found[1])).strip()


def record() -> None:
    """What the page must show: a queue, a pipeline with stages, a cache, a breaker, a hostile name."""
    emails = op.queue("emails")
    emails.enqueued(9)
    for _ in range(7):
        with emails.processing():
            pass
    for _ in range(2):
        try:
            with emails.processing():
                raise ConnectionError("smtp down")
        except ConnectionError:
            pass
    with op.pipeline("nightly-etl") as run:
        with run.stage("extract") as stage:
            stage.processed(120)
        with run.stage("load") as stage:
            stage.processed(118)
    users = op.cache("users")
    for _ in range(3):
        users.hit()
    users.miss()
    op.circuit_breaker("payments").record_state("open")  # the service is degraded
    op.queue(HOSTILE).enqueued(5)


def test_the_page_shows_the_processs_values(tmp_path: Path) -> None:
    pipeline = op.configure(service_name="page-test", prometheus_port=0)
    assert pipeline.server is not None
    record()
    dom = chromium(f"{pipeline.server.url}/", "--dump-dom")
    assert '<span id="error" role="alert"></span>' in dom  # read and drawn without an error
    assert value_of(dom, "queue/emails/processed/success") == "7"
    assert value_of(dom, "queue/emails/processed/failure") == "2"
    assert value_of(dom, "queue/emails/enqueued") == "9"
    assert value_of(dom, "pipeline/nightly-etl/extract/items") == "120"
    assert value_of(dom, "pipeline/nightly-etl/load/items") == "118"
    assert value_of(dom, "pipeline/nightly-etl/started") == "1"
    assert value_of(dom, "pipeline/nightly-etl/success") == "1"
    assert value_of(dom, "cache/users/hits") == "3"
    assert value_of(dom, "cache/users/hit_ratio") == "75.0%"
    assert value_of(dom, "breaker/payments/state") == "open"
    assert value_of(dom, "health/status") == "degraded"
    assert value_of(dom, "health/score") == str(50 + 39 // 2)  # exporter healthy, breaker degraded
    assert value_of(dom, "health/circuit_breaker:payments/status") == "degraded"
    assert "<title>page-test · degraded</title>" in dom
    # The hostile queue name is text, escaped, never markup.
    assert value_of(dom, f"queue/{HOSTILE}/enqueued") == "5"
    assert "&lt;img src=x onerror=" in dom
    assert "<img" not in dom
    for path in ("/metrics", "/health", "/stats"):
        assert f'href="{path}"' in dom


def test_a_live_page_shows_rates_and_a_screenshot_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "MAX_AGE", 0.0)  # every refresh sees new data
    pipeline = op.configure(service_name="page-test", prometheus_port=0)
    assert pipeline.server is not None
    record()
    stop = threading.Event()

    def work() -> None:  # a pipeline that keeps running while the page refreshes
        while not stop.wait(0.002):
            with op.pipeline("nightly-etl") as run, run.stage("extract") as stage:
                stage.processed(10)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        dom = chromium(f"{pipeline.server.url}/", "--dump-dom")
        shown = value_of(dom, "pipeline/nightly-etl/extract/rate")
        assert re.fullmatch(r"[0-9.]+k?/s", shown), shown  # items/s from two refreshes
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name, size in (("page-desktop.png", "1280,1600"), ("page-phone.png", "390,2400")):
            shot = tmp_path / name
            chromium(f"{pipeline.server.url}/", f"--window-size={size}", f"--screenshot={shot}")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert shot.stat().st_size > 10_000  # a drawn page, not a blank one
            shutil.copy(shot, RESULTS / name)
    finally:
        stop.set()
        worker.join(10)
