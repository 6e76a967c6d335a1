"""The Google Calendar fake, settings and a client pointed at it, and the steps the Google
tests share: connecting a member (state + PKCE, a forged state refused) and running the
calendar jobs."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from tests.factories import csrf_token, owner_sql, signup, web_login
from tests.fakes.google_calendar import FakeGoogle

JOBS = ["calendar.push", "calendar.pull", "calendar.remote_delete"]
MINE = (
    "SELECT {cols} FROM calendar_integrations"
    " WHERE user_id = (SELECT id FROM users WHERE email = :e)"
)


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle(page_size=2) as fake:
        yield fake


@pytest.fixture
def gsettings(settings: Settings, google: FakeGoogle) -> Settings:
    return settings.model_copy(
        update={
            "google_client_id": "client-1",
            "google_client_secret": SecretStr("secret-1"),
            "google_token_url": f"{google.url}/token",
            "google_auth_url": f"{google.url}/auth",
            "google_calendar_api_url": f"{google.url}/calendar/v3",
        }
    )


@pytest.fixture
async def gclient(gsettings: Settings, database: Database) -> httpx.AsyncClient:
    app = create_app(gsettings, database=database)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def connect_google(client: httpx.AsyncClient, google: FakeGoogle) -> dict[str, str]:
    admin = await signup(client)
    await web_login(client, admin["email"])
    token = await csrf_token(client, "/agenda")
    r = await client.post("/agenda/google/connect", data={"csrf_token": token})
    assert r.status_code == 303, r.text
    auth = urlsplit(r.headers["location"])
    q = parse_qs(auth.query)
    assert q["code_challenge_method"] == ["S256"] and q["access_type"] == ["offline"]
    code = google.authorize(q["code_challenge"][0])
    forged = await client.get("/agenda/google/callback", params={"state": "forged", "code": code})
    assert forged.status_code == 403
    ok = await client.get("/agenda/google/callback", params={"state": q["state"][0], "code": code})
    assert ok.status_code == 303, ok.text
    return admin


async def run_calendar_jobs(database: Database, settings: Settings, owner: sa.Engine) -> None:
    owner_sql(
        owner,
        "UPDATE background_jobs SET scheduled_for = now() WHERE job_type LIKE 'calendar.%'"
        " AND status IN ('pending', 'retrying')",
    )
    await run_until_idle(database, settings, types=JOBS, timeout=30)
