"""Reports at size: every report of `/api/v1/reports/...` for the organization with 20,000
leads among 1,000 organizations (bench_board's data set: 1,000,000 leads). Target: p95 under
300 ms for each report.

The data: bench_board's `generate` (organizations, members, stages, leads; set-based as the
owner), then a year of history for the big organization -- leads created over 365 days, each
moved stage by stage to where it is (analytics events, as the product records them), a third
closed (won or lost), five activities per lead by its members, a WhatsApp conversation for
every third lead (answered or not), and A/B template sends -- and its aggregates rebuilt once
through `POST /api/v1/reports/recompute` (timed: the figure an organization upgrading to
migration 0012 waits once). Requests go one at a time with keep-alive as the big
organization's admin, over the last 90 days (each report also computes the previous 90);
times are measured at the client. Writes benchmarks/results/reports.json.

Usage: .venv/bin/python benchmarks/bench_reports.py [--orgs 1000] [--leads 1000000]
       [--big 20000] [--requests 100] [--days 90]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import (  # noqa: E402
    bench_database,
    free_port,
    measure,
    quick,
    results_dir,
    serve,
    signup,
    stop,
    wait_ready,
)
from bench_board import generate  # noqa: E402

REPORTS = (
    "overview",
    "funnel",
    "stages",
    "owners",
    "sources",
    "templates",
    "whatsapp",
    "activity",
    "optimization",
)
TARGET_MS = 300

# A year of history for the big organization's leads (owner, RLS does not apply to it).
HISTORY = [
    # Created over the last 365 days; a third closed: won (stage 5) or lost.
    """
    UPDATE leads l
       SET created_at = now() - ((abs(hashtext(l.id::text)) % 365) || ' days')::interval
                      - ((abs(hashtext(l.id::text || 'h')) % 86400) || ' seconds')::interval
     WHERE l.organization_id = :big
    """,
    """
    UPDATE leads l SET status = CASE WHEN s.stage_order = 5 AND abs(hashtext(l.id::text)) % 3 = 0
                                     THEN 'converted'
                                     WHEN abs(hashtext(l.id::text)) % 7 = 0 THEN 'lost'
                                     ELSE 'active' END,
                       lost_reason = CASE WHEN abs(hashtext(l.id::text)) % 7 = 0 THEN 'price' END
      FROM pipeline_stages s
     WHERE l.organization_id = :big AND s.id = l.stage_id
    """,
    """
    UPDATE leads l SET converted_at = l.created_at
                       + ((3 + abs(hashtext(l.id::text || 'c')) % 60) || ' days')::interval
     WHERE l.organization_id = :big AND l.status = 'converted'
    """,
    # lead_created, then one pipeline_conversion per stage up to the current one (2-9 days each).
    """
    INSERT INTO analytics_events (organization_id, user_id, event_type, event_data, occurred_at)
    SELECT l.organization_id, l.assigned_to, 'lead_created',
           jsonb_build_object('event', 'lead.created', 'lead_id', l.id::text,
                              'lead', jsonb_build_object('id', l.id::text,
                                                         'stage_id', first.id::text)),
           l.created_at
      FROM leads l
      JOIN pipeline_stages first ON first.organization_id = l.organization_id
                                AND first.stage_order = 1
     WHERE l.organization_id = :big
    """,
    """
    INSERT INTO analytics_events (organization_id, user_id, event_type, event_data, occurred_at)
    SELECT l.organization_id, l.assigned_to, 'pipeline_conversion',
           jsonb_build_object('event', 'lead.stage_changed', 'lead_id', l.id::text,
                              'from_stage_id', a.id::text, 'to_stage_id', b.id::text),
           l.created_at + ((b.stage_order - 1) * (2 + abs(hashtext(l.id::text)) % 8)
                           || ' days')::interval
      FROM leads l
      JOIN pipeline_stages cur ON cur.id = l.stage_id
      JOIN pipeline_stages a ON a.organization_id = l.organization_id
                            AND a.stage_order < cur.stage_order
      JOIN pipeline_stages b ON b.organization_id = l.organization_id
                            AND b.stage_order = a.stage_order + 1
     WHERE l.organization_id = :big
    """,
    """
    INSERT INTO analytics_events (organization_id, event_type, event_data, occurred_at)
    SELECT l.organization_id, 'lead_lost',
           jsonb_build_object('event', 'lead.lost', 'lead_id', l.id::text, 'reason', 'price'),
           l.created_at + ((5 + abs(hashtext(l.id::text)) % 40) || ' days')::interval
      FROM leads l WHERE l.organization_id = :big AND l.status = 'lost'
    """,
    # Five activities per lead by its owner (or the first member), over its life.
    """
    INSERT INTO lead_activities (organization_id, lead_id, user_id, activity_type, title,
                                 created_at)
    SELECT l.organization_id, l.id, COALESCE(l.assigned_to, (SELECT user_id FROM
           organization_members WHERE organization_id = :big ORDER BY user_id LIMIT 1)),
           (ARRAY['note', 'call', 'email', 'meeting', 'task'])[k],
           'Atividade ' || k, l.created_at + (k * 2 || ' days')::interval
      FROM leads l, generate_series(1, 5) k
     WHERE l.organization_id = :big
    """,
    # A WhatsApp conversation for every third lead; two in three answered (5-300 minutes).
    """
    INSERT INTO messages (organization_id, lead_id, provider_type, direction, content, status,
                          created_at)
    SELECT l.organization_id, l.id, 'sandbox', 'inbound', 'Olá', 'read',
           l.created_at + interval '1 hour'
      FROM leads l WHERE l.organization_id = :big AND abs(hashtext(l.id::text)) % 3 = 0
    """,
    """
    INSERT INTO messages (organization_id, lead_id, provider_type, direction, content, status,
                          created_at)
    SELECT l.organization_id, l.id, 'sandbox', 'outbound', 'Oi!', 'delivered',
           l.created_at + interval '1 hour'
           + ((5 + abs(hashtext(l.id::text || 'r')) % 295) || ' minutes')::interval
      FROM leads l WHERE l.organization_id = :big AND abs(hashtext(l.id::text)) % 3 = 0
       AND abs(hashtext(l.id::text || 'a')) % 3 <> 0
    """,
    # Two A/B families of templates and a send to every second lead.
    """
    INSERT INTO message_templates (id, organization_id, created_by, name, category, content,
                                   parent_template_id)
    SELECT v.id, :big, (SELECT user_id FROM organization_members WHERE organization_id = :big
           ORDER BY user_id LIMIT 1), v.name, 'greeting', 'Olá {{lead_name}}', v.parent
      FROM (VALUES ('00000000-0000-4000-8000-000000000001'::uuid, 'Boas-vindas A', NULL::uuid),
                   ('00000000-0000-4000-8000-000000000002'::uuid, 'Boas-vindas B',
                    '00000000-0000-4000-8000-000000000001'::uuid)) v(id, name, parent)
    """,
    """
    INSERT INTO template_usage_stats (organization_id, template_id, user_id, lead_id,
                                      response_received, response_time_minutes,
                                      led_to_conversion, created_at)
    SELECT l.organization_id,
           CASE WHEN abs(hashtext(l.id::text || 't')) % 2 = 0
                THEN '00000000-0000-4000-8000-000000000001'::uuid
                ELSE '00000000-0000-4000-8000-000000000002'::uuid END,
           COALESCE(l.assigned_to, (SELECT user_id FROM organization_members
                                    WHERE organization_id = :big ORDER BY user_id LIMIT 1)),
           l.id, abs(hashtext(l.id::text || 'x')) % 5 < 2, abs(hashtext(l.id::text)) % 240,
           l.status = 'converted', l.created_at + interval '2 hours'
      FROM leads l WHERE l.organization_id = :big AND abs(hashtext(l.id::text)) % 2 = 0
    """,
]


def history(conn: sa.Connection, big_org: str) -> float:
    started = time.perf_counter()
    conn.execute(sa.text("SET session_replication_role = replica"))
    for sql in HISTORY:
        conn.execute(sa.text(sql), {"big": big_org})
    conn.execute(sa.text("SET session_replication_role = origin"))
    return round(time.perf_counter() - started, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orgs", type=int, default=1000)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--keep", action="store_true", help="Do not drop the database at the end.")
    args = ap.parse_args()
    if quick():  # BENCH_QUICK=1: a smoke run of seconds, not a measurement
        args.orgs, args.leads, args.big, args.requests = 20, 20_000, 2_000, 10

    bench_db = bench_database(ROOT)
    port = free_port()
    proc = serve(bench_db.url, port)
    base = f"http://127.0.0.1:{port}"
    owner = sa.create_engine(bench_db.url)
    results: dict[str, dict[str, float]] = {}
    data: dict[str, object] = {}
    try:
        wait_ready(base, 120)
        admin = signup(base, "Big Org")
        big_org = admin["organization_id"]
        headers = {"Authorization": f"Bearer {admin['token']}"}
        started = time.perf_counter()
        with owner.begin() as conn:
            phases = generate(conn, big_org, args.orgs, args.leads, args.big)
        with owner.begin() as conn:
            phases["history"] = history(conn, big_org)
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        data["generation_seconds"] = round(time.perf_counter() - started, 1)
        data["phases_seconds"] = phases

        with httpx.Client(base_url=base, headers=headers, timeout=600) as c:
            t = time.perf_counter()
            rebuilt = c.post("/api/v1/reports/recompute")
            assert rebuilt.status_code == 200, rebuilt.text
            data["recompute_seconds"] = round(time.perf_counter() - t, 2)
            data["recomputed"] = rebuilt.json()
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                sa.text("ANALYZE report_lead_facts, report_stage_spans, report_activity_counts")
            )
            counts = conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM leads),"
                    " (SELECT count(DISTINCT organization_id) FROM leads),"
                    " (SELECT count(*) FROM leads WHERE organization_id = :b),"
                    " (SELECT count(*) FROM lead_activities WHERE organization_id = :b),"
                    " (SELECT count(*) FROM analytics_events WHERE organization_id = :b),"
                    " (SELECT count(*) FROM messages WHERE organization_id = :b),"
                    " (SELECT count(*) FROM template_usage_stats WHERE organization_id = :b)"
                ),
                {"b": big_org},
            ).one()
        data.update(
            zip(
                (
                    "leads",
                    "organizations_with_leads",
                    "big_org_leads",
                    "big_org_activities",
                    "big_org_analytics_events",
                    "big_org_messages",
                    "big_org_template_sends",
                ),
                counts,
                strict=True,
            )
        )
        print(f"data {data}", flush=True)

        end = date.today()
        period = {
            "start": (end - timedelta(days=args.days - 1)).isoformat(),
            "end": end.isoformat(),
        }
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            for name in REPORTS:
                body = c.get(f"/api/v1/reports/{name}", params=period)
                assert body.status_code == 200, (name, body.text[:300])

                def get(i: int, name: str = name) -> None:
                    resp = c.get(f"/api/v1/reports/{name}", params=period)
                    assert resp.status_code == 200, (name, resp.status_code)

                results[name] = measure(get, args.requests)
                print(name, results[name], flush=True)
            overview = c.get("/api/v1/reports/overview", params=period).json()
            data["overview_sample"] = overview["current"]
    finally:
        stop(proc)
        owner.dispose()
        if not args.keep:
            bench_db.drop()
    figures = [
        {
            "target": "reports",
            "name": f"Report p95: {name}",
            "value": results.get(name, {}).get("p95_ms"),
            "op": "<",
            "goal": TARGET_MS,
            "unit": "ms",
        }
        for name in REPORTS
    ]
    out = {
        "benchmark": "reports_at_size",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "external" if os.environ.get("LOVEDCRM_DATABASE_URL") else "embedded",
        "quick": quick(),
        "params": vars(args),
        "data": data,
        "measured_at": "client, sequential requests with keep-alive, big organization's admin",
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "target_p95_ms": TARGET_MS,
        "results": results,
        "figures": figures,
    }
    path = results_dir() / "reports.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    print(json.dumps(out, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
