"""The inbox at size: an organization with 1,000,000 messages over 20,000 conversations.
Target: the conversation list's p95 under 100 ms.

One `lovedcrm serve --no-worker` process on loopback, a fresh database (embedded by default,
or LOVEDCRM_DATABASE_URL). The data is generated set-based as the owner: the leads with
INSERT … SELECT generate_series, the messages likewise with the table's secondary indexes
dropped first and rebuilt after and triggers off (session_replication_role = replica), then
the inbox's conversations (``inbox_conversations``, which the triggers keep in normal
operation) built in one statement as migration 0010 builds them, then VACUUM ANALYZE.
Requests are sent one at a time with keep-alive as the organization's admin (the JSON list,
its filters, paging, the unread badge and the inbox page); times are measured at the client.
Writes benchmarks/results/inbox.json (or the --out path).

Usage: .venv/bin/python benchmarks/bench_inbox.py [--conversations 20000]
       [--messages 1000000] [--orgs 50] [--requests 200]
       .venv/bin/python benchmarks/bench_inbox.py --smoke   (small sizes, a quick check)
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
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import (  # noqa: E402
    PASSWORD,
    bench_database,
    free_port,
    measure,
    serve,
    signup,
    stop,
    wait_ready,
)


def generate(
    conn: sa.Connection, org: str, orgs: int, conversations: int, messages: int
) -> dict[str, float]:
    """Leads (the big organization's, and a few other organizations with a little of
    everything), their messages, and the conversations; returns seconds per phase."""
    timings: dict[str, float] = {}

    def phase(name: str, sql: str, **params: object) -> None:
        t = time.perf_counter()
        conn.execute(sa.text(sql), params)
        timings[name] = round(time.perf_counter() - t, 2) + timings.get(name, 0)

    conn.execute(sa.text("SET session_replication_role = replica"))  # no triggers, no FKs
    conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
    conn.execute(sa.text("SET synchronous_commit = off"))
    phase(
        "organizations",
        "INSERT INTO organizations (id, name, slug) SELECT gen_random_uuid(), 'Org ' || g,"
        " 'bench-inbox-' || g FROM generate_series(1, :n) g",
        n=max(orgs - 1, 0),
    )
    phase(
        "organizations",
        "INSERT INTO pipeline_stages (organization_id, name, stage_order)"
        " SELECT o.id, 'Lead', 1 FROM organizations o WHERE o.id <> :org",
        org=org,
    )
    # The big organization's conversations, and a tenth as many spread over the others.
    phase(
        "leads",
        "INSERT INTO leads (id, organization_id, full_name, phone, stage_id, created_at)"
        " SELECT gen_random_uuid(), o.id, 'Cliente ' || g,"
        " '+55119' || lpad(g::text, 8, '0'),"
        " (SELECT id FROM pipeline_stages s WHERE s.organization_id = o.id"
        "  ORDER BY stage_order LIMIT 1), now() - g * interval '1 minute'"
        " FROM organizations o, generate_series(1, CASE WHEN o.id = :org THEN :big"
        " ELSE greatest(:small, 1) END) g",
        org=org,
        big=conversations,
        small=conversations // 10 // max(orgs - 1, 1),
    )
    indexes = conn.execute(
        sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages'"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint"
            " WHERE conrelid = 'messages'::regclass)"
        )
    ).all()
    for name, _ in indexes:
        conn.execute(sa.text(f"DROP INDEX {name}"))
    # Each lead's messages alternate in and out over the last days; the newest inbound
    # message of one conversation in seven is still unread.
    per_lead = max(messages // conversations, 1)
    phase(
        "messages",
        "INSERT INTO messages (id, organization_id, lead_id, conversation_id, provider_type,"
        " direction, content, status, created_at)"
        " SELECT gen_random_uuid(), l.organization_id, l.id, l.id, 'sandbox',"
        " CASE WHEN k % 2 = 1 THEN 'inbound' ELSE 'outbound' END,"
        " 'Mensagem ' || k || ' de ' || l.full_name,"
        " CASE WHEN k % 2 = 0 THEN 'read'"
        "      WHEN k >= :per - 1 AND l.n % 7 = 0 THEN 'delivered' ELSE 'read' END,"
        " now() - ((:per - k) * 37 + l.n % 1000) * interval '1 minute'"
        " FROM (SELECT id, organization_id, full_name, row_number() OVER () AS n FROM leads)"
        " l, generate_series(1, CASE WHEN l.organization_id = :org THEN :per ELSE 5 END) k",
        org=org,
        per=per_lead,
    )
    t = time.perf_counter()
    for _, definition in indexes:
        conn.execute(sa.text(definition))
    timings["message_indexes"] = round(time.perf_counter() - t, 2)
    phase(
        "conversations",
        "INSERT INTO inbox_conversations"
        " (organization_id, lead_id, last_message_id, last_message_at, unread_count)"
        " SELECT DISTINCT ON (m.organization_id, m.lead_id)"
        " m.organization_id, m.lead_id, m.id, COALESCE(m.created_at, now()),"
        " count(*) FILTER (WHERE m.direction = 'inbound' AND m.status = 'delivered')"
        " OVER (PARTITION BY m.organization_id, m.lead_id)"
        " FROM messages m WHERE m.lead_id IS NOT NULL"
        " ORDER BY m.organization_id, m.lead_id, m.created_at DESC NULLS LAST, m.id DESC",
    )
    conn.execute(sa.text("SET session_replication_role = origin"))
    return timings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=20_000)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--orgs", type=int, default=50, help="organizations in the database")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="2,000 conversations, 20,000 messages")
    ap.add_argument("--out", type=Path, default=None, help="default: results/inbox.json")
    ap.add_argument("--keep", action="store_true", help="Do not drop the database at the end.")
    args = ap.parse_args()
    if args.smoke:
        args.conversations, args.messages, args.orgs, args.requests = 2_000, 20_000, 5, 30
    if args.out is None:  # a smoke run's figures are not the benchmark's
        results_dir = Path(tempfile.gettempdir()) if args.smoke else ROOT / "benchmarks" / "results"
        args.out = results_dir / ("inbox_smoke.json" if args.smoke else "inbox.json")

    load_before = [round(x, 2) for x in os.getloadavg()]
    bench_db = bench_database(ROOT)
    db_url = bench_db.url
    port = free_port()
    proc = serve(db_url, port)
    base = f"http://127.0.0.1:{port}"
    owner = sa.create_engine(db_url)
    results: dict[str, dict[str, float]] = {}
    try:
        wait_ready(base, 120)
        admin = signup(base, "Inbox Org")
        email, org = admin["email"], admin["organization_id"]
        headers = {"Authorization": f"Bearer {admin['token']}"}
        started = time.perf_counter()
        with owner.begin() as conn:
            phases = generate(conn, org, args.orgs, args.conversations, args.messages)
        t = time.perf_counter()
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        phases["vacuum_analyze"] = round(time.perf_counter() - t, 2)
        generation = round(time.perf_counter() - started, 1)
        with owner.connect() as conn:
            counts = conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM messages WHERE organization_id = :o),"
                    " (SELECT count(*) FROM inbox_conversations WHERE organization_id = :o),"
                    " (SELECT count(*) FROM messages)"
                ),
                {"o": org},
            ).one()
        print(f"generated {tuple(counts)} in {generation}s {phases}", flush=True)

        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:

            def get(path: str, **params: object) -> list[dict[str, object]]:
                resp = c.get(path, params=params)
                assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
                body: list[dict[str, object]] = resp.json()
                return body

            first = get("/api/v1/conversations")
            assert len(first) == 50, len(first)
            # Paging: the 50 after each of the first pages' last conversation.
            befores = [first[-1]["last_message_at"]]
            for _ in range(9):
                befores.append(
                    get("/api/v1/conversations", before=befores[-1])[-1]["last_message_at"]
                )
            results["conversations"] = measure(
                lambda i: get("/api/v1/conversations"), args.requests
            )
            results["conversations_unread"] = measure(
                lambda i: get("/api/v1/conversations", unread="true"), args.requests
            )
            results["conversations_next_pages"] = measure(
                lambda i: get("/api/v1/conversations", before=befores[i % len(befores)]),
                args.requests,
            )
            results["conversations_unassigned"] = measure(
                lambda i: get("/api/v1/conversations", filter="unassigned"), args.requests
            )
        with httpx.Client(base_url=base, timeout=30) as page:
            r = page.post("/login", data={"email": email, "password": PASSWORD})
            assert r.status_code == 303, (r.status_code, r.text[:300])

            def html(path: str) -> None:
                resp = page.get(path)
                assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])

            results["inbox_page"] = measure(lambda i: html("/inbox"), args.requests)
            results["unread_badge"] = measure(lambda i: html("/inbox/unread"), args.requests)
    finally:
        stop(proc)
        owner.dispose()
        if not args.keep:
            bench_db.drop()
    out = {
        "benchmark": "inbox_at_size",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "external" if os.environ.get("LOVEDCRM_DATABASE_URL") else "embedded",
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {
            "org_messages": counts[0],
            "org_conversations": counts[1],
            "all_messages": counts[2],
            "generation_seconds": generation,
            "phases_seconds": phases,
        },
        "measured_at": "client, sequential requests with keep-alive, the organization's admin",
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "target_p95_ms": 100,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False))
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
