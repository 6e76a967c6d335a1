"""Agenda API: create/list/patch/delete, validation (422 naming the field), statuses on the
lead's timeline, Jitsi links, ICS invitations and the member's feed."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from icalendar import Calendar

from lovedcrm.config import Settings
from tests.factories import create_lead, csrf_token, signup, web_login

START = "2031-03-10T14:00:00-03:00"
END = "2031-03-10T14:30:00-03:00"


async def _meeting(
    client: httpx.AsyncClient, headers: dict[str, str], **extra: Any
) -> httpx.Response:
    body = {"title": "Demo call", "start_time": START, "end_time": END, **extra}
    return await client.post("/api/v1/calendar/events", headers=headers, json=body)


def _fields(r: httpx.Response) -> list[str]:
    body = r.json()
    items = body.get("errors") or []
    found = [str(e.get("field") or "") for e in items]
    found += (
        [
            ".".join(str(x) for x in e.get("loc", []))
            for e in body.get("detail", [])
            if isinstance(e, dict)
        ]
        if isinstance(body.get("detail"), list)
        else []
    )
    return found


async def test_create_list_status_timeline(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await signup(client)
    h = admin["headers"]
    lead = await create_lead(client, h, email="cliente@example.com")
    r = await _meeting(client, h, lead_id=lead["id"], attendees=["cliente@example.com"])
    assert r.status_code == 201, r.text
    event = r.json()
    assert event["timezone"] == "America/Sao_Paulo"
    assert event["meeting_url"].startswith("https://meet.jit.si/LovedCRM-")
    assert len(event["meeting_url"].rsplit("-", 1)[1]) == 24
    assert event["conflicts"] == []

    clash = await _meeting(client, h, title="Overlap")
    assert clash.status_code == 201
    assert clash.json()["conflicts"] == [event["id"]]

    listed = await client.get(
        "/api/v1/calendar/events",
        headers=h,
        params={"from": "2031-03-10T00:00:00-03:00", "to": "2031-03-11T00:00:00-03:00"},
    )
    assert listed.status_code == 200
    assert {e["id"] for e in listed.json()["items"]} == {event["id"], clash.json()["id"]}

    done = await client.patch(
        f"/api/v1/calendar/events/{event['id']}", headers=h, json={"status": "completed"}
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    again = await client.patch(
        f"/api/v1/calendar/events/{event['id']}", headers=h, json={"status": "no_show"}
    )
    assert again.status_code == 409

    timeline = await client.get(f"/api/v1/leads/{lead['id']}/activities", headers=h)
    titles = [a["title"] for a in timeline.json()["items"]]
    assert "Meeting scheduled: Demo call" in titles
    assert "Meeting completed: Demo call" in titles

    assert (
        await client.delete(f"/api/v1/calendar/events/{clash.json()['id']}", headers=h)
    ).status_code == 204
    assert (
        await client.get(f"/api/v1/calendar/events/{clash.json()['id']}", headers=h)
    ).status_code == 404


async def test_bad_input_names_the_field(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    other = await signup(client)
    h = admin["headers"]
    foreign = await create_lead(client, other["headers"])

    r = await _meeting(client, h, end_time="2031-03-10T13:00:00-03:00")
    assert r.status_code == 422 and "end_time" in _fields(r), r.text
    r = await _meeting(client, h, timezone="Mars/Olympus_Mons")
    assert r.status_code == 422 and "timezone" in _fields(r), r.text
    r = await _meeting(client, h, lead_id=foreign["id"])
    assert r.status_code == 422 and "lead_id" in _fields(r), r.text
    r = await _meeting(client, h, start_time=1234567890)
    assert r.status_code == 422
    r = await _meeting(client, h, video="google")
    assert r.status_code == 422 and "video" in _fields(r), r.text
    # Another organization's meeting is not found.
    mine = (await _meeting(client, h)).json()
    r = await client.get(f"/api/v1/calendar/events/{mine['id']}", headers=other["headers"])
    assert r.status_code == 404


def _strict_lines(data: bytes) -> list[str]:
    """A small independent RFC 5545 check: CRLF line ends, at most 75 octets a line, then
    unfolded content lines."""
    raw = data.split(b"\r\n")
    assert raw[-1] == b""
    for line in raw[:-1]:
        assert len(line) <= 75, line
        assert b"\n" not in line and b"\r" not in line
    text = data.decode().replace("\r\n ", "").replace("\r\n\t", "")
    return [line for line in text.split("\r\n") if line]


def _ics_mails(folder: Path, to: str) -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime):
        msg = email.message_from_bytes(path.read_bytes())
        if msg["To"] != to:
            continue
        for part in msg.walk():
            if part.get_filename() == "invite.ics":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                found.append((str(msg["Subject"]), payload))
    return found


async def test_ics_invitation_update_cancel(client: httpx.AsyncClient, settings: Settings) -> None:
    admin = await signup(client)
    h = admin["headers"]
    guest = f"guest-{admin['email']}"
    event = (await _meeting(client, h, attendees=[guest], description="Agenda: preço")).json()
    await client.patch(
        f"/api/v1/calendar/events/{event['id']}",
        headers=h,
        json={"start_time": "2031-03-10T15:00:00-03:00", "end_time": "2031-03-10T16:00:00-03:00"},
    )
    await client.patch(
        f"/api/v1/calendar/events/{event['id']}", headers=h, json={"status": "cancelled"}
    )
    mails = _ics_mails(Path(settings.data_dir) / "mail", guest)
    assert len(mails) == 3
    seen = []
    for _subject, data in mails:
        lines = _strict_lines(data)
        assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
        assert "VERSION:2.0" in lines
        props = {line.split(":", 1)[0].split(";", 1)[0]: line.split(":", 1)[1] for line in lines}
        cal = Calendar.from_ical(data)
        vevent = next(c for c in cal.walk("VEVENT"))
        assert str(vevent["UID"]) == props["UID"] == f"{event['id']}@lovedcrm"
        assert str(vevent["SUMMARY"]) == "Demo call"
        assert "preço" in str(vevent["DESCRIPTION"])
        assert any(
            str(a).lower() == f"mailto:{guest}"
            for a in (
                vevent.get("ATTENDEE")
                if isinstance(vevent.get("ATTENDEE"), list)
                else [vevent.get("ATTENDEE")]
            )
        )
        seen.append((props["METHOD"], int(props["SEQUENCE"]), vevent.decoded("DTSTART")))
    assert [m for m, _, _ in seen] == ["REQUEST", "REQUEST", "CANCEL"]
    assert seen[0][1] < seen[1][1] < seen[2][1]
    assert seen[1][2] == datetime(2031, 3, 10, 18, 0, tzinfo=UTC)


async def test_feed_secret_revocable(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    await _meeting(client, admin["headers"])
    await web_login(client, admin["email"])
    token = await csrf_token(client, "/agenda")
    r = await client.post("/agenda/feed", data={"csrf_token": token, "action": "new"})
    assert r.status_code == 303
    url = httpx.URL(r.headers["location"]).params["feed"]
    path = httpx.URL(url).path
    feed = await client.get(path)
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    lines = _strict_lines(feed.content)
    assert "METHOD:PUBLISH" in lines and "SUMMARY:Demo call" in lines
    # A new address revokes the old one.
    token = await csrf_token(client, "/agenda")
    await client.post("/agenda/feed", data={"csrf_token": token, "action": "new"})
    assert (await client.get(path)).status_code == 404
    assert (await client.get("/calendar/feed/not-a-real-token-at-all.ics")).status_code == 404
