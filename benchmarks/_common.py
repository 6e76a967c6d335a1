"""What the benchmark scripts share: a fresh database, a free loopback port, waiting for a
server, stopping one, and the quick mode.

Quick mode (``BENCH_QUICK=1``, set by ``make bench QUICK=1`` or by hand): a script runs at a
small size that takes seconds -- a smoke test of the script, not a measurement -- and writes
its JSON under ``benchmarks/results/quick/`` so the real figures are never overwritten."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import URL, make_url

from lovedcrm.db.bootstrap import create_database, drop_database
from lovedcrm.db.embedded import start_embedded
from lovedcrm.db.engine import as_psycopg


@dataclass(frozen=True)
class BenchDatabase:
    server: URL
    name: str
    url: str

    def drop(self) -> None:
        drop_database(self.server, self.name)


def bench_database(root: Path) -> BenchDatabase:
    """A new database on LOVEDCRM_DATABASE_URL's server, or on an embedded one under var/."""
    raw = os.environ.get("LOVEDCRM_DATABASE_URL") or start_embedded(root / "var" / "bench-postgres")
    server = as_psycopg(make_url(raw))
    name = f"lovedcrm_bench_{uuid.uuid4().hex[:8]}"
    create_database(server, name)
    return BenchDatabase(
        server, name, server.set(database=name).render_as_string(hide_password=False)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, seconds: float = 60) -> None:
    """Wait until `GET /readyz` answers 200, or raise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base} did not become ready in {seconds:g}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


RESULTS = Path(__file__).resolve().parent / "results"


def quick() -> bool:
    """Whether this run is a quick smoke run (``BENCH_QUICK=1``)."""
    return os.environ.get("BENCH_QUICK", "").strip().lower() in {"1", "true", "yes"}


def results_dir() -> Path:
    """Where a benchmark writes its JSON: ``results/``, or ``results/quick/`` in quick mode."""
    path = RESULTS / "quick" if quick() else RESULTS
    path.mkdir(parents=True, exist_ok=True)
    return path
