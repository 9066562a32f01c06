"""A worker group that pushes OTLP only: ``otlp_main.py pool METHOD EVENTS`` or ``loop EVENTS SECONDS``.

``pool``: a ``multiprocessing.Pool`` (``maxtasksperchild``: its workers are recycled) records
``EVENTS`` events; ``loop``: this process records ``EVENTS`` events spread over ``SECONDS``
(several such processes of one service form a group whose hub leaves first). The endpoint, the
group key (``OTEL_EXPORTER_PROMETHEUS_PORT``: nothing is served on it) and ``group_export``
(``OTEL_PIPELINE_GROUP_EXPORT``) come from the environment, and how long a task takes
(``TASK_SECONDS``). Prints one JSON line at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time

import otel_pipeline as op

op.configure(
    service_name="otlp-group",
    exporter="otlp",
    otlp_endpoint=os.environ["OTLP_ENDPOINT"],
    export_interval=0.2,
)


def task(number: int) -> int:
    with op.events("orders").process("order.created"):
        time.sleep(float(os.environ.get("TASK_SECONDS", "0.01")))
    return os.getpid()


def main() -> None:
    mode = sys.argv[1]
    pids: set[int] = set()
    if mode == "pool":
        context = multiprocessing.get_context(sys.argv[2])
        with context.Pool(3, maxtasksperchild=5) as pool:
            pids = set(pool.map(task, range(int(sys.argv[3])), chunksize=1))
            pool.close()
            pool.join()
    else:
        events, seconds = int(sys.argv[2]), float(sys.argv[3])
        for number in range(events):
            task(number)
            time.sleep(seconds / events)
    pipeline = op.configure(
        service_name="otlp-group",
        exporter="otlp",
        otlp_endpoint=os.environ["OTLP_ENDPOINT"],
        export_interval=0.2,
    )
    role = getattr(pipeline.group, "role", None)
    delivered = op.shutdown()
    print(json.dumps({"pid": os.getpid(), "workers": sorted(pids), "role": role, "delivered": delivered}))


if __name__ == "__main__":
    main()
