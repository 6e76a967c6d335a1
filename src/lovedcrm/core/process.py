"""Server processes that end with the process that started them.

``lovedcrm serve --workers N`` (N > 1) runs N uvicorn worker processes under one supervisor.
If the supervisor is killed outright (SIGKILL, the OOM killer) it cannot stop them, and
orphaned workers would go on serving, holding the embedded PostgreSQL open, with nobody to
stop them. The supervisor names itself in ``LOVEDCRM_SUPERVISOR_PID``; each worker asks the
Linux kernel to SIGKILL it when its parent dies (``prctl(PR_SET_PDEATHSIG)``), exactly as if it
had been killed with the supervisor. Jobs it held are taken back by the engine's lease
expiry; the embedded PostgreSQL is left running and reused by the next start, as after a
SIGKILL of a single-process server.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys

SUPERVISOR_ENV = "LOVEDCRM_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def mark_supervisor() -> None:
    """Called by the supervisor before it starts its workers."""
    os.environ[SUPERVISOR_ENV] = str(os.getpid())


def die_with_supervisor() -> bool:
    """In a worker of a supervisor: be SIGKILLed when it dies. True when armed."""
    raw = os.environ.get(SUPERVISOR_ENV)
    if not raw or not raw.isdigit() or int(raw) == os.getpid():
        return False  # not a worker (or the supervisor itself)
    if not sys.platform.startswith("linux"):
        log.warning("workers cannot follow their supervisor's death on %s", sys.platform)
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
        return False
    if os.getppid() != int(raw):  # the supervisor died before we asked
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def settle_heap() -> None:
    """Once the process is built (the app, its routes, models and templates loaded): move
    every object alive now out of the garbage collector's sight (``gc.freeze``). They live
    as long as the process, yet each full collection walked all ~300,000 of them, a pause of
    about 160 ms on this machine every few seconds under load, in the middle of requests
    (the tail of every latency figure). Cycles made later are still collected.

    The youngest generation is collected every 7,000 allocations instead of 700: a request
    allocates thousands of short-lived objects, and collecting them ten times as often cost
    a tenth of the CPU of an inbound WhatsApp message (benchmarks/bench_whatsapp.py: 2.57 →
    2.38 ms of the server's CPU per message)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(7000, 10, 10)
