"""Inbound WhatsApp webhooks: sustained rate, acknowledgement time, and time until a message
is visible in the inbox. Target: ≥ 500 messages/s with p95 acknowledgement < 50 ms, none lost
or doubled.

A fresh database (embedded by default, or LOVEDCRM_DATABASE_URL); one `lovedcrm serve
--no-worker` process answering the webhooks and one `lovedcrm worker` process processing them
at the same time, on the same 2 cores as PostgreSQL and the load generator. The load is `wrk`
(one thread, CONNECTIONS connections) posting pre-built Cloud API webhook bodies, each signed
with the app secret as Meta signs them (X-Hub-Signature-256), each a new message from one of
SENDERS customers (new senders become leads), one in ten a redelivery of an earlier body.

Then: how long the worker takes to drain what was acknowledged, a check that every message
acknowledged is stored exactly once, and the latency from posting one webhook to its
`message.received` event on the inbox's live stream (SSE), measured one at a time.

Writes benchmarks/results/whatsapp.json.

Usage: .venv/bin/python benchmarks/bench_whatsapp.py [--seconds 20] [--connections 8]
       [--senders 2000] [--probes 50] [--web-processes 1] [--worker-processes 1]
       [--out whatsapp.json]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import bench_database, free_port, stop, wait_ready  # noqa: E402

APP_SECRET = "bench-app-secret"  # noqa: S105 - a benchmark fixture
PHONE_NUMBER_ID = "106540352242922"

# One wrk thread walks the prepared lines in order (body and signature per line).
LUA = """
local lines = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    local tab = string.find(line, "\\t")
    lines[#lines + 1] = {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)}
  end
end
request = function()
  i = i + 1
  local item = lines[((i - 1) % #lines) + 1]
  return wrk.format("POST", nil,
    {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = item[1]}, item[2])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def _sign(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def _webhook(wamid: str, sender: str, text: str) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001234", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": f"Cliente {sender[-4:]}"}, "wa_id": sender}],
        "messages": [
            {
                "from": sender,
                "id": wamid,
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def build_lines(n: int, senders: int) -> tuple[list[str], list[str]]:
    """n request lines and, for each, its wamid; every 10th line re-sends an earlier one."""
    lines: list[str] = []
    wamids: list[str] = []
    for i in range(n):
        if i % 10 == 9:
            j = i - 5
            lines.append(lines[j])
            wamids.append(wamids[j])
            continue
        wamid = f"wamid.BENCH{i:08d}{uuid.uuid4().hex[:8]}"
        sender = f"55119{(i % senders):08d}"
        body = _webhook(wamid, sender, f"Mensagem {i}: quero saber o preço")
        lines.append(f"{_sign(body)}\t{body.decode()}")
        wamids.append(wamid)
    return lines, wamids


def run_wrk(url: str, seconds: int, connections: int, data_file: str) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", f.name, url, "--", data_file],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    assert m, out
    n, errors, duration_us = int(m[1]), int(m[2]), int(m[3])
    return {
        "requests": n,
        "non_2xx_or_errors": errors,
        "duration_s": round(duration_us / 1e6, 2),
        "rate_per_s": round(n / (duration_us / 1e6), 1),
        "p50_ms": float(m[4]),
        "p95_ms": float(m[5]),
        "p99_ms": float(m[6]),
    }


def stored(owner: sa.Engine, org: str) -> tuple[int, int, set[str]]:
    with owner.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT provider_message_id, count(*) FROM messages"
                " WHERE organization_id = :o AND direction = 'inbound'"
                " GROUP BY provider_message_id"
            ),
            {"o": org},
        ).all()
    doubled = sum(1 for _, c in rows if c > 1)
    return len(rows), doubled, {r[0] for r in rows}


def pending_jobs(owner: sa.Engine) -> int:
    with owner.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM background_jobs WHERE job_type = 'whatsapp.inbound'"
                    " AND status IN ('pending', 'retrying', 'running')"
                )
            ).scalar_one()
        )


