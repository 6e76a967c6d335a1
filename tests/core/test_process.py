"""A worker of `serve --workers N` dies with its supervisor, even a SIGKILLed one."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import psutil
import pytest

from lovedcrm.core.process import SUPERVISOR_ENV, die_with_supervisor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

SUPERVISOR = textwrap.dedent(
    """
    import subprocess, sys, time
    from lovedcrm.core.process import mark_supervisor
    mark_supervisor()
    worker = subprocess.Popen([sys.executable, "-c",
        "import sys, time\\n"
        "from lovedcrm.core.process import die_with_supervisor\\n"
        "armed = die_with_supervisor()\\n"
        "print(armed, flush=True)\\n"
        "time.sleep(600)\\n"], stdout=subprocess.PIPE, text=True)
    print(worker.pid, worker.stdout.readline().strip(), flush=True)
    time.sleep(600)
    """
)


def test_a_worker_is_killed_with_its_supervisor() -> None:
    env = {k: v for k, v in os.environ.items() if k != SUPERVISOR_ENV}
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert supervisor.stdout is not None
        pid_text, armed = supervisor.stdout.readline().split()
        assert armed == "True"
        worker = psutil.Process(int(pid_text))
        assert worker.is_running()
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=60)
        # the kernel kills the worker when its parent dies; a generous bound, not a timing check
        worker.wait(timeout=60)
        assert not worker.is_running()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def test_outside_a_supervised_worker_nothing_is_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SUPERVISOR_ENV, raising=False)
    assert die_with_supervisor() is False
    monkeypatch.setenv(SUPERVISOR_ENV, str(os.getpid()))  # the supervisor itself
    assert die_with_supervisor() is False
    monkeypatch.setenv(SUPERVISOR_ENV, "not-a-pid")
    assert die_with_supervisor() is False


async def test_the_served_app_takes_what_it_was_built_with_out_of_the_collectors_sight(
    app: Any,
) -> None:
    """``settle_heap`` at start-up: the objects alive then (routes, models, templates) are
    frozen, so a full collection under load no longer walks them (a ~160 ms pause)."""
    gc.unfreeze()
    before = gc.get_threshold()
    try:
        assert gc.get_freeze_count() == 0
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            threshold = gc.get_threshold()
        assert frozen > 10_000, frozen
        assert threshold[0] == 7000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
