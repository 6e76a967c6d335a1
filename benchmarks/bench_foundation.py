"""Foundation benchmark: server time of the account and lead endpoints.

Starts `lovedcrm serve` on a fresh database of the chosen server (embedded by default, or
LOVEDCRM_DATABASE_URL), signs up one organization, creates LEADS leads through the API, then
measures with CONCURRENCY clients over real HTTP on loopback:

- POST /api/v1/auth/login     (dominated by argon2id, by design)
- GET  /api/v1/auth/me        (JWT + session + membership look-ups, RLS on)
- GET  /api/v1/leads?limit=50 (a page of leads under RLS)
- GET  /healthz               (the bare process, for scale)

Writes benchmarks/results/foundation.json. Bounded: a fixed number of requests per endpoint.
Usage: .venv/bin/python benchmarks/bench_foundation.py [--requests 400] [--leads 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import (  # noqa: E402
    bench_database,
    free_port,
    quick,
    results_dir,
    serve,
    stop,
    wait_ready,
)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 2)


async def _measure(
    client: httpx.AsyncClient, method: str, url: str, n: int, conc: int, **kw: object
) -> dict[str, float]:
    times: list[float] = []
    errors = 0
    queue = list(range(n))

    async def worker() -> None:
        nonlocal errors
        while queue:
            queue.pop()
            t = time.perf_counter()
            r = await client.request(method, url, **kw)  # type: ignore[arg-type]
            times.append((time.perf_counter() - t) * 1000)
            if r.status_code >= 400:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    wall = time.perf_counter() - started
    return {
        "requests": n,
        "errors": errors,
        "throughput_rps": round(n / wall, 1),
        "p50_ms": _pct(times, 0.50),
        "p95_ms": _pct(times, 0.95),
        "mean_ms": round(statistics.fmean(times), 2),
    }


async def run(base: str, n: int, leads: int, conc: int) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        password = "bench-password-123"  # noqa: S105 - a throwaway benchmark account
        r = await c.post(
            "/api/v1/auth/signup",
            json={
                "email": email,
                "password": password,
                "full_name": "Bench",
                "organization_name": "Bench",
            },
        )
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['tokens']['access_token']}"}
        for i in range(leads):
            (
                await c.post(
                    "/api/v1/leads",
                    headers=headers,
                    json={"full_name": f"Lead {i}", "company": "ACME", "allow_duplicate": True},
                )
            ).raise_for_status()
        return {
            "healthz": await _measure(c, "GET", "/healthz", n, conc),
            "auth_me": await _measure(c, "GET", "/api/v1/auth/me", n, conc, headers=headers),
            "leads_page_50": await _measure(
                c, "GET", "/api/v1/leads?limit=50", n, conc, headers=headers
            ),
            "login": await _measure(
                c,
                "POST",
                "/api/v1/auth/login",
                max(20, n // 10),
                min(conc, 4),
                json={"email": email, "password": password},
            ),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--leads", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    if quick():  # BENCH_QUICK=1: a smoke run of seconds, not a measurement
        args.requests, args.leads = 40, 100

    bench_db = bench_database(ROOT)
    db_url = bench_db.url
    port = free_port()
    proc = serve(db_url, port, worker=True, unthrottled=False)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, 60)
        results = asyncio.run(run(base, args.requests, args.leads, args.concurrency))
    finally:
        stop(proc)
        bench_db.drop()
    out = {
        "benchmark": "foundation",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "external" if os.environ.get("LOVEDCRM_DATABASE_URL") else "embedded",
        "params": vars(args),
        "results": results,
    }
    path = results_dir() / "foundation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
