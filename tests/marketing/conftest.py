"""Fixtures of the marketing tests: an organization with a sales member (round-robin
assignment), the loopback fake Graph API, a local SMTP server capturing every message, and
running the marketing jobs."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from tests.factories import join, signup
from tests.fakes.graph_fake import APP_SECRET, PAGE_ID, PAGE_TOKEN, VERIFY_TOKEN, FakeLeadAdsGraph

MARKETING_JOBS = [
    "marketing.import_lead",
    "marketing.backfill",
    "marketing.fetch_spend",
    "marketing.campaign_start",
    "marketing.send_batch",
    "whatsapp.send",
]


@dataclass
class SmtpSink:
    """Every message the server accepted, and the addresses it refuses (550: a hard bounce)."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    port: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.lower() in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"

    def parsed(self) -> list[Message]:
        return [message_from_bytes(raw) for _, _, raw in self.messages]


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    with socket.socket() as probe:  # a free port (the controller's own check cannot use 0)
        probe.bind(("127.0.0.1", 0))
        sink.port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    return settings.model_copy(
        update={
            "mail_backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_sink.port,
            "smtp_starttls": False,
        }
    )


@pytest.fixture
def graph() -> Iterator[FakeLeadAdsGraph]:
    fake = FakeLeadAdsGraph()
    try:
        yield fake
    finally:
        fake.close()


def owner_rows(database: Database, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(database.owner_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def make_due(database: Database) -> None:
    """The marketing jobs waiting (throttled batches, backfill pages, retries) become due:
    under a manual clock, it is advanced to the last of them."""
    latest = owner_rows(
        database,
        "SELECT max(scheduled_for) FROM background_jobs WHERE (job_type LIKE 'marketing.%'"
        " OR job_type = 'whatsapp.send') AND status IN ('pending', 'retrying')",
    )[0][0]
    manual = clock.current()
    if isinstance(manual, ManualClock):
        if latest is not None and latest > manual.now():
            manual.advance(microseconds=(latest - manual.now()) // timedelta(microseconds=1))
    elif latest is not None:
        owner_rows(
            database,
            "UPDATE background_jobs SET scheduled_for = now() WHERE job_type LIKE 'marketing.%'"
            " AND status IN ('pending', 'retrying')",
        )


async def run_marketing(database: Database, settings: Settings, *, rounds: int = 50) -> int:
    """Run the marketing jobs until none is waiting (delayed ones made due each round)."""
    ran = 0
    for _ in range(rounds):
        make_due(database)
        n = await run_until_idle(database, settings, types=MARKETING_JOBS, timeout=60)
        ran += n
        if n == 0:
            break
    return ran


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    """An admin and a sales member; new leads are assigned round-robin (to the member)."""
    data = await signup(client, full_name="Ana Admin")
    data["sales_id"] = await join(client, data["headers"], "sales")
    r = await client.patch(
        "/api/v1/organizations/current",
        headers=data["headers"],
        json={"settings": {"assignment": "round_robin"}},
    )
    assert r.status_code == 200, r.text
    data["org_id"] = uuid.UUID(data["organization_id"])
    return data


async def connect_facebook(
    client: httpx.AsyncClient, headers: dict[str, str], graph: FakeLeadAdsGraph, **extra: Any
) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/marketing/integrations",
        headers=headers,
        json={
            "provider": "facebook",
            "page_id": PAGE_ID,
            "account_name": "Página Loja",
            "access_token": PAGE_TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "graph_base_url": graph.url + "/v21.0",
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def connect_google(
    client: httpx.AsyncClient, headers: dict[str, str], key: str, **extra: Any
) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/marketing/integrations",
        headers=headers,
        json={"provider": "google", "google_key": key, "account_name": "Google Ads", **extra},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def grant_consent(database: Database, org_id: uuid.UUID, lead_ids: list[Any]) -> None:
    """E-mail marketing consent for these leads (as the privacy domain records it)."""
    owner_rows(
        database,
        "INSERT INTO lead_consents (organization_id, lead_id, purpose, legal_basis, status,"
        " source, evidence, recorded_at)"
        " SELECT :org, id, 'email_marketing', 'consent', 'granted', 'form', '{}'::jsonb, now()"
        " FROM leads WHERE id = ANY(CAST(:ids AS uuid[]))",
        org=org_id,
        ids=[str(i) for i in lead_ids],
    )


__all__ = ["asyncio"]
