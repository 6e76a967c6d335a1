"""Inbound WhatsApp webhooks at a steady rate: are they processed as fast as they are
acknowledged? Issue 11's target: a 60 s run at 500 signed inbound messages per second ends with
the queue empty within 5 s of the last message, none lost or doubled, p95 acknowledgement
< 50 ms, with the processes ``lovedcrm serve`` starts by default.

A fresh database (embedded by default, or LOVEDCRM_DATABASE_URL); ``lovedcrm serve`` as it
starts by default -- one process answering the webhooks with the job worker inside it -- on
the same 2 cores as PostgreSQL and the load generator (``--web-processes`` and
``--worker-processes`` measure other set-ups). The load is ``benchmarks/_load.py``: open-loop at
a fixed rate (request i due at start + i/rate whatever the answers before it; latency counted
from when it was due), posting pre-built Cloud API webhook bodies, each signed with the app
secret as Meta signs them (X-Hub-Signature-256), each a new message from one of SENDERS
customers (new senders become leads), one in ten a redelivery of an earlier body.

Then: how long after the last acknowledgement the queue is empty, a check that every message
acknowledged (by line) is stored exactly once, the queue's depth sampled every second during
the run, the CPU the app's processes used per message, and the latency from posting one
webhook to its ``message.received`` event on the inbox's live stream (SSE), one at a time.

Writes benchmarks/results/whatsapp.json (quick mode, BENCH_QUICK=1 or --quick: a few seconds
at 100/s, written under results/quick/).

Usage: .venv/bin/python benchmarks/bench_whatsapp.py [--rate 500] [--seconds 60]
       [--connections 32] [--senders 2000] [--probes 50] [--web-processes 1]
       [--worker-processes 0] [--quick] [--out whatsapp.json]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
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
import psutil
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

APP_SECRET = "bench-app-secret"  # noqa: S105 - a benchmark fixture
PHONE_NUMBER_ID = "106540352242922"


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


def run_load(url: str, data_file: str, rate: int, seconds: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "_load.py"),
            url,
            data_file,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--connections",
            str(connections),
        ],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


class QueueSampler(threading.Thread):
    """The number of inbound jobs not yet done, once a second, while the load runs."""

    def __init__(self, owner: sa.Engine) -> None:
        super().__init__(daemon=True)
        self.owner = owner
        self.samples: list[tuple[float, int]] = []
        self.halt = threading.Event()
        self.began = time.monotonic()

    def run(self) -> None:
        while not self.halt.wait(1.0):
            self.samples.append((round(time.monotonic() - self.began, 1), pending_jobs(self.owner)))


def app_processes(root: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The process and every process it started (uvicorn's workers, if any)."""
    proc = psutil.Process(root.pid)
    return [proc, *proc.children(recursive=True)]


