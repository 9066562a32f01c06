"""A concurrent.futures.ProcessPoolExecutor driven step by step (JSON lines on stdin, answers on stdout).

``configure()`` runs at import, as in an application module: a spawned worker imports this module
too and configures there; a forked worker joins the group through the at-fork handler. With
``spawn``, each worker ends after one task (``max_tasks_per_child=1``, Python 3.11+; ``fork``
refuses it; CPython 3.11 deadlocks with larger values, CPython issue 115634).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import otel_pipeline as op

op.configure(service_name="executor", prometheus_port=int(os.environ["METRICS_PORT"]))


def task(number: int) -> int:
    with op.events("orders").process("order.created"):
        pass
    return os.getpid()


def executor(method: str) -> ProcessPoolExecutor:
    options: dict[str, Any] = {}
    if method != "fork" and sys.version_info >= (3, 11):
        options["max_tasks_per_child"] = 1
    return ProcessPoolExecutor(3, mp_context=multiprocessing.get_context(method), **options)


def main() -> None:
    method = sys.argv[1]
    pool = executor(method)

    def say(**answer: Any) -> None:
        print(json.dumps(answer), flush=True)

    say(ready=True)
    for line in sys.stdin:
        step = json.loads(line)
        action = step["do"]
        if action == "run":
            say(pids=list(pool.map(task, range(step["n"]))))
        elif action == "replace":  # every worker exits at once (their final hand-overs), a new pool
            pool.shutdown(wait=True)
            pool = executor(method)
            say()
        elif action == "end":
            pool.shutdown(wait=True)
            say(shutdown=op.shutdown())
            return


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main()
