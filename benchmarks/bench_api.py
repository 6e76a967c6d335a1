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
import shutil
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import (  # noqa: E402
    api_key,
    bench_database,
    free_port,
    quick,
    results_dir,
    serve,
    signup,
    stop,
    wait_ready,
    wrk,
)


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
    proc = serve(db_url, port, unthrottled=False)
    base = f"http://127.0.0.1:{port}"
    owner = sa.create_engine(db_url)
    try:
        wait_ready(base, 60)
        admin = signup(base, "Bench", "Bench")
        org, token = admin["organization_id"], admin["token"]
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
        key = api_key(base, token, ["leads:read"])
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
