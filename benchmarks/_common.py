"""What the benchmark scripts share: a fresh database, a free loopback port, waiting for a
server, stopping one, signing up an organization and making it an API key, timing sequential
requests, driving ``wrk``, and the quick mode.

Quick mode (``BENCH_QUICK=1``, set by ``make bench QUICK=1`` or by hand): a script runs at a
small size that takes seconds -- a smoke test of the script, not a measurement -- and writes
its JSON under ``benchmarks/results/quick/`` so the real figures are never overwritten."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import URL, make_url

from lovedcrm.db.bootstrap import create_database, drop_database
from lovedcrm.db.embedded import start_embedded
from lovedcrm.db.engine import as_psycopg

ROOT = Path(__file__).resolve().parents[1]


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


def serve(
    db_url: str,
    port: int,
    *,
    worker: bool = False,
    unthrottled: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``lovedcrm serve`` on ``port`` over ``db_url`` with its default processes, quiet, its
    files in a new temporary folder; with a job worker in each process when ``worker``;
    without the per-user rate limit when ``unthrottled``; ``env`` added to the environment."""
    command = [str(ROOT / ".venv/bin/lovedcrm"), "serve", "--port", str(port)]
    return subprocess.Popen(
        command if worker else [*command, "--no-worker"],
        env={
            **os.environ,
            "LOVEDCRM_DATABASE_URL": db_url,
            "LOVEDCRM_LOG_LEVEL": "WARNING",
            "LOVEDCRM_DATA_DIR": tempfile.mkdtemp(),
            **({"LOVEDCRM_USER_RATE_LIMIT_PER_HOUR": "0"} if unthrottled else {}),
            **(env or {}),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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


PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway benchmark account


def signup(base: str, organization_name: str, full_name: str = "Bench Admin") -> dict[str, str]:
    """A new person and organization: ``organization_id``, ``email``, ``token`` (an access
    token) of its admin."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    r = httpx.post(
        f"{base}/api/v1/auth/signup",
        json={
            "email": email,
            "password": PASSWORD,
            "full_name": full_name,
            "organization_name": organization_name,
        },
    )
    r.raise_for_status()
    body = r.json()
    return {
        "organization_id": body["organization_id"],
        "email": email,
        "token": body["tokens"]["access_token"],
    }


def api_key(base: str, token: str, scopes: list[str], rate_limit_per_hour: int = 100_000) -> str:
    """A new API key of the token's organization."""
    r = httpx.post(
        f"{base}/api/v1/api-keys",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "bench", "scopes": scopes, "rate_limit_per_hour": rate_limit_per_hour},
    )
    r.raise_for_status()
    return str(r.json()["key"])


def measure(fn: Callable[[int], None], n: int) -> dict[str, float]:
    """Call ``fn(i)`` ``n`` times in sequence (after five warm-up calls): p50/p95/p99/max ms."""
    for i in range(5):  # warm caches and the connection pool
        fn(i)
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "requests": n,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[max(int(0.95 * n) - 1, 0)], 2),
        "p99_ms": round(times[max(int(0.99 * n) - 1, 0)], 2),
        "max_ms": round(times[-1], 2),
    }


# Appended to every wrk script: the counts and p50/p95/p99 (ms) on one line.
WRK_DONE = r"""
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk(
    url: str,
    seconds: int,
    connections: int,
    headers: dict[str, str] | None = None,
    script: str = "",
) -> dict[str, float]:
    """``wrk`` against ``url`` (two threads at most) with ``script`` (Lua: a ``request``
    function, say) and the headers: requests, errors and non-2xx, requests/s, p50/p95/p99."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + WRK_DONE)
    args = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s"]
    args += ["--timeout", "30s", "-s", f.name]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    try:
        out = subprocess.run(
            [*args, url], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
        ).stdout
    finally:
        os.unlink(f.name)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    if m is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    n, errors, duration_us = int(m[1]), int(m[2]), int(m[3])
    if n == 0:
        raise RuntimeError(f"wrk completed no request:\n{out}")
    return {
        "requests": n,
        "non_2xx_or_errors": errors,
        "throughput_rps": round(n / (duration_us / 1e6), 1),
        "p50_ms": float(m[4]),
        "p95_ms": float(m[5]),
        "p99_ms": float(m[6]),
    }


def figure(
    target: str, name: str, value: float | None, op: str, goal: float, unit: str
) -> dict[str, object]:
    """One measured figure beside its target, as ``benchmarks/summary.py`` reads it."""
    return {"target": target, "name": name, "value": value, "op": op, "goal": goal, "unit": unit}
