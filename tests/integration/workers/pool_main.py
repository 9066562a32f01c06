"""A multiprocessing.Pool driven step by step (JSON lines on stdin, answers on stdout).

``configure()`` runs at import, as in an application module: a spawned child imports this module
too and configures there; a forked child joins the group through the at-fork handler.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import otel_pipeline as op

op.configure(service_name="pool", prometheus_port=int(os.environ["METRICS_PORT"]))

_held: Any = None


def remember(held: Any) -> None:
    """Pool initializer: the queue a holding task reports its pid on."""
    global _held
    _held = held


def task(number: int) -> int:
    with op.events("orders").process("order.created"):
        pass
    return os.getpid()


def hold(seconds: float) -> None:
    """Keep a worker busy (in a task, it holds none of the pool's locks) until it is signalled."""
    _held.put(os.getpid())
    time.sleep(seconds)


def steps() -> Iterator[dict[str, Any]]:
    """The steps on stdin, read from the descriptor: a forked child closes ``sys.stdin``, which would
    hang on its buffer's lock if this thread held it at the fork (the pool forks from its own thread)."""
    buffer = b""
    while True:
        while b"\n" not in buffer:
            data = os.read(0, 65536)
            if not data:
                return
            buffer += data
        line, buffer = buffer.split(b"\n", 1)
        yield json.loads(line)


def main() -> None:
    context = multiprocessing.get_context(sys.argv[1])
    held = context.SimpleQueue()
    pool = context.Pool(3, initializer=remember, initargs=(held,), maxtasksperchild=5)

    def say(**answer: Any) -> None:
        print(json.dumps(answer), flush=True)

    say(ready=True)
    for step in steps():
        action = step["do"]
        if action == "run":
            say(pids=pool.map(task, range(step["n"]), chunksize=1))
        elif action == "sleep":
            time.sleep(step["seconds"])
            say()
        elif action == "signal":  # one worker, busy in a task: SIGTERM or SIGKILL, then it is gone
            pool.apply_async(hold, (120.0,))
            pid = held.get()
            time.sleep(0.5)  # let it leave the queue's lock: killed inside, the pool would hang
            os.kill(pid, step["signal"])
            worker = next(process for process in list(pool._pool) if process.pid == pid)  # type: ignore[attr-defined]
            worker.join(30)
            # The pool's own thread reaps exited workers too: when it wins the race, this join sees
            # the child already waited for and returns before that thread has stored the exit code.
            deadline = time.monotonic() + 10
            while worker.exitcode is None and time.monotonic() < deadline:
                time.sleep(0.01)
            say(pid=pid, exitcode=worker.exitcode)
        elif action == "end":
            pool.terminate()
            pool.join()
            say(shutdown=op.shutdown())
            return


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main()
