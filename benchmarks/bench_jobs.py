"""No-op jobs per minute for ONE worker process (`lovedcrm worker`).

Creates a fresh database on the chosen server (embedded by default, or
LOVEDCRM_DATABASE_URL), inserts JOBS `noop` jobs spread over ORGS organizations, starts one
`lovedcrm worker --concurrency C`, and times from its start until every job is completed.
Each job runs in its own tenant-scoped transaction that also marks it completed, exactly as
real jobs do. Writes benchmarks/results/jobs.json. Target: ≥ 100,000 jobs/minute.

Usage: .venv/bin/python benchmarks/bench_jobs.py [--jobs 60000] [--orgs 10] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import bench_database, quick, results_dir, stop  # noqa: E402

from lovedcrm.db.bootstrap import ensure_app_role  # noqa: E402
from lovedcrm.db.migrate import upgrade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=60_000)
    ap.add_argument("--orgs", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--max-batch", type=int, default=50, help="1 = one transaction per job")
    args = ap.parse_args()
    if quick():  # BENCH_QUICK=1: a smoke run of seconds, not a measurement
        args.jobs, args.orgs = 2_000, 4

    bench_db = bench_database(ROOT)
    url = bench_db.url
    upgrade(url)
    ensure_app_role(url, "lovedcrm_app")
    owner = sa.create_engine(url)
    with owner.begin() as conn:
        orgs = [uuid.uuid4() for _ in range(args.orgs)]
        for i, org in enumerate(orgs):
            conn.execute(
                sa.text("INSERT INTO organizations (id, name, slug) VALUES (:i, :n, :s)"),
                {"i": org, "n": f"Bench {i}", "s": f"bench-{i}-{org.hex[:6]}"},
            )
        conn.execute(
            sa.text(
                "INSERT INTO background_jobs (organization_id, job_type, job_data)"
                " SELECT (:orgs)[1 + g % :k], 'noop', '{}'::jsonb FROM generate_series(1, :n) g"
            ),
            {"orgs": orgs, "k": len(orgs), "n": args.jobs},
        )
    env = {
        **os.environ,
        "LOVEDCRM_DATABASE_URL": url,
        "LOVEDCRM_LOG_LEVEL": "WARNING",
        "LOVEDCRM_DATA_DIR": tempfile.mkdtemp(),
        "LOVEDCRM_WORKER_MAX_BATCH": str(args.max_batch),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/lovedcrm"), "worker", "--concurrency", str(args.concurrency)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done = 0
    samples = []
    try:
        while time.perf_counter() - started < args.timeout:
            time.sleep(0.25)
            with owner.connect() as conn:
                done = conn.execute(
                    sa.text("SELECT count(*) FROM background_jobs WHERE status = 'completed'")
                ).scalar_one()
            samples.append((round(time.perf_counter() - started, 2), done))
            if done >= args.jobs:
                break
        elapsed = time.perf_counter() - started
    finally:
        stop(proc, timeout=60)
        with owner.connect() as conn:
            by_status = dict(
                conn.execute(
                    sa.text("SELECT status, count(*) FROM background_jobs GROUP BY 1")
                ).all()
            )
            attempts = conn.execute(
                sa.text("SELECT max(attempts) FROM background_jobs")
            ).scalar_one()
        owner.dispose()
        bench_db.drop()
    # Steady rate between 10 % and 90 % of the jobs, without process start-up.
    lo = next((t for t, d in samples if d >= args.jobs * 0.1), None)
    hi = next((t for t, d in samples if d >= args.jobs * 0.9), None)
    steady = (
        (args.jobs * 0.8) / (hi - lo) * 60
        if lo is not None and hi is not None and hi > lo
        else None
    )
    out = {
        "benchmark": "jobs_noop_one_worker",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "external" if os.environ.get("LOVEDCRM_DATABASE_URL") else "embedded",
        "params": vars(args),
        "completed": done,
        "elapsed_seconds_including_startup": round(elapsed, 2),
        "jobs_per_minute_overall": round(done / elapsed * 60),
        "jobs_per_minute_steady": round(steady) if steady else None,
        "target_jobs_per_minute": 100_000,
        "final_status_counts": by_status,
        "max_attempts_seen": attempts,
    }
    suffix = "" if args.max_batch > 1 else "_unbatched"
    path = results_dir() / f"jobs{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
