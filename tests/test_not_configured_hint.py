"""Hooks used before configure() record nothing, and say so once per process (a fresh one per case)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HINT = (
    "queue 'emails' was used before otel_pipeline.configure(): hooks record nothing until it is called; "
    "call it once at start-up (configure(enabled=False) turns instrumentation off on purpose)"
)


def run(code: str) -> tuple[str, str]:
    """(stdout, stderr) of ``code`` in a fresh interpreter, logging left as Python's default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import otel_pipeline as op\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_the_first_hook_used_before_configure_logs_one_hint() -> None:
    code = (
        "q = op.queue('emails')\n"
        "for _ in range(1000):\n"
        "    q.enqueued()\n"
        "    with q.processing():\n"
        "        pass\n"
        "op.cache('users').hit()\n"
        "with op.pipeline('etl') as run, run.stage('fetch') as stage:\n"
        "    stage.processed(3)\n"
        "print(op.summary()['queues'])\n"
    )
    stdout, stderr = run(code)
    assert stdout == "{}\n"  # nothing was recorded, as documented
    assert stderr == HINT + "\n"  # Python's last-resort handler: the message, once


def test_creating_hooks_says_nothing_using_one_does() -> None:
    assert run("q = op.queue('emails')\nop.cache('users')\n") == ("", "")


def test_the_hint_goes_to_the_otel_pipeline_logger_as_a_warning() -> None:
    code = (
        "import logging\n"
        "logging.basicConfig(format='%(name)s %(levelname)s %(message)s')\n"
        "op.events('orders').process('order.created').__enter__()\n"
        "op.queue('emails').enqueued()\n"
    )
    _, stderr = run(code)
    assert stderr.splitlines() == [
        "otel_pipeline WARNING events 'orders' was used before otel_pipeline.configure(): hooks record "
        "nothing until it is called; call it once at start-up (configure(enabled=False) turns "
        "instrumentation off on purpose)"
    ]


@pytest.mark.parametrize(
    "setup",
    [
        "op.configure(service_name='svc', exporter='none')\n",
        "op.configure(service_name='svc', enabled=False)\n",
        "op.configure(service_name='svc', exporter='none')\nop.shutdown()\n",  # used after shutdown
        "from otel_pipeline.testing import Capture\ncapture = Capture().__enter__()\n",
    ],
    ids=["configured", "disabled", "after-shutdown", "under-capture"],
)
def test_no_hint_once_something_was_configured(setup: str) -> None:
    use = "op.queue('emails').enqueued()\nwith op.queue('emails').processing():\n    pass\n"
    _, stderr = run(setup + use)
    assert stderr == ""
