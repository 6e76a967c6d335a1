"""Google Calendar against the loopback fake: OAuth (state + PKCE), forged state refused,
push with conference creation, incremental pull (syncToken, paging, 410 → full resync,
cancelled removed, no loop for pushed events, lead linked by attendee), token refresh,
a revoked grant (meeting kept, sync failed), 429/5xx retried."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from tests.calendar.conftest import MINE, connect_google, run_calendar_jobs
from tests.factories import create_lead, owner_sql
from tests.fakes.google_calendar import FakeGoogle

EXPIRE = (
    "UPDATE calendar_integrations SET token_expires_at = now() - interval '1 minute' WHERE id = :i"
)


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
    admin = await connect_google(gclient, google)
    h = admin["headers"]
    lead = await create_lead(gclient, h, email="lead@example.com")
    rows = owner_sql(
        owner,
        MINE.format(cols="refresh_token, access_token"),
        e=admin["email"],
    )
    assert rows and rows[0][0].startswith("v1:") and "refresh-" not in rows[0][0]

    await run_calendar_jobs(database, gsettings, owner)  # the first (full) sync, over two pages
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
    await run_calendar_jobs(database, gsettings, owner)
    await run_calendar_jobs(database, gsettings, owner)
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
    await run_calendar_jobs(database, gsettings, owner)
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
    await run_calendar_jobs(database, gsettings, owner)
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
    await run_calendar_jobs(database, gsettings, owner)
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
    await run_calendar_jobs(database, gsettings, owner)
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
