"""Board, search, lead page and list page at scale: 1,000,000 leads in 1,000 organizations,
one of them with 20,000. Target: p95 under 100 ms for each.

One `lovedcrm serve --no-worker` process on loopback, a fresh database (embedded by default,
or LOVEDCRM_DATABASE_URL). The data is generated set-based as the owner (INSERT … SELECT
generate_series, the leads' secondary indexes dropped first and rebuilt after, foreign-key
triggers skipped with session_replication_role = replica, then ANALYZE). Requests are sent
one at a time with keep-alive as the big organization's admin; times are measured at the
client (so they include HTTP and JSON on both sides). Writes benchmarks/results/board.json.

Usage: .venv/bin/python benchmarks/bench_board.py [--orgs 1000] [--leads 1000000]
       [--big 20000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
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

FIRST = [
    "João", "Maria", "José", "Ana", "Antônio", "Francisca", "Carlos", "Luíza", "Paulo",
    "Márcia", "Pedro", "Conceição", "Lucas", "Letícia", "Luiz", "Beatriz", "Rafael",
    "Fernanda", "Sérgio", "Patrícia", "Thiago", "Cláudia", "Gabriel", "Vitória",
]  # fmt: skip
LAST = [
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira",
    "Lima", "Gomes", "Ribeiro", "Carvalho", "Araújo", "Simões", "Conceição", "Brandão",
    "Magalhães", "Gonçalves", "Falcão", "Estêvão", "Assunção", "Mendonça", "Peçanha",
    "Guimarães", "Ávila", "Queiroz", "Nóbrega", "Barbosa", "Cardoso", "Teixeira",
]  # fmt: skip
COMPANY = [
    "Açúcar União", "Padaria Pão Quente", "Ótica Visão", "Farmácia São João", "Mercadão",
    "Construtora Alicerce", "Café Três Corações", "Açaí do Pará", "Pneus Rápidos",
    "Clínica Saúde", "Escola Aprender", "Auto Peças Veloz", "Hotel Maré", "Floricultura Íris",
]  # fmt: skip
SEARCHES = [
    "joao silva", "Joao Silvaa", "maria conceicao", "acucar", "Padaria", "gonçalves",
    "pedro lima", "brandao", "ótica", "falcao", "leticia", "(11) 98765", "lead4321@",
    "Magalhaes", "cafe tres", "quiroz",
]  # fmt: skip

SOURCES = ["whatsapp", "ads", "site", "indicação", "evento"]


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def generate(
    conn: sa.Connection, big_org: str, orgs: int, leads: int, big: int
) -> dict[str, float]:
    """The organizations, users, stages and leads; returns seconds per phase."""
    timings: dict[str, float] = {}

    def phase(name: str, sql: str, **params: object) -> None:
        t = time.perf_counter()
        conn.execute(sa.text(sql), params)
        timings[name] = round(time.perf_counter() - t, 2) + timings.get(name, 0)

    conn.execute(sa.text("SET session_replication_role = replica"))  # no FK triggers
    conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
    conn.execute(sa.text("SET synchronous_commit = off"))
    phase(
        "organizations",
        "INSERT INTO organizations (id, name, slug) SELECT gen_random_uuid(), 'Org ' || g,"
        " 'bench-org-' || g FROM generate_series(1, :n) g",
        n=orgs - 1,
    )
    # Three members per small organization, four salespeople more in the big one.
    phase(
        "users",
        "INSERT INTO users (id, email, password_hash, full_name)"
        " SELECT gen_random_uuid(), 'u' || o.slug || '-' || k || '@example.com', 'x',"
        " (" + _array(FIRST) + ")[1 + (k * 7 + length(o.slug)) % 24] || ' '"
        " || (" + _array(LAST) + ")[1 + (k * 11 + length(o.slug)) % 30]"
        " FROM organizations o, generate_series(1, CASE WHEN o.id = :big THEN 4 ELSE 3 END) k",
        big=big_org,
    )
    phase(
        "users",
        "INSERT INTO organization_members (id, organization_id, user_id, role)"
        " SELECT gen_random_uuid(), o.id, u.id, CASE WHEN k = 1 AND o.id <> :big THEN 'admin'"
        " ELSE 'sales' END FROM organizations o JOIN LATERAL (SELECT id, row_number() OVER () k"
        " FROM users WHERE email LIKE 'u' || o.slug || '-%') u ON true",
        big=big_org,
    )
    phase(
        "stages",
        "INSERT INTO pipeline_stages (id, organization_id, name, stage_order, stage_type)"
        " SELECT gen_random_uuid(), o.id, s.name, s.ord, s.kind FROM organizations o,"
        " (VALUES ('Lead', 1, 'lead'), ('Contact', 2, 'contact'), ('Proposal', 3, 'proposal'),"
        " ('Negotiation', 4, 'negotiation'), ('Closed', 5, 'closed')) s(name, ord, kind)"
        " WHERE o.id <> :big",
        big=big_org,
    )
    # Secondary indexes of leads go, to be rebuilt once at the end.
    indexes = conn.execute(
        sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'leads'"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint"
            " WHERE conrelid = 'leads'::regclass)"
        )
    ).all()
    for name, _ in indexes:
        conn.execute(sa.text(f"DROP INDEX {name}"))
    # Each organization's stages and members as arrays, then the leads in one statement.
    conn.execute(
        sa.text(
            "CREATE TEMP TABLE bench_org AS SELECT o.id, row_number() OVER (ORDER BY o.id <> :big,"
            " o.id) - 1 AS n,"
            " (SELECT array_agg(id ORDER BY stage_order) FROM pipeline_stages s"
            "  WHERE s.organization_id = o.id) AS stages,"
            " (SELECT array_agg(user_id) FROM organization_members m"
            "  WHERE m.organization_id = o.id) AS members FROM organizations o"
        ),
        {"big": big_org},
    )
    small = leads - big
    per_small = small // (orgs - 1)
    phase(
        "leads",
        "INSERT INTO leads (id, organization_id, full_name, email, phone, company, stage_id,"
        " assigned_to, source, lead_score, estimated_value, last_activity_at, created_at,"
        " updated_at, board_position)"
        " SELECT gen_random_uuid(), o.id,"
        " (" + _array(FIRST) + ")[1 + (g * 7) % 24] || ' ' || (" + _array(LAST) + ")"
        "   [1 + (g * 13) % 30] || CASE WHEN g % 3 = 0 THEN ' ' || (" + _array(LAST) + ")"
        "   [1 + (g * 17) % 30] ELSE '' END,"
        " 'lead' || g || '@example.com',"
        " '+55' || (11 + g % 80) || '9' || lpad(((g * 7919) % 100000000)::text, 8, '0'),"
        " CASE WHEN g % 4 = 0 THEN NULL ELSE (" + _array(COMPANY) + ")[1 + g % 14] END,"
        " o.stages[1 + (g % 5)],"
        " CASE WHEN g % 10 = 0 THEN NULL ELSE o.members[1 + g % array_length(o.members, 1)]"
        " END,"
        " (" + _array(SOURCES) + ")[1 + g % 5],"
        " (g * 37) % 101, ((g * 53) % 100000) / 10.0,"
        " now() - ((g % 5000) || ' minutes')::interval,"
        " now() - ((g % 100000) || ' seconds')::interval,"
        " now() - ((g % 100000) || ' seconds')::interval,"
        " (g % 100000)::double precision - 100000"
        " FROM bench_org o, generate_series(1, CASE WHEN o.n = 0 THEN :big ELSE :per END) g",
        big=big,
        per=per_small,
    )
    t = time.perf_counter()
    for _, definition in indexes:
        conn.execute(sa.text(definition))
    timings["indexes"] = round(time.perf_counter() - t, 2)
    # A timeline for the leads the lead-page requests open.
    phase(
        "activities",
        "INSERT INTO lead_activities (id, organization_id, lead_id, activity_type, title,"
        " created_at) SELECT gen_random_uuid(), l.organization_id, l.id, 'note',"
        " 'Nota ' || k, now() - (k || ' hours')::interval FROM (SELECT id, organization_id"
        " FROM leads WHERE organization_id = :big ORDER BY created_at DESC LIMIT 300) l,"
        " generate_series(1, 20) k",
        big=big_org,
    )
    conn.execute(sa.text("SET session_replication_role = origin"))
    return timings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orgs", type=int, default=1000)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="Do not drop the database at the end.")
    args = ap.parse_args()
    if quick():  # BENCH_QUICK=1: a smoke run of seconds, not a measurement
        args.orgs, args.leads, args.big, args.requests = 20, 20_000, 2_000, 20

    bench_db = bench_database(ROOT)
    db_url = bench_db.url
    port = free_port()
    proc = serve(db_url, port)
    base = f"http://127.0.0.1:{port}"
    owner = sa.create_engine(db_url)
    results: dict[str, dict[str, float]] = {}
    try:
        wait_ready(base, 120)
        admin = signup(base, "Big Org")
        big_org = admin["organization_id"]
        headers = {"Authorization": f"Bearer {admin['token']}"}
        started = time.perf_counter()
        with owner.begin() as conn:
            phases = generate(conn, big_org, args.orgs, args.leads, args.big)
        t = time.perf_counter()
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        phases["vacuum_analyze"] = round(time.perf_counter() - t, 2)
        generation = round(time.perf_counter() - started, 1)
        with owner.connect() as conn:
            counts = conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT organization_id),"
                    " count(*) FILTER (WHERE organization_id = :big) FROM leads"
                ),
                {"big": big_org},
            ).one()
            lead_ids = [
                str(i)
                for (i,) in conn.execute(
                    sa.text(
                        "SELECT DISTINCT lead_id FROM lead_activities WHERE organization_id = :b"
                    ),
                    {"b": big_org},
                )
            ]
        print(f"generated {tuple(counts)} in {generation}s {phases}", flush=True)

        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:

            def get(path: str, **params: object) -> dict[str, object]:
                resp = c.get(path, params=params)
                assert resp.status_code == 200, (path, resp.status_code, resp.text[:300])
                body: dict[str, object] = resp.json()
                return body

            board = get("/api/v1/board")
            columns = board["columns"]
            assert isinstance(columns, list)
            assert sum(col["lead_count"] for col in columns) == args.big, "board counts"
            hits = {q: len(get("/api/v1/leads", q=q, limit=50)["items"]) for q in SEARCHES}  # type: ignore[arg-type]
            print("search hits (first page):", hits, flush=True)

            def lead_page(i: int) -> None:
                lead_id = lead_ids[i % len(lead_ids)]
                get(f"/api/v1/leads/{lead_id}")
                get(f"/api/v1/leads/{lead_id}/activities")

            results["board"] = measure(lambda i: get("/api/v1/board"), args.requests)
            results["board_filtered_q"] = measure(
                lambda i: get("/api/v1/board", q=SEARCHES[i % len(SEARCHES)]), args.requests
            )
            results["search"] = measure(
                lambda i: get("/api/v1/leads", q=SEARCHES[i % len(SEARCHES)], limit=50),
                args.requests,
            )
            results["lead_page"] = measure(lead_page, args.requests)
            results["list_page"] = measure(
                lambda i: get("/api/v1/leads", limit=50, sort="-created_at"), args.requests
            )
            stage = columns[2]["stage"]["id"]  # type: ignore[index]
            cursor = columns[2]["next_cursor"]  # type: ignore[index]
            results["load_more"] = measure(
                lambda i: get(f"/api/v1/board/stages/{stage}/cards", after=cursor),
                args.requests,
            )
    finally:
        stop(proc)
        owner.dispose()
        if not args.keep:
            bench_db.drop()
    out = {
        "benchmark": "board_search_lead_list_at_scale",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "external" if os.environ.get("LOVEDCRM_DATABASE_URL") else "embedded",
        "params": vars(args),
        "data": {
            "leads": counts[0],
            "organizations_with_leads": counts[1],
            "big_org_leads": counts[2],
            "generation_seconds": generation,
            "phases_seconds": phases,
        },
        "measured_at": "client, sequential requests with keep-alive, big organization's admin",
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "target_p95_ms": 100,
        "results": results,
        "lead_page": "GET /api/v1/leads/{id} then GET /api/v1/leads/{id}/activities",
        "search_terms": SEARCHES,
    }
    path = results_dir() / "board.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False))
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
