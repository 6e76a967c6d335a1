"""E-mail campaign send rate to a local SMTP sink while another organization's lead import
runs (issue 19). Target: ≥ 50,000 e-mails/hour, and neither starves the other.

A fresh database; ``lovedcrm serve`` with its job worker, sending over SMTP to an in-process
``aiosmtpd`` sink that counts messages (and when each arrived). Organization A: EMAILS leads
with an e-mail marketing consent and a campaign to all of them, sent now. Organization B, at
the same moment: a CSV import of IMPORT_ROWS leads through the API. Measured: the send rate
(messages / seconds from the first to the last accepted, × 3600), the e-mails sent while the
import ran, the import's rows per second and its time with and without the campaign running.
Writes benchmarks/results/marketing.json (with ``figures`` for summary.md).

Usage: .venv/bin/python benchmarks/bench_marketing.py [--emails 5000] [--import-rows 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import (  # noqa: E402
    bench_database,
    free_port,
    quick,
    results_dir,
    serve,
    signup,
    stop,
    wait_ready,
)

from lovedcrm.db.bootstrap import ensure_app_role  # noqa: E402
from lovedcrm.db.migrate import upgrade  # noqa: E402


class Sink:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if b"X-Campaign-Id:" in envelope.content:  # not the sign-ups' own e-mails
            with self.lock:
                self.times.append(time.monotonic())
        return "250 OK"


def _csv(rows: int) -> bytes:
    lines = ["Nome,E-mail,Celular"]
    lines += [f"Importado {n},imp{n}@example.com,+55119{n:08d}" for n in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def _import(base: str, token: str, rows: int) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{base}/api/v1/imports",
        headers=headers,
        files={"file": ("leads.csv", _csv(rows), "text/csv")},
        timeout=120,
    )
    r.raise_for_status()
    analysis = r.json()
    r = httpx.post(
        f"{base}/api/v1/imports/start",
        headers=headers,
        json={
            "upload_id": analysis["upload_id"],
            "mapping": analysis["suggested_mapping"],
            "duplicate_policy": "create",
        },
        timeout=60,
    )
    r.raise_for_status()
    return str(r.json()["id"])


def _import_done(base: str, token: str, import_id: str) -> bool:
    r = httpx.get(
        f"{base}/api/v1/imports/{import_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return r.json().get("status") in ("completed", "failed")


def _wait_import(base: str, token: str, import_id: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _import_done(base, token, import_id):
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError("the import did not finish")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--emails", type=int, default=5_000)
    ap.add_argument("--import-rows", type=int, default=20_000)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    if quick():
        args.emails, args.import_rows = 400, 1_000
    load_before = os.getloadavg()

    sink = Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()

    bench_db = bench_database(ROOT)
    upgrade(bench_db.url)
    ensure_app_role(bench_db.url, "lovedcrm_app")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "LOVEDCRM_MAIL_BACKEND": "smtp",
        "LOVEDCRM_SMTP_HOST": "127.0.0.1",
        "LOVEDCRM_SMTP_PORT": str(smtp_port),
        "LOVEDCRM_SMTP_STARTTLS": "false",
    }
    proc = serve(bench_db.url, port, worker=True, env=env)
    owner = sa.create_engine(bench_db.url)
    result: dict[str, Any] = {}
    try:
        wait_ready(base, 240)  # a busy machine starts the server slowly
        # The import alone first: its time without a campaign running.
        solo = signup(base, "Importadora Solo")
        solo_id = _import(base, solo["token"], args.import_rows)
        import_alone = _wait_import(base, solo["token"], solo_id, args.timeout)

        sender = signup(base, "Loja Campanhas")
        importer = signup(base, "Importadora")
        with owner.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO leads (organization_id, full_name, email, stage_id, source,"
                    " custom_fields) SELECT CAST(:o AS uuid), 'Cliente ' || g,"
                    " 'cliente' || g || '@example.com', (SELECT id FROM pipeline_stages"
                    " WHERE organization_id = CAST(:o AS uuid) ORDER BY stage_order LIMIT 1),"
                    " 'bench', '{}'::jsonb FROM generate_series(1, :n) g"
                ),
                {"o": sender["organization_id"], "n": args.emails},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO lead_consents (organization_id, lead_id, purpose, legal_basis,"
                    " status, source, evidence, recorded_at) SELECT organization_id, id,"
                    " 'email_marketing', 'consent', 'granted', 'form', '{}'::jsonb, now()"
                    " FROM leads WHERE organization_id = CAST(:o AS uuid)"
                ),
                {"o": sender["organization_id"]},
            )
        headers = {"Authorization": f"Bearer {sender['token']}"}
        r = httpx.post(
            f"{base}/api/v1/marketing/campaigns",
            headers=headers,
            json={
                "name": "Bench",
                "subject": "Oferta para {{primeiro_nome}}",
                "html_body": '<p>Olá {{nome}}</p><p><a href="https://loja.example.com/">Ver</a></p>',
                "text_body": "Olá {{nome}}",
                "audience": {"source": "bench"},
            },
            timeout=30,
        )
        r.raise_for_status()
        campaign = r.json()["id"]

        started = time.monotonic()
        r = httpx.post(
            f"{base}/api/v1/marketing/campaigns/{campaign}/schedule",
            headers=headers,
            json={},
            timeout=30,
        )
        r.raise_for_status()
        import_id = _import(base, importer["token"], args.import_rows)
        import_started = time.monotonic()
        import_seconds: float | None = None
        while time.monotonic() - started < args.timeout:
            if import_seconds is None and _import_done(base, importer["token"], import_id):
                import_seconds = time.monotonic() - import_started
            with sink.lock:
                sent = len(sink.times)
            if sent >= args.emails and import_seconds is not None:
                break
            time.sleep(0.2)
        import_finished_at = import_started + (import_seconds or 0)
        with sink.lock:
            times = list(sink.times)
        span = (times[-1] - times[0]) if len(times) > 1 else None
        rate = len(times) / span * 3600 if span else None
        during_import = sum(1 for t in times if import_started <= t <= import_finished_at)
        during = [t for t in times if import_started <= t <= import_finished_at]
        rate_during = (
            len(during) / (during[-1] - during[0]) * 3600
            if len(during) > 1 and during[-1] > during[0]
            else None
        )
        imported = (
            owner.connect()
            .execute(
                sa.text("SELECT count(*) FROM leads WHERE organization_id = CAST(:o AS uuid)"),
                {"o": importer["organization_id"]},
            )
            .scalar_one()
        )
        result = {
            "benchmark": "marketing",
            "quick": quick(),
            "emails": args.emails,
            "import_rows": args.import_rows,
            "sent": len(times),
            "send_seconds": span,
            "emails_per_hour": rate,
            "emails_sent_while_the_import_ran": during_import,
            "emails_per_hour_while_the_import_ran": rate_during,
            "import_seconds_alone": import_alone,
            "import_seconds_with_campaign": import_seconds,
            "import_rows_per_second": (imported / import_seconds) if import_seconds else None,
            "imported": imported,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "figures": [
                {
                    "target": "19",
                    "name": "Marketing: campaign e-mails per hour (the whole campaign)",
                    "value": rate,
                    "op": ">=",
                    "goal": 50_000,
                    "unit": "/h",
                },
                {
                    "target": "19",
                    "name": "Marketing: e-mails per hour while the import ran",
                    "value": rate_during,
                    "op": ">=",
                    "goal": 50_000,
                    "unit": "/h",
                },
                {
                    "target": "19",
                    "name": "Marketing: e-mails sent while the import ran",
                    "value": during_import,
                    "op": ">",
                    "goal": 0,
                    "unit": "",
                },
                {
                    "target": "19",
                    "name": "Marketing: import time with the campaign / alone",
                    "value": (import_seconds / import_alone)
                    if import_seconds and import_alone
                    else None,
                    "op": "<=",
                    "goal": 2,
                    "unit": "",
                },
            ],
        }
    finally:
        stop(proc)
        controller.stop()
        owner.dispose()
        bench_db.drop()
    out = results_dir() / "marketing.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
