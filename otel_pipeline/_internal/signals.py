"""Flush on SIGTERM when the program does not handle it itself, then end as SIGTERM would.

systemd and Kubernetes stop a process with SIGTERM, whose default action ends it at once: no
atexit handler runs, and everything recorded since the last export is lost. So when
``configure()`` sets up a pipeline that pushes (an exporter with a final export) and SIGTERM's
disposition is still the default, it installs :func:`_on_sigterm`: the default disposition is put
back at once (a second SIGTERM ends the process without waiting), a thread runs ``shutdown()``
(bounded by ``export_timeout + 2`` s) and then raises SIGTERM again, so the process ends with
the status SIGTERM gives (-15, 143 in a shell). Whatever the flush does, the process ends within
the limit given to :func:`install` (``export_timeout + 20`` s from ``configure()``): a flush stuck
(on a lock a fork copied while another thread held it, say) must never keep a stopped process alive.

The flush runs on a thread rather than in the handler: the handler interrupts the main thread
wherever it is, possibly holding a series lock the final collection needs. The thread is not a
daemon, so a main thread that finishes meanwhile waits for the flush at interpreter exit.

- A handler of the program's own (or ``SIG_IGN``) set before ``configure()``: left alone.
- A handler the program sets after ``configure()`` replaces ours: then it is the program's, and
  it should call ``op.shutdown()`` itself to flush.
- ``shutdown()`` restores the default disposition if ours is still installed.
- Only the main thread may install a handler: ``configure()`` from another thread installs none.
- A forked child inherits the handler and flushes its own pipeline.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from otel_pipeline._internal.errors import logger

__all__ = ["install", "installed", "restore"]

_flush: Callable[[], object] | None = None
#: Seconds the flush may take before the process ends without it (see :func:`install`).
_limit = 30.0


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def installed() -> bool:
    """Whether our SIGTERM handler is the current one."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def install(flush: Callable[[], object], limit: float = 30.0) -> bool:
    """Install the handler if SIGTERM still has its default disposition; returns whether ours is set.

    ``limit``: seconds ``flush`` may take before the process ends anyway.
    """
    global _flush, _limit
    if not _main_thread():
        logger.debug("SIGTERM: configure() outside the main thread installs no handler")
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is not signal.SIG_DFL and current is not _on_sigterm:
        logger.debug("SIGTERM: the program has a handler of its own (%r); left alone", current)
        return False
    _flush, _limit = flush, limit
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def restore() -> None:
    """Put back the default disposition if our handler is still the current one (main thread only)."""
    if _main_thread() and installed():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    done = threading.Event()
    try:
        threading.Thread(target=_flush_and_end, args=(done,), name="otel-pipeline-sigterm").start()
        threading.Thread(
            target=_end_past_limit, args=(done,), name="otel-pipeline-sigterm-limit", daemon=True
        ).start()
    except RuntimeError:  # no new threads (interpreter shutting down): flush here
        _flush_and_end(done)


def _flush_and_end(done: threading.Event) -> None:
    try:
        if _flush is not None:
            _flush()
    except BaseException:
        logger.exception("flushing on SIGTERM failed")
    finally:
        done.set()
        _end()


def _end_past_limit(done: threading.Event) -> None:
    if not done.wait(_limit):
        logger.error("flushing on SIGTERM took longer than %.0f s; ending without the rest of it", _limit)
        _end()


def _end() -> None:
    """End the process as SIGTERM would: the default disposition, the signal raised again."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1.0)  # the signal is on its way; only if SIGTERM is blocked everywhere do we get here
    os._exit(128 + signal.SIGTERM)
