"""Forked children start with empty aggregates and their own service.instance.id."""

from __future__ import annotations

import json
import multiprocessing
import os
from typing import Any

import otel_pipeline as op
from otel_pipeline._internal import runtime
from tests.core.support import normal_form, pipeline_in


def _child_report() -> dict[str, Any]:
    """What the current pipeline holds, from inside the child."""
    pipeline = runtime.current()
    assert pipeline is not None
    assert pipeline.resource is not None
    q = op.queue("forked")
    q.enqueued(2)
    exported = normal_form(pipeline.collect())
    points = exported["queue.jobs.enqueued"]["points"]
    return {
        "instance": pipeline.resource.attributes["service.instance.id"],
        "enqueued": [values[0] for _, values, _ in points],
    }


def test_os_fork_child_starts_empty_with_its_own_instance_id() -> None:
    with pipeline_in("core") as parent:
        assert parent.resource is not None
        parent_instance = parent.resource.attributes["service.instance.id"]
        op.queue("forked").enqueued(5)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                os.close(read_end)
                os.write(write_end, json.dumps(_child_report()).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as reader:
            report = json.loads(reader.read())
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The child saw only its own 2, not the parent's 5; the parent still has its 5 alone.
        assert report["enqueued"] == [2]
        assert report["instance"] != parent_instance
        exported = normal_form(parent.collect())
        assert [v[0] for _, v, _ in exported["queue.jobs.enqueued"]["points"]] == [5]


def _worker(queue: Any) -> None:
    queue.put(_child_report())


def test_multiprocessing_fork_workers_each_start_empty() -> None:
    context = multiprocessing.get_context("fork")
    with pipeline_in("core") as parent:
        assert parent.resource is not None
        op.queue("forked").enqueued(7)
        results = context.Queue()
        workers = [context.Process(target=_worker, args=(results,)) for _ in range(2)]
        for worker in workers:
            worker.start()
        reports = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        instances = {r["instance"] for r in reports}
        assert all(r["enqueued"] == [2] for r in reports)
        assert len(instances) == 2
        assert parent.resource.attributes["service.instance.id"] not in instances


def test_forked_child_does_not_export_the_parents_data_again() -> None:
    """The copied readers are quiet in the child: collecting them there yields nothing."""
    with pipeline_in("sdk") as parent:
        op.queue("forked").enqueued(3)
        reader = parent.local_reader
        assert reader is not None
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                os.write(write_end, json.dumps(reader.get_metrics_data() is None).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            quiet = json.loads(pipe.read())
        os.waitpid(pid, 0)
        assert quiet is True
        assert normal_form(parent.collect())["queue.jobs.enqueued"]["points"][0][1] == (3,)
