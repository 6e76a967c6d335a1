"""HTML pages beyond log-in: forgot password, accepting an invitation, the jobs page."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

import tests.jobs.handlers  # noqa: F401 - registers test.boom
from lovedcrm.config import Settings
from lovedcrm.core.deps import SESSION_COOKIE
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.jobs.queue import enqueue
from tests.factories import (
    CSRF_INPUT,
    PASSWORD,
    signup,
    unique_email,
    web_accept_invitation,
    web_signup,
)


def mails_to(settings: Settings, address: str) -> list[str]:
    folder = Path(settings.data_dir) / "mail"
    return [p.read_text() for p in folder.glob("*.eml") if f"To: {address}" in p.read_text()]


async def test_forgot_password_answers_the_same_and_mails_only_real_accounts(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await client.get("/forgot-password")).status_code == 200
    account = await signup(client)
    known = await client.post("/forgot-password", data={"email": account["email"]})
    unknown = await client.post("/forgot-password", data={"email": unique_email("nobody")})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    assert any("/reset-password?token=" in m for m in mails_to(settings, account["email"]))


async def test_invitation_accepted_through_the_page_creates_the_account(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    invitee = unique_email("invitee")
    r = await client.post(
        "/api/v1/invitations", headers=admin["headers"], json={"email": invitee, "role": "sales"}
    )
    token = r.json()["accept_url"].split("token=")[1]
    page = await client.get(f"/invitations/accept?token={token}")
    assert page.status_code == 200 and invitee in page.text
    client.cookies.clear()
    r = await client.post(
        "/invitations/accept",
        data={"token": token, "full_name": "Novo Vendedor", "password": PASSWORD},
    )
    assert r.status_code == 303 and client.cookies.get(SESSION_COOKIE)
    home = await client.get("/")
    assert "Novo Vendedor" in home.text and "· Vendedor" in home.text  # the role, in words
    again = await client.get(f"/invitations/accept?token={token}")
    assert again.status_code == 401  # single use


async def test_jobs_page_shows_failures_and_retries_with_csrf(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    await web_signup(client)
    me = (await client.get("/")).text
    csrf = CSRF_INPUT.search(me)
    assert csrf
    r = await client.get("/settings/jobs")
    assert r.status_code == 200 and "Nenhuma falha" in r.text
    # A failed job in this organization (the cookie session reads the JSON API too).
    org_id = uuid.UUID((await client.get("/api/v1/organizations/current")).json()["id"])
    async with tenant_transaction(database.sessionmaker, org_id) as session:
        job = await enqueue(
            session,
            "test.boom",
            {"message": "provedor fora do ar"},
            organization_id=org_id,
            max_attempts=1,
        )
    await run_until_idle(database, settings, types=["test.boom"])
    page = await client.get("/settings/jobs")
    assert "provedor fora do ar" in page.text and str(job) in page.text
    assert "Falhou de vez" in page.text and ">failed<" not in page.text  # statuses in pt-BR
    refused = await client.post(f"/settings/jobs/{job}/retry")
    assert refused.status_code == 403
    token = CSRF_INPUT.search(page.text)
    assert token
    r = await client.post(f"/settings/jobs/{job}/retry", data={"csrf_token": token.group(1)})
    assert r.status_code == 303
    assert "Nenhuma falha" in (await client.get("/settings/jobs")).text


async def test_jobs_page_needs_the_permission(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    await web_accept_invitation(client, admin["headers"], "sales")
    r = await client.get("/settings/jobs")
    assert r.status_code == 403 and "jobs:manage" in r.text
