"""Google Calendar against the loopback fake: OAuth (state + PKCE), forged state refused,
push with conference creation, incremental pull (syncToken, paging, 410 → full resync,
cancelled removed, no loop for pushed events, lead linked by attendee), token refresh,
a revoked grant (meeting kept, sync failed), 429/5xx retried."""

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
from tests.factories import create_lead, csrf_token, owner_sql, signup, web_login
from tests.fakes.google_calendar import FakeGoogle

JOBS = ["calendar.push", "calendar.pull", "calendar.remote_delete"]
MINE = (
    "SELECT {cols} FROM calendar_integrations"
    " WHERE user_id = (SELECT id FROM users WHERE email = :e)"
)
EXPIRE = (
    "UPDATE calendar_integrations SET token_expires_at = now() - interval '1 minute' WHERE id = :i"
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


async def _connect(client: httpx.AsyncClient, google: FakeGoogle) -> dict[str, str]:
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


async def _run(database: Database, settings: Settings, owner: sa.Engine) -> None:
    owner_sql(
        owner,
        "UPDATE background_jobs SET scheduled_for = now() WHERE job_type LIKE 'calendar.%'"
        " AND status IN ('pending', 'retrying')",
    )
    await run_until_idle(database, settings, types=JOBS, timeout=30)


async def test_oauth_push_pull_refresh_revoke(
    gclient: httpx.AsyncClient,
    gsettings: Settings,
    database: Database,
    owner: sa.Engine,
    google: FakeGoogle,
) -> None:
    google.add_event(
        summary="From Google",
        start={"dateTime": "2031-05-01T10:00:00-03:00", "timeZone": "America/Sao_Paulo"},
        end={"dateTime": "2031-05-01T11:00:00-03:00"},
        attendees=[{"email": "lead@example.com"}],
    )
    for i in range(3):
        google.add_event(
            summary=f"Other {i}",
            start={"dateTime": f"2031-05-0{i + 2}T10:00:00Z"},
            end={"dateTime": f"2031-05-0{i + 2}T11:00:00Z"},
        )
    admin = await _connect(gclient, google)
    h = admin["headers"]
    lead = await create_lead(gclient, h, email="lead@example.com")
    rows = owner_sql(
        owner,
        MINE.format(cols="refresh_token, access_token"),
        e=admin["email"],
    )
    assert rows and rows[0][0].startswith("v1:") and "refresh-" not in rows[0][0]

    await _run(database, gsettings, owner)  # the first (full) sync, over two pages
    listed = await gclient.get(
        "/api/v1/calendar/events",
        headers=h,
        params={"from": "2031-04-30T00:00:00Z", "to": "2031-05-10T00:00:00Z"},
    )
    items = {e["title"]: e for e in listed.json()["items"]}
    assert set(items) == {"From Google", "Other 0", "Other 1", "Other 2"}
    assert items["From Google"]["lead_id"] == lead["id"]

    # A CRM meeting with Google Meet is pushed with a conference request.
    r = await gclient.post(
        "/api/v1/calendar/events",
        headers=h,
        json={
            "title": "Meet",
            "start_time": "2031-05-07T10:00:00Z",
            "end_time": "2031-05-07T10:30:00Z",
            "video": "google",
        },
    )
    assert r.status_code == 201, r.text
    google.fail_next = [503]  # retried with backoff
    await _run(database, gsettings, owner)
    await _run(database, gsettings, owner)
    meet = (await gclient.get(f"/api/v1/calendar/events/{r.json()['id']}", headers=h)).json()
    assert meet["sync_state"] == "synced"
    assert meet["meeting_url"].startswith("https://meet.google.com/")

    # Incremental: a cancelled event is removed; the pushed one does not come back twice.
    google.cancel_event(
        next(e for e in google.events.values() if e.get("summary") == "Other 0")["id"]
    )
    sql = owner_sql
    integration = sql(
        owner,
        MINE.format(cols="id, sync_token"),
        e=admin["email"],
    )[0]
    assert integration[1]
    await _enqueue_pull(owner, integration[0])
    await _run(database, gsettings, owner)
    listed = await gclient.get(
        "/api/v1/calendar/events",
        headers=h,
        params={"from": "2031-04-30T00:00:00Z", "to": "2031-05-10T00:00:00Z"},
    )
    titles = sorted(e["title"] for e in listed.json()["items"])
    assert titles == ["From Google", "Meet", "Other 1", "Other 2"]
    sync_requests = [q for q in google.requests if q.query.get("syncToken")]
    assert sync_requests

    # 410 GONE → a full resync, still no duplicates.
    google.expired_tokens.add(integration[1])
    sql(
        owner,
        "UPDATE calendar_integrations SET sync_token = :t WHERE id = :i",
        t="x-expired",
        i=integration[0],
    )
    await _enqueue_pull(owner, integration[0])
    await _run(database, gsettings, owner)
    listed = await gclient.get(
        "/api/v1/calendar/events",
        headers=h,
        params={"from": "2031-04-30T00:00:00Z", "to": "2031-05-10T00:00:00Z"},
    )
    assert sorted(e["title"] for e in listed.json()["items"]) == titles

    # Token refresh before expiry, then a revoked grant: the meeting stays, sync failed.
    sql(
        owner,
        EXPIRE,
        i=integration[0],
    )
    before = len(google.requests_to("/token"))
    await _enqueue_pull(owner, integration[0])
    await _run(database, gsettings, owner)
    assert len(google.requests_to("/token")) == before + 1
    sql(
        owner,
        EXPIRE,
        i=integration[0],
    )
    google.revoked = True
    r = await gclient.post(
        "/api/v1/calendar/events",
        headers=h,
        json={
            "title": "After revoke",
            "start_time": "2031-05-08T10:00:00Z",
            "end_time": "2031-05-08T10:30:00Z",
        },
    )
    assert r.status_code == 201
    await _run(database, gsettings, owner)
    kept = (await gclient.get(f"/api/v1/calendar/events/{r.json()['id']}", headers=h)).json()
    assert kept["sync_state"] == "failed"
    status = sql(
        owner,
        "SELECT sync_status, sync_error FROM calendar_integrations WHERE id = :i",
        i=integration[0],
    )[0]
    assert status[0] == "error" and "revoked" in status[1]
    page = await gclient.get("/agenda")
    assert "revoked" in page.text


async def _enqueue_pull(owner: sa.Engine, integration_id: object) -> None:
    owner_sql(
        owner,
        "INSERT INTO background_jobs (organization_id, job_type, job_data, status, scheduled_for)"
        " SELECT organization_id, 'calendar.pull', jsonb_build_object('integration_id', id::text),"
        " 'pending', now() FROM calendar_integrations WHERE id = :i",
        i=integration_id,
    )
