"""Helpers shared by the WhatsApp tests: run the messaging jobs, make delayed ones due."""

from __future__ import annotations

import httpx
from sqlalchemy import create_engine, text

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle

WA_JOBS = ["whatsapp.inbound", "whatsapp.send", "whatsapp.media"]


async def run_wa_jobs(database: Database, settings: Settings, *, due_now: bool = False) -> int:
    """Run the WhatsApp jobs until none is ready; ``due_now`` first brings delayed ones
    (sandbox receipts, retries) forward."""
    if due_now:
        make_due(database)
    return await run_until_idle(database, settings, types=WA_JOBS, timeout=30)


def make_due(database: Database) -> None:
    engine = create_engine(database.owner_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE background_jobs SET scheduled_for = now() "
                    "WHERE job_type LIKE 'whatsapp.%' AND status IN ('pending', 'retrying')"
                )
            )
    finally:
        engine.dispose()


async def sandbox_active(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.post(
        "/api/v1/whatsapp/configs", headers=headers, json={"provider_type": "sandbox"}
    )
    assert r.status_code == 201, r.text
    config_id: str = r.json()["id"]
    r = await client.post(f"/api/v1/whatsapp/configs/{config_id}/activate", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed", r.json()
    return config_id
