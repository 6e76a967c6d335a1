"""Public API throughput: `GET /api/v1/leads?limit=50` with an API key at concurrency 32,
beside a bare endpoint (`GET /healthz/db`: one `SELECT 1` through the same pool) on the same
server and database, in the same run. Target: the API at least half the bare throughput.

One `lovedcrm serve --no-worker` process on loopback, a fresh database (embedded by default,
or LOVEDCRM_DATABASE_URL), one organization with LEADS leads, load from `wrk` (Debian package
`wrk`) with a Lua hook that reports p50/p95/p99. Writes benchmarks/results/api.json.

Usage: .venv/bin/python benchmarks/bench_api.py [--leads 1000] [--seconds 15] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import bench_database, free_port, quick, results_dir, stop, wait_ready  # noqa: E402

LUA = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", f.name]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    ).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    assert m, out
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if quick():  # BENCH_QUICK=1: a smoke run of seconds, not a measurement
        args.leads, args.seconds = 200, 2
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")

    bench_db = bench_database(ROOT)
    db_url = bench_db.url
    port = free_port()
    env = {
        **os.environ,
        "LOVEDCRM_DATABASE_URL": db_url,
        "LOVEDCRM_LOG_LEVEL": "WARNING",
        "LOVEDCRM_DATA_DIR": tempfile.mkdtemp(),
    }
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/lovedcrm"), "serve", "--port", str(port), "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    owner = sa.create_engine(db_url)
    try:
        wait_ready(base, 60)
        r = httpx.post(
            f"{base}/api/v1/auth/signup",
            json={
                "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                "password": "bench-password-123",
                "full_name": "Bench",
                "organization_name": "Bench",
            },
        )
        r.raise_for_status()
        org = r.json()["organization_id"]
        token = r.json()["tokens"]["access_token"]
        with owner.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO leads"
                    " (organization_id, full_name, company, stage_id, email, phone)"
                    " SELECT :org, 'Lead ' || g, 'ACME ' || (g % 97),"
                    " (SELECT id FROM pipeline_stages WHERE organization_id = :org"
                    "  ORDER BY stage_order LIMIT 1),"
                    " 'lead' || g || '@example.com', '+55119' || lpad(g::text, 8, '0')"
                    " FROM generate_series(1, :n) g"
                ),
                {"org": org, "n": args.leads},
            )
        r = httpx.post(
            f"{base}/api/v1/api-keys",
            headers={"Authorization": f"Bearer {token}"},
            json={"name": "bench", "scopes": ["leads:read"], "rate_limit_per_hour": 100000},
        )
        r.raise_for_status()
        key = r.json()["key"]
        check = httpx.get(
            f"{base}/api/v1/leads?limit=50", headers={"Authorization": f"Bearer {key}"}
        )
        assert check.status_code == 200 and len(check.json()["items"]) == 50, check.text
        warm = 1 if quick() else 3
        wrk(f"{base}/healthz/db", warm, args.connections, {})  # warm both paths
        wrk(
            f"{base}/api/v1/leads?limit=50",
            warm,
            args.connections,
            {"Authorization": f"Bearer {key}"},
        )
        bare = wrk(f"{base}/healthz/db", args.seconds, args.connections, {})
        api = wrk(
            f"{base}/api/v1/leads?limit=50",
            args.seconds,
            args.connections,
            {"Authorization": f"Bearer {key}"},
        )
    finally:
        stop(proc)
        owner.dispose()
        bench_db.drop()
    out = {
        "benchmark": "api_leads_page_vs_bare",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "external" if os.environ.get("LOVEDCRM_DATABASE_URL") else "embedded",
        "params": vars(args),
        "bare_healthz_db": bare,
        "api_leads_limit_50_with_key": api,
        "api_to_bare_throughput_ratio": (
            round(api["throughput_rps"] / bare["throughput_rps"], 3)
            if bare["throughput_rps"]
            else None
        ),
        "target_ratio": 0.5,
    }
    path = results_dir() / "api.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
