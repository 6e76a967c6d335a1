"""Signed Twilio status callbacks at a steady rate: acknowledged fast, none lost or doubled?
Issue 16's target: >= 500 callbacks/s acknowledged, p95 < 50 ms, every acknowledged callback
stored exactly once (``call_events``), replays not stored again, every call ending
``completed`` with its cost and timeline activity.

A fresh database (embedded by default, or LOVEDCRM_DATABASE_URL); ``lovedcrm serve`` as it
starts by default on the same 2 cores as PostgreSQL and the load generator. Set-up: an
organization with a Twilio configuration (cost per minute, no price reported: the fallback),
LEADS leads and CALLS outbound calls already placed (rows written as the owner: dialling is
not what is measured). The load (``benchmarks/_load.py``, open loop at a fixed rate) posts,
for each call, Twilio's form-encoded ``ringing`` (SequenceNumber 1), ``in-progress`` (2) and
``completed`` (3, with CallDuration) callbacks, each signed with the auth token exactly as
Twilio signs them (X-Twilio-Signature over the URL and the sorted parameters), shuffled in
small windows so some arrive out of order, and one in ten a replay of an earlier one.

The callbacks are acknowledged once stored (one INSERT, batched under a burst) and applied by
the ``calls.apply_events`` job of the worker inside ``serve``: after the load, how long until
none is pending; then, as the owner: the stored events against the distinct callbacks
acknowledged, calls by state, calls finished with a cost and activities written.

Writes benchmarks/results/calls.json (quick mode, BENCH_QUICK=1 or --quick: a few seconds at
100/s, under results/quick/).

Usage: .venv/bin/python benchmarks/bench_calls.py [--rate 500] [--seconds 30]
       [--connections 32] [--worker-processes 0] [--quick] [--out calls.json]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import (  # noqa: E402
    bench_database,
    figure,
    free_port,
    quick,
    results_dir,
    stop,
    wait_ready,
)

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-twilio-auth-token"  # noqa: S105 - a benchmark fixture
LEADS = 200


def sign(url: str, params: list[tuple[str, str]]) -> str:
    payload = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(
        hmac.new(AUTH_TOKEN.encode(), payload.encode(), hashlib.sha1).digest()
    ).decode()


def callback(sid: str, status: str, seq: int, duration: int | None) -> list[tuple[str, str]]:
    form = [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", sid),
        ("CallStatus", status),
        ("CallbackSource", "call-progress-events"),
        ("Direction", "outbound-api"),
        ("From", "+551130001000"),
        ("SequenceNumber", str(seq)),
        ("Timestamp", "Mon, 07 Dec 2026 10:00:00 +0000"),
        ("To", "+5511977776666"),
    ]
    if duration is not None:
        form.append(("CallDuration", str(duration)))
    return form


def build_lines(url: str, sids: list[str]) -> tuple[list[str], list[str]]:
    """Request lines (signature TAB body) and each one's event key; per call ringing, answered,
    completed, shuffled within windows of 12; every 10th line a replay of an earlier one."""
    rng = random.Random(16)
    events: list[tuple[str, list[tuple[str, str]]]] = []
    for sid in sids:
        events.append((f"{sid}:1", callback(sid, "ringing", 1, None)))
        events.append((f"{sid}:2", callback(sid, "in-progress", 2, None)))
        events.append((f"{sid}:3", callback(sid, "completed", 3, rng.randint(5, 300))))
    for start in range(0, len(events), 12):
        window = events[start : start + 12]
        rng.shuffle(window)
        events[start : start + 12] = window
    lines: list[str] = []
    keys: list[str] = []
    for i, (key, form) in enumerate(events):
        if i % 10 == 9:
            lines.append(lines[i - 7])
            keys.append(keys[i - 7])
        lines.append(f"{sign(url, form)}\t{urlencode(form)}")
        keys.append(key)
    return lines, keys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=500, help="callbacks per second")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        help="separate `lovedcrm worker` processes (0: the worker serve runs inside itself)",
    )
    ap.add_argument("--drain-limit", type=float, default=300, help="give up waiting after this")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="calls.json")
    args = ap.parse_args()
    if args.quick or quick():
        os.environ["BENCH_QUICK"] = "1"
        args.quick = True
        args.rate, args.seconds = 100, 3

    bench_db = bench_database(ROOT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LOVEDCRM_DATABASE_URL": bench_db.url,
        "LOVEDCRM_LOG_LEVEL": "WARNING",
        "LOVEDCRM_DATA_DIR": tempfile.mkdtemp(),
        "LOVEDCRM_BASE_URL": base,
    }
    serve = [str(ROOT / ".venv/bin/lovedcrm"), "serve", "--port", str(port)]
    if args.worker_processes:
        serve.append("--no-worker")
    web = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    owner = sa.create_engine(bench_db.url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_ready(base, 90)
        for _ in range(args.worker_processes):
            workers.append(
                subprocess.Popen(
                    [str(ROOT / ".venv/bin/lovedcrm"), "worker"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        r = httpx.post(
            f"{base}/api/v1/auth/signup",
            json={
                "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                "password": "bench-password-123",
                "full_name": "Bench",
                "organization_name": "Bench Calls",
            },
        )
        r.raise_for_status()
        org, user = r.json()["organization_id"], r.json()["user"]["id"]
        h = {"Authorization": f"Bearer {r.json()['tokens']['access_token']}"}
        cfg = httpx.post(
            f"{base}/api/v1/calls/configs",
            headers=h,
            json={
                "provider_type": "twilio",
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "business_numbers": ["+551130001000"],
                "cost_per_minute": "0.0130",
                "currency": "USD",
            },
        )
        cfg.raise_for_status()
        config_id = cfg.json()["id"]
        lead_ids = []
        with httpx.Client(base_url=base, headers=h, timeout=30) as c:
            for i in range(LEADS):
                made = c.post(
                    "/api/v1/leads",
                    json={
                        "full_name": f"Lead {i}",
                        "phone": f"+55119{i:08d}",
                        "allow_duplicate": True,
                    },
                )
                made.raise_for_status()
                lead_ids.append(made.json()["id"])
        total = args.rate * args.seconds
        calls = max(1, int(total / 3.3) + 1)
        sids = [f"CA{uuid.uuid4().hex}" for _ in range(calls)]
        with owner.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO call_logs (organization_id, lead_id, user_id, provider_type,"
                    " provider_call_id, direction, from_number, to_number, status, metadata)"
                    " SELECT CAST(:org AS uuid), CAST(l AS uuid), CAST(:user AS uuid), 'twilio', s,"
                    " 'outbound', '+551130001000', '+5511977776666', 'queued',"
                    " jsonb_build_object('voip_config_id', CAST(:cfg AS text))"
                    " FROM unnest(CAST(:sids AS text[]), CAST(:leads AS text[])) AS u(s, l)"
                ),
                {
                    "org": org,
                    "user": user,
                    "cfg": config_id,
                    "sids": sids,
                    "leads": [lead_ids[i % LEADS] for i in range(calls)],
                },
            )
        url = f"{base}/webhooks/calls/{config_id}"
        lines, keys = build_lines(url, sids)
        lines, keys = lines[:total], keys[:total]
        data_file = Path(tempfile.mkdtemp()) / "callbacks.txt"
        data_file.write_text("\n".join(lines) + "\n")
        started = time.time()
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "_load.py"),
                url,
                str(data_file),
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.seconds),
                "--connections",
                str(args.connections),
                "--header",
                "X-Twilio-Signature",
                "--content-type",
                "application/x-www-form-urlencoded",
            ],
            capture_output=True,
            text=True,
            check=True,
            stdin=subprocess.DEVNULL,
        ).stdout
        load: dict[str, Any] = json.loads(out)
        load_ended = time.time()
        # Applied by the job worker inside `serve`: wait until no stored callback is pending.
        pending = -1
        while time.time() - load_ended < args.drain_limit:
            with owner.connect() as conn:
                pending = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM call_events"
                        " WHERE organization_id = CAST(:org AS uuid) AND NOT applied"
                    ),
                    {"org": org},
                ).scalar_one()
            if pending == 0:
                break
            time.sleep(0.5)
        drain_seconds = round(time.time() - load_ended, 1)
        acked = load.pop("acked_lines")
        distinct_acked = {keys[i] for i in acked}
        with owner.connect() as conn:
            stored = (
                conn.execute(
                    sa.text(
                        "SELECT event_key FROM call_events"
                        " WHERE organization_id = CAST(:org AS uuid)"
                    ),
                    {"org": org},
                )
                .scalars()
                .all()
            )
            by_status = dict(
                conn.execute(
                    sa.text(
                        "SELECT status, count(*) FROM call_logs"
                        " WHERE organization_id = CAST(:org AS uuid) GROUP BY status"
                    ),
                    {"org": org},
                ).all()
            )
            costed = conn.execute(
                sa.text(
                    "SELECT count(*) FROM call_logs WHERE organization_id = CAST(:org AS uuid)"
                    " AND status = 'completed' AND cost_amount IS NOT NULL"
                ),
                {"org": org},
            ).scalar_one()
            activities = conn.execute(
                sa.text(
                    "SELECT count(*) FROM lead_activities"
                    " WHERE organization_id = CAST(:org AS uuid) AND activity_type = 'call'"
                ),
                {"org": org},
            ).scalar_one()
        stored_set = set(stored)
        completed_keys = {k for k in distinct_acked if k.endswith(":3")}
        result = {
            "benchmark": "calls",
            "what": "signed Twilio status callbacks, open loop at a fixed rate, 1 in 10 a replay",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "quick": bool(args.quick),
            "set_up": "serve"
            + (
                f" --no-worker + {args.worker_processes} worker process(es)"
                if args.worker_processes
                else " (worker inside)"
            ),
            "calls": calls,
            "callbacks_posted": len(lines),
            "load": load,
            "distinct_callbacks_acknowledged": len(distinct_acked),
            "events_stored": len(stored),
            "events_stored_distinct": len(stored_set),
            "lost": len(distinct_acked - stored_set),
            "doubled": len(stored) - len(stored_set),
            "calls_by_status": by_status,
            "completed_with_cost": costed,
            "completed_callbacks_acknowledged": len(completed_keys),
            "call_activities": activities,
            "applied_all_within_s": drain_seconds if pending == 0 else None,
            "still_pending": pending,
            "apply_rate_per_s": round(
                len(stored_set) / max(drain_seconds + load["duration_s"], 1e-9), 1
            ),
            "targets": {
                "rate_per_s": 500,
                "p95_ms": 50,
                "met": bool(
                    load["rate_per_s"] >= 0.95 * args.rate
                    and load["latency_from_due_ms"]["p95"] < 50
                    and not (distinct_acked - stored_set)
                    and len(stored) == len(stored_set)
                ),
            },
            "wall_seconds": round(time.time() - started, 1),
        }
        p95 = load["latency_from_due_ms"]["p95"]
        result["figures"] = [
            figure("16", "Calls: callbacks per second sent", args.rate, ">=", 500, "/s"),
            figure("16", "Calls: non-2xx or failed requests", load["non_2xx"] + load["errors"],
                   "==", 0, ""),
            figure("16", "Calls: acknowledgement p95 (from when due)", p95, "<", 50, "ms"),
            figure("16", "Calls: callbacks lost", len(distinct_acked - stored_set), "==", 0, ""),
            figure("16", "Calls: callbacks doubled", len(stored) - len(stored_set), "==", 0, ""),
        ]  # fmt: skip
        target = results_dir() / args.out
        target.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        for worker in workers:
            stop(worker)
        stop(web)
        owner.dispose()
        bench_db.drop()


if __name__ == "__main__":
    main()