def sse_probe(base: str, token: str, config_id: str, probes: int) -> list[float]:
    """Post one webhook at a time; time until its message.received event is on the stream."""
    seen: dict[str, float] = {}
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=60)) as c,
            c.stream(
                "GET",
                f"{base}/api/v1/events/stream",
                headers={"Authorization": f"Bearer {token}"},
            ) as r,
        ):
            ready.set()
            for line in r.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("data:") and "message.received" in line:
                    seen[json.loads(line[5:])["message_id"]] = time.perf_counter()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    ready.wait(10)
    time.sleep(0.5)
    latencies = []
    with httpx.Client(base_url=base) as c:
        for i in range(probes):
            before = len(seen)
            body = _webhook(f"wamid.PROBE{i}{uuid.uuid4().hex}", f"55119{90000000 + i}", "oi")
            start = time.perf_counter()
            r = c.post(
                f"/webhooks/whatsapp/{config_id}",
                content=body,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": _sign(body)},
            )
            r.raise_for_status()
            deadline = start + 10
            while len(seen) == before and time.perf_counter() < deadline:
                time.sleep(0.001)
            if len(seen) > before:
                latencies.append((max(seen.values()) - start) * 1000)
            time.sleep(0.05)
    stop.set()
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--senders", type=int, default=2000)
    ap.add_argument("--probes", type=int, default=50)
    ap.add_argument("--worker-concurrency", type=int, default=4)
    ap.add_argument("--web-processes", type=int, default=1)
    ap.add_argument("--worker-processes", type=int, default=1)
    ap.add_argument("--out", default="whatsapp.json")
    args = ap.parse_args()
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
        "LOVEDCRM_BASE_URL": f"http://127.0.0.1:{port}",
    }
    web = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/lovedcrm"),
            "serve",
            "--port",
            str(port),
            "--no-worker",
            "--workers",
            str(args.web_processes),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    owner = sa.create_engine(db_url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_ready(base, 60)
        for _ in range(args.worker_processes):
            workers.append(
                subprocess.Popen(
                    [
                        str(ROOT / ".venv/bin/lovedcrm"),
                        "worker",
                        "--concurrency",
                        str(args.worker_concurrency),
                    ],
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
                "organization_name": "Bench WhatsApp",
            },
        )
        r.raise_for_status()
        org = r.json()["organization_id"]
        token = r.json()["tokens"]["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        r = httpx.post(
            f"{base}/api/v1/whatsapp/configs",
            headers=h,
            json={
                "provider_type": "business_api",
                "business_phone_id": PHONE_NUMBER_ID,
                "access_token": "bench-token",
                "app_secret": APP_SECRET,
            },
        )
        r.raise_for_status()
        config_id = r.json()["id"]

        n_lines = max(20000, args.seconds * 2500)
        lines, wamids = build_lines(n_lines, args.senders)
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
            f.write("\n".join(lines) + "\n")
            data_file = f.name
        url = f"{base}/webhooks/whatsapp/{config_id}"
        load = run_wrk(url, args.seconds, args.connections, data_file)
        load_end = time.monotonic()
        while pending_jobs(owner) and time.monotonic() - load_end < 600:
            time.sleep(0.2)
        drain_s = round(time.monotonic() - load_end, 2)
        count, doubled, ids = stored(owner, org)
        sent = load["requests"]
        if sent > n_lines:
            raise SystemExit("the prepared lines wrapped around: raise n_lines")
        # wrk calls request() once more than it sends, when it starts: line 0 is skipped.
        surely_acked = set(wamids[1 : max(1, sent - args.connections)])
        maybe_sent = set(wamids[: sent + args.connections + 1])
        missing = sorted(wamids.index(w) for w in surely_acked - ids)
        lost = len(surely_acked - ids)
        unexpected = len(ids - maybe_sent)
        processing_rate = round(count / (load["duration_s"] + drain_s), 1)

        latencies = sse_probe(base, token, config_id, args.probes)
    finally:
        for proc in (*workers, web):
            stop(proc)
        owner.dispose()
        bench_db.drop()
    out: dict[str, Any] = {
        "benchmark": "whatsapp_inbound_webhooks",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "external" if os.environ.get("LOVEDCRM_DATABASE_URL") else "embedded",
        "params": vars(args),
        "setup": f"serve --no-worker --workers {args.web_processes}"
        f" + {args.worker_processes} worker process(es) + PostgreSQL + wrk, all on the same cores",
        "acknowledgement": load,
        "stored_messages": count,
        "distinct_messages_acknowledged_at_least": len(surely_acked),
        "lost": lost,
        "lost_line_numbers": missing[:20],
        "doubled": doubled,
        "stored_but_never_sent": unexpected,
        "drain_after_load_s": drain_s,
        "processing_rate_per_s_overall": processing_rate,
        "inbox_visible_latency_ms_idle": {
            "probes": len(latencies),
            "p50": pct(latencies, 0.5),
            "p95": pct(latencies, 0.95),
            "max": round(max(latencies), 2) if latencies else None,
            "mean": round(statistics.mean(latencies), 2) if latencies else None,
        },
        "targets": {"rate_per_s": 500, "ack_p95_ms": 50, "lost": 0, "doubled": 0},
    }
    path = ROOT / "benchmarks" / "results" / args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
