"""Suggested replies at size, without an LLM (the sandbox): an organization with 40 message
templates and 5,000 past outbound replies over 1,000 leads (every other one answered within
the hour), and a lead whose last message is a question. Target (issue 15): the suggestions
(``GET /api/v1/leads/{id}/suggested-replies``) under 100 ms at p95.

One `lovedcrm serve --no-worker` process on loopback and a fresh database (embedded by
default, or LOVEDCRM_DATABASE_URL); the data is inserted set-based as the owner; requests are
sent one at a time with keep-alive, times measured at the client.
Writes benchmarks/results/suggestions.json (``BENCH_QUICK=1``: smaller, results/quick/).

Usage: .venv/bin/python benchmarks/bench_suggestions.py [--replies 5000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

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

NAME = "Suggested replies (no LLM)"
PHRASES = [
    "Olá {{first_name}}! Entregamos em todo o Brasil em até 5 dias úteis.",
    "{{first_name}}, o plano anual custa R$ 990 e o mensal R$ 99.",
    "Podemos agendar uma demonstração amanhã às 10h, {{first_name}}?",
    "Aceitamos Pix, boleto e cartão em até 12 vezes.",
    "Nosso horário de atendimento é de segunda a sexta, das 9h às 18h.",
]
QUESTIONS = [
    "Vocês entregam em Campinas?", "Quanto custa o plano anual?", "Aceitam cartão?",
    "Qual o horário de vocês?", "Dá pra marcar uma demonstração?",
]  # fmt: skip


def generate(conn: sa.Connection, org: str, user: str, leads: int, replies: int) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO message_templates (organization_id, created_by, name, category, content)"
            " SELECT :org, :user, 'Modelo ' || g, 'follow_up',"
            " (CAST(:phrases AS text[]))[1 + g % 5] || ' #' || g"
            " FROM generate_series(1, 40) g"
        ),
        {"org": org, "user": user, "phrases": PHRASES},
    )
    conn.execute(
        sa.text(
            "INSERT INTO leads (organization_id, full_name, stage_id, source)"
            " SELECT :org, 'Cliente ' || g,"
            " (SELECT id FROM pipeline_stages WHERE organization_id = :org"
            "  ORDER BY stage_order LIMIT 1),"
            " 'bench' FROM generate_series(1, :n) g"
        ),
        {"org": org, "n": leads},
    )
    conn.execute(
        sa.text(
            """
            WITH l AS (SELECT id, row_number() OVER (ORDER BY id) AS i FROM leads
                        WHERE organization_id = :org AND source = 'bench'),
                 r AS (SELECT g, (SELECT id FROM l WHERE l.i = 1 + g % :leads) AS lead_id,
                              now() - make_interval(mins => g * 7) AS at
                         FROM generate_series(1, :n) g)
            INSERT INTO messages (organization_id, lead_id, provider_type, direction,
                                  message_type, content, status, created_at)
            SELECT :org, lead_id, 'whatsapp_sandbox', d.direction, 'text',
                   CASE d.direction
                        WHEN 'inbound'
                        THEN (CAST(:questions AS text[]))[1 + g % 5] || ' (' || g || ')'
                        ELSE replace((CAST(:phrases AS text[]))[1 + g % 5],
                                     '{{first_name}}', 'Cliente') || ' ' || g
                   END,
                   'delivered', at + d.shift
              FROM r CROSS JOIN LATERAL (
                   VALUES ('inbound', interval '0'), ('outbound', interval '1 minute'),
                          ('inbound', interval '30 minutes')) d(direction, shift)
             WHERE d.direction = 'outbound' OR d.shift = interval '0' OR g % 2 = 0
            """
        ),
        {"org": org, "leads": leads, "n": replies, "phrases": PHRASES, "questions": QUESTIONS},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=500 if quick() else 5000)
    parser.add_argument("--leads", type=int, default=200 if quick() else 1000)
    parser.add_argument("--requests", type=int, default=30 if quick() else 200)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    bench_db = bench_database(ROOT)
    port = free_port()
    proc = serve(bench_db.url, port)
    base = f"http://127.0.0.1:{port}"
    owner = sa.create_engine(bench_db.url)
    try:
        wait_ready(base, 120)
        admin = signup(base, "Suggestions Org")
        headers = {"Authorization": f"Bearer {admin['token']}"}
        me = httpx.get(f"{base}/api/v1/auth/me", headers=headers).json()
        user = me.get("id") or me["user"]["id"]
        with owner.begin() as conn:
            generate(conn, admin["organization_id"], user, args.leads, args.replies)
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            lead = client.post(
                "/api/v1/leads", json={"full_name": "Juliana Castro", "allow_duplicate": True}
            ).json()
            with owner.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO messages (organization_id, lead_id, provider_type, direction,"
                        " content, status) VALUES (:o, :l, 'whatsapp_sandbox', 'inbound',"
                        " 'Oi! Vocês entregam em Campinas? Qual o prazo?', 'delivered')"
                    ),
                    {"o": admin["organization_id"], "l": lead["id"]},
                )
            url = f"/api/v1/leads/{lead['id']}/suggested-replies"
            sample: dict[str, Any] = client.get(url).json()

            def call(_: int) -> None:
                r = client.get(url)
                r.raise_for_status()

            timing = measure(call, args.requests)
    finally:
        stop(proc)
        owner.dispose()
        bench_db.drop()
    report: dict[str, Any] = {
        "benchmark": "suggestions",
        "size": {"templates": 40, "past_replies": args.replies, "leads": args.leads},
        "suggested_replies": timing,
        "sample": [s["text"] for s in sample["suggestions"]],
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
        },
        "figures": [
            {
                "target": "suggestions",
                "name": f"{NAME}: p95 of GET …/suggested-replies",
                "value": timing["p95_ms"],
                "op": "<",
                "goal": 100,
                "unit": "ms",
                "note": f"{args.replies} past replies, 40 templates; p50 {timing['p50_ms']} ms",
            },
        ],
    }
    out = results_dir() / "suggestions.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