def serving_processes(root: subprocess.Popen[bytes]) -> int:
    """uvicorn's worker processes under the supervisor (not multiprocessing's resource
    tracker), or 1 when the server is a single process."""
    children = psutil.Process(root.pid).children()
    workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    return len(workers) or 1


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


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
    ap.add_argument("--rate", type=int, default=500, help="webhooks per second")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--senders", type=int, default=2000)
    ap.add_argument("--probes", type=int, default=50)
    ap.add_argument(
        "--web-processes", type=int, default=None, help="serve --workers (default: serve's own)"
    )
    ap.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        help="separate `lovedcrm worker` processes (0: the worker serve runs inside itself)",
    )
    ap.add_argument("--drain-limit", type=float, default=300, help="give up waiting after this")
    ap.add_argument("--quick", action="store_true", help="a few seconds at 100/s (smoke run)")
    ap.add_argument("--out", default="whatsapp.json")
    args = ap.parse_args()
    if args.quick or quick():
        os.environ["BENCH_QUICK"] = "1"
        args.quick = True
        args.rate, args.seconds, args.senders, args.probes = 100, 3, 100, 3
        args.drain_limit = min(args.drain_limit, 60)

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
    serve = [str(ROOT / ".venv/bin/lovedcrm"), "serve", "--port", str(port)]
    if args.web_processes is not None:
        serve += ["--workers", str(args.web_processes)]
    if args.worker_processes:
        serve.append("--no-worker")
    web = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    owner = sa.create_engine(db_url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_ready(base, 60)
        for _ in range(args.worker_processes):
            workers.append(
                subprocess.Popen(
                    [str(ROOT / ".venv/bin/lovedcrm"), "worker"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        if workers:
            time.sleep(5)  # started (imports done) before their CPU is counted
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

        n_lines = args.rate * args.seconds
        lines, wamids = build_lines(n_lines, args.senders)
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
            f.write("\n".join(lines) + "\n")
            data_file = f.name
        serve_procs = app_processes(web)
        worker_procs = [p for w in workers for p in app_processes(w)]
        cpu_before = (cpu_seconds(serve_procs), cpu_seconds(worker_procs))
        load_before = [round(x, 2) for x in os.getloadavg()]
        sampler = QueueSampler(owner)
        sampler.start()
        url = f"{base}/webhooks/whatsapp/{config_id}"
        load = run_load(url, data_file, args.rate, args.seconds, args.connections)
        load_end = time.monotonic()
        while pending_jobs(owner) and time.monotonic() - load_end < args.drain_limit:
            time.sleep(0.1)
        drain_s = round(time.monotonic() - load_end, 2)
        drained = pending_jobs(owner) == 0
        sampler.halt.set()
        cpu_used = (
            cpu_seconds(serve_procs) - cpu_before[0],
            cpu_seconds(worker_procs) - cpu_before[1],
        )
        count, doubled, ids = stored(owner, org)
        acked = {wamids[i] for i in load.pop("acked_lines")}
        missing = sorted(wamids.index(w) for w in acked - ids)
        unexpected = len(ids - set(wamids))
        latencies = sse_probe(base, token, config_id, args.probes)
        processes = {
            # uvicorn with --workers N > 1: a supervisor and N serving processes.
            "lovedcrm serve": len(app_processes(web)),
            "serving processes": serving_processes(web),
            "serve --workers": args.web_processes or "serve's default",
            "lovedcrm worker": len(workers),
            "job worker inside each serving process": not args.worker_processes,
        }
    finally:
        for proc in (*workers, web):
            stop(proc)
        owner.dispose()
        bench_db.drop()
    ack_p95 = load["latency_from_due_ms"]["p95"]
    out: dict[str, Any] = {
        "benchmark": "whatsapp_inbound_webhooks",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "external" if os.environ.get("LOVEDCRM_DATABASE_URL") else "embedded",
        "params": vars(args),
        "setup": (
            f"lovedcrm serve ({processes['lovedcrm serve']} process(es)"
            + (", a job worker inside each" if not args.worker_processes else ", --no-worker")
            + f") + {args.worker_processes} `lovedcrm worker` process(es)"
            + " + PostgreSQL + the load generator, all on the same cores"
        ),
        "processes": processes,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "acknowledgement": load,
        "stored_messages": count,
        "distinct_messages_acknowledged": len(acked),
        "lost": len(acked - ids),
        "lost_line_numbers": missing[:20],
        "doubled": doubled,
        "stored_but_never_sent": unexpected,
        "queue_empty_after_last_ack_s": drain_s if drained else None,
        "queue_depth_every_second": sampler.samples,
        "max_queue_depth": max((n for _, n in sampler.samples), default=0),
        "processing_rate_per_s_overall": round(count / (load["duration_s"] + drain_s), 1),
        "app_cpu_ms_per_message": {
            "lovedcrm serve": round(1000 * cpu_used[0] / max(1, load["answered"]), 3),
            "lovedcrm worker": round(1000 * cpu_used[1] / max(1, load["answered"]), 3),
        },
        "inbox_visible_latency_ms_idle": {
            "probes": len(latencies),
            "p50": pct(latencies, 0.5),
            "p95": pct(latencies, 0.95),
            "max": round(max(latencies), 2) if latencies else None,
            "mean": round(statistics.mean(latencies), 2) if latencies else None,
        },
        "targets": {
            "rate_per_s": 500,
            "seconds": 60,
            "queue_empty_within_s": 5,
            "ack_p95_ms": 50,
            "lost": 0,
            "doubled": 0,
        },
        "figures": [
            figure("3", "WhatsApp: webhooks per second sent", args.rate, ">=", 500, "/s"),
            figure("3", "WhatsApp: run length", args.seconds, ">=", 60, "s"),
            figure("3", "WhatsApp: acknowledgement p95", ack_p95, "<", 50, "ms"),
            figure(
                "3",
                "WhatsApp: queue empty after the last acknowledgement",
                drain_s if drained else None,
                "<=",
                5,
                "s",
            ),
            figure("3", "WhatsApp: messages lost", len(acked - ids), "==", 0, ""),
            figure("3", "WhatsApp: messages doubled", doubled, "==", 0, ""),
            figure(
                "3",
                "WhatsApp: non-2xx or failed requests",
                load["non_2xx"] + load["errors"],
                "==",
                0,
                "",
            ),
        ],
    }
    path = results_dir() / args.out
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "queue_depth_every_second"}, indent=2))


if __name__ == "__main__":
    main()
