"""Agenda gaps (issue 17): "Schedule" from the board card and the inbox (the form opens for
the lead), choosing the Google calendar to sync (against the loopback fake), and the WhatsApp
reminder to the lead through an approved template (sandbox provider, manual clock)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from tests.calendar.conftest import MINE, connect_google, run_calendar_jobs
from tests.factories import (
    activate_sandbox,
    create_lead,
    create_template,
    csrf_token,
    owner_sql,
    signup,
    web_login,
)
from tests.fakes.google_calendar import FakeGoogle

# --- 1. "Schedule" from the board card and the inbox ------------------------------------------


async def test_schedule_links_open_the_form_for_the_lead(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    lead = await create_lead(
        client, admin["headers"], full_name="Carla Dias", phone="+5511987650001",
        email="carla@example.com",
    )  # fmt: skip
    await web_login(client, admin["email"])
    href = f'href="/agenda/new?lead_id={lead["id"]}"'

    board = await client.get("/pipeline")
    assert board.status_code == 200
    assert href in board.text and "card-schedule" in board.text

    chat = await client.get(f"/inbox/{lead['id']}")
    assert chat.status_code == 200
    assert href in chat.text and "chat-schedule-link" in chat.text

    form = await client.get(f"/agenda/new?lead_id={lead['id']}")
    assert form.status_code == 200
    assert f'name="lead_id" value="{lead["id"]}"' in form.text
    assert f'name="back" value="/leads/{lead["id"]}"' in form.text
    assert "Carla Dias" in form.text and "carla@example.com" in form.text

    # Another organization's lead (or nonsense) opens an empty form.
    other = await create_lead(client, (await signup(client))["headers"])
    await web_login(client, admin["email"])
    for bad in (other["id"], "nonsense"):
        page = await client.get(f"/agenda/new?lead_id={bad}")
        assert page.status_code == 200
        assert 'name="lead_id" value=""' in page.text

    # Scheduling from the form comes back to the lead.
    token = await csrf_token(client, f"/agenda/new?lead_id={lead['id']}")
    r = await client.post(
        "/agenda/meetings",
        data={
            "csrf_token": token, "title": "Demo", "date": "2031-03-10", "start": "10:00",
            "end": "10:30", "timezone": "America/Sao_Paulo", "video": "none",
            "lead_id": lead["id"], "back": f"/leads/{lead['id']}",
        },
    )  # fmt: skip
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(f"/leads/{lead['id']}")


async def test_schedule_link_in_portuguese(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    lead = await create_lead(client, admin["headers"], phone="+5511987650002")
    await web_login(client, admin["email"])
    client.cookies.set("lang", "pt-BR")
    chat = await client.get(f"/inbox/{lead['id']}", headers={"Accept-Language": "pt-BR"})
    assert "Agendar" in chat.text


# --- 2. choosing the Google calendar -------------------------------------------------------------


async def test_choose_google_calendar(
    gclient: httpx.AsyncClient,
    gsettings: Settings,
    database: Database,
    owner: sa.Engine,
    google: FakeGoogle,
) -> None:
    unconnected = await signup(gclient)
    r = await gclient.get("/api/v1/calendar/google/calendars", headers=unconnected["headers"])
    assert r.status_code == 409

    google.calendars += [
        {"id": "team@group.calendar.google.com", "summary": "Equipe", "accessRole": "writer"},
        {"id": "holidays@group.v.calendar.google.com", "summary": "Feriados",
         "accessRole": "reader"},
    ]  # fmt: skip
    google.add_event(
        summary="On the main calendar",
        start={"dateTime": "2031-05-01T10:00:00Z"},
        end={"dateTime": "2031-05-01T11:00:00Z"},
    )
    admin = await connect_google(gclient, google)
    h = admin["headers"]
    await run_calendar_jobs(database, gsettings, owner)  # the first pull, of the main calendar
    r = await gclient.post(
        "/api/v1/calendar/events",
        headers=h,
        json={
            "title": "Pushed",
            "start_time": "2031-05-07T10:00:00Z",
            "end_time": "2031-05-07T10:30:00Z",
            "video": "none",
        },
    )
    assert r.status_code == 201, r.text
    await run_calendar_jobs(database, gsettings, owner)
    assert owner_sql(owner, MINE.format(cols="sync_token"), e=admin["email"])[0][0]

    listed = await gclient.get("/api/v1/calendar/google/calendars", headers=h)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [c["summary"] for c in items] == ["Ana", "Equipe", "Feriados"]
    assert [c["writable"] for c in items] == [True, True, False]
    assert [c["selected"] for c in items] == [True, False, False]

    # The agenda page offers them (the read-only one disabled).
    await gclient.get("/agenda")
    page = await gclient.get("/agenda")
    assert "data-calendar-picker" in page.text and "Equipe" in page.text
    assert 'value="holidays@group.v.calendar.google.com" disabled' in page.text

    for bad in ("holidays@group.v.calendar.google.com", "nobody@example.com"):
        r = await gclient.put(
            "/api/v1/calendar/google/calendar", headers=h, json={"calendar_id": bad}
        )
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["calendar_id"]
    r = await gclient.put("/api/v1/calendar/google/calendar", headers=h, json={})
    assert r.status_code == 422

    before = len(google.requests)
    r = await gclient.put(
        "/api/v1/calendar/google/calendar",
        headers=h,
        json={"calendar_id": "team@group.calendar.google.com"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["calendar_id"] == "team@group.calendar.google.com"
    assert r.json()["calendar_name"] == "Equipe"
    row = owner_sql(owner, MINE.format(cols="calendar_id, calendar_name, sync_token, id"),
                    e=admin["email"])[0]  # fmt: skip
    assert row[:3] == ("team@group.calendar.google.com", "Equipe", None)
    # What was pulled from the old calendar is gone; the CRM meeting waits to be re-pushed.
    events = owner_sql(
        owner,
        "SELECT title, source, external_event_id, sync_state FROM calendar_events"
        " WHERE calendar_integration_id = :i ORDER BY title",
        i=row[3],
    )
    assert [(e[0], e[1], e[2], e[3]) for e in events] == [("Pushed", "crm", None, "pending")]
    pulls = owner_sql(
        owner,
        "SELECT count(*) FROM background_jobs WHERE job_type = 'calendar.pull'"
        " AND job_data->>'integration_id' = :i AND status = 'pending'",
        i=str(row[3]),
    )
    assert pulls[0][0] == 1

    await run_calendar_jobs(
        database, gsettings, owner
    )  # the full pull and the push, on the new calendar
    paths = [q.path for q in google.requests[before:]]
    team = "/calendar/v3/calendars/team%40group.calendar.google.com/events"
    assert any(p == team for p in paths), paths
    full = [q for q in google.requests[before:] if q.path == team and q.method == "GET"]
    assert full and "syncToken" not in full[0].query
    assert owner_sql(owner, MINE.format(cols="sync_token"), e=admin["email"])[0][0]

    # Choosing the same calendar again changes nothing.
    r = await gclient.put(
        "/api/v1/calendar/google/calendar",
        headers=h,
        json={"calendar_id": "team@group.calendar.google.com"},
    )
    assert r.status_code == 200
    assert owner_sql(owner, MINE.format(cols="sync_token"), e=admin["email"])[0][0]

    # The page form chooses too.
    token = await csrf_token(gclient, "/agenda")
    r = await gclient.post(
        "/agenda/google/calendar",
        data={"csrf_token": token, "calendar_id": "ana@example.com"},
    )
    assert r.status_code == 303
    assert owner_sql(owner, MINE.format(cols="calendar_id"), e=admin["email"])[0][0] == (
        "ana@example.com"
    )


# --- 3. the WhatsApp reminder to the lead --------------------------------------------------------


async def _wa_org(client: httpx.AsyncClient) -> dict[str, Any]:
    admin = await signup(client)
    h = admin["headers"]
    await activate_sandbox(client, h)
    admin["approved"] = await create_template(
        client, h, name="Lembrete", content="Oi {{first_name}}, até já!",
        whatsapp_template_name="lembrete_reuniao", whatsapp_language="pt_BR",
    )  # fmt: skip
    admin["plain"] = await create_template(client, h, name="Solto", content="Oi!")
    admin["lead"] = await create_lead(client, h, full_name="Bruno Lima", phone="+5511987650003")
    return admin


def _wa_jobs(owner: sa.Engine, org: str) -> dict[str, Any]:
    rows = owner_sql(
        owner,
        "SELECT job_data->>'event_id', scheduled_for, status, result_data, dedupe_key"
        " FROM background_jobs WHERE job_type = 'calendar.whatsapp_reminder'"
        " AND organization_id = :o ORDER BY scheduled_for",
        o=org,
    )
    return {"rows": rows}


async def test_whatsapp_reminder_validation(client: httpx.AsyncClient) -> None:
    org = await _wa_org(client)
    h, lead = org["headers"], org["lead"]
    base = {
        "title": "Demo",
        "start_time": "2031-03-10T14:00:00-03:00",
        "end_time": "2031-03-10T14:30:00-03:00",
        "video": "none",
    }
    cases = [
        ({"whatsapp_template_id": org["approved"]["id"], "whatsapp_reminder_minutes": 60},
         "whatsapp_template_id"),  # no lead
        ({"lead_id": lead["id"], "whatsapp_template_id": org["plain"]["id"],
          "whatsapp_reminder_minutes": 60}, "whatsapp_template_id"),  # not approved
        ({"lead_id": lead["id"], "whatsapp_template_id": org["approved"]["id"]},
         "whatsapp_reminder_minutes"),
    ]  # fmt: skip
    for extra, field in cases:
        r = await client.post("/api/v1/calendar/events", headers=h, json={**base, **extra})
        assert r.status_code == 422, r.text
        assert field in str(r.json()), r.text
    r = await client.post(
        "/api/v1/calendar/events",
        headers=h,
        json={**base, "lead_id": lead["id"], "whatsapp_template_id": org["approved"]["id"],
              "whatsapp_reminder_minutes": 45},
    )  # fmt: skip
    assert r.status_code == 422
    # Another organization's approved template is not this one's.
    other = await _wa_org(client)
    r = await client.post(
        "/api/v1/calendar/events",
        headers=h,
        json={**base, "lead_id": lead["id"], "whatsapp_template_id": other["approved"]["id"],
              "whatsapp_reminder_minutes": 60},
    )  # fmt: skip
    assert r.status_code == 422


async def test_whatsapp_reminder_form_offers_approved_templates(client: httpx.AsyncClient) -> None:
    org = await _wa_org(client)
    await web_login(client, org["email"])
    page = await client.get(f"/agenda/new?lead_id={org['lead']['id']}")
    assert "data-wa-reminder" in page.text
    assert org["approved"]["id"] in page.text and org["plain"]["id"] not in page.text
    token = await csrf_token(client, f"/agenda/new?lead_id={org['lead']['id']}")
    r = await client.post(
        "/agenda/meetings",
        data={
            "csrf_token": token, "title": "Demo", "date": "2031-03-10", "start": "10:00",
            "end": "10:30", "timezone": "America/Sao_Paulo", "video": "none",
            "lead_id": org["lead"]["id"], "back": f"/leads/{org['lead']['id']}",
            "whatsapp_template_id": org["approved"]["id"], "whatsapp_reminder_minutes": "1440",
        },
    )  # fmt: skip
    assert r.status_code == 303, r.text
    listed = await client.get(
        "/api/v1/calendar/events",
        headers=org["headers"],
        params={"from": "2031-03-10T00:00:00-03:00", "to": "2031-03-11T00:00:00-03:00"},
    )
    (event,) = listed.json()["items"]
    assert event["whatsapp_reminder"] == {"template_id": org["approved"]["id"], "minutes": 1440}


async def test_whatsapp_reminder_sent_at_its_time_not_when_moved_or_cancelled(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    manual_clock: ManualClock,
) -> None:
    org = await _wa_org(client)
    h, lead = org["headers"], org["lead"]
    start = (manual_clock.now() + timedelta(days=2)).replace(microsecond=0)

    async def meeting(title: str, at: Any, minutes: int) -> dict[str, Any]:
        r = await client.post(
            "/api/v1/calendar/events",
            headers=h,
            json={
                "title": title,
                "start_time": at.isoformat(),
                "end_time": (at + timedelta(minutes=30)).isoformat(),
                "timezone": "America/Sao_Paulo",
                "video": "none",
                "lead_id": lead["id"],
                "whatsapp_template_id": org["approved"]["id"],
                "whatsapp_reminder_minutes": minutes,
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    kept = await meeting("Kept", start, 180)
    moved = await meeting("Moved", start + timedelta(hours=5), 60)
    cancelled = await meeting("Cancelled", start + timedelta(hours=8), 1440)
    rows = _wa_jobs(owner, org["organization_id"])["rows"]
    at = {r[0]: r[1] for r in rows}
    assert at[kept["id"]] == start - timedelta(hours=3)
    assert at[moved["id"]] == start + timedelta(hours=4)
    assert at[cancelled["id"]] == start + timedelta(hours=8) - timedelta(days=1)
    assert all(r[4].startswith(f"calendar.whatsapp_reminder:{r[0]}:") for r in rows)

    r = await client.patch(
        f"/api/v1/calendar/events/{moved['id']}",
        headers=h,
        json={
            "start_time": (start + timedelta(days=1, hours=5)).isoformat(),
            "end_time": (start + timedelta(days=1, hours=5, minutes=30)).isoformat(),
        },
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/api/v1/calendar/events/{cancelled['id']}", headers=h, json={"status": "cancelled"}
    )
    assert r.status_code == 200, r.text

    async def run() -> None:
        await run_until_idle(database, settings, types=["calendar.whatsapp_reminder"], timeout=30)

    def sent() -> list[Any]:
        return owner_sql(
            owner,
            "SELECT content, message_type, metadata->'template'->>'whatsapp_template_name',"
            " metadata->>'calendar_event_id' FROM messages"
            " WHERE lead_id = :l AND direction = 'outbound' ORDER BY created_at",
            l=lead["id"],
        )

    # Not yet: a minute before the kept meeting's reminder time.
    manual_clock.advance(seconds=(start - manual_clock.now()).total_seconds() - 181 * 60)
    await run()
    assert sent() == []

    manual_clock.advance(minutes=1)
    await run()
    assert sent() == [("Oi Bruno, até já!", "template", "lembrete_reuniao", kept["id"])]

    # Past the moved and cancelled meetings' old times: nothing more.
    manual_clock.advance(hours=6)
    await run()
    assert len(sent()) == 1
    outcome = {
        r[0]: r[3] for r in _wa_jobs(owner, org["organization_id"])["rows"] if r[2] == "completed"
    }
    assert "message_id" in outcome[kept["id"]]
    assert "skipped" in outcome[cancelled["id"]]

    # The moved meeting is reminded at its new time, once.
    manual_clock.advance(days=1, minutes=59)  # a minute before its new reminder time
    await run()
    assert [s[3] for s in sent()] == [kept["id"]]
    manual_clock.advance(minutes=1)
    await run()
    await run()
    assert [s[3] for s in sent()] == [kept["id"], moved["id"]]
