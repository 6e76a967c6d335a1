"""Notifications: a lead assigned makes one for its new owner only (API: list, unread count,
mark read, all read); preferences per type (off makes nothing; an unknown type is a 422);
a member who cannot see the lead gets nothing (a mention on someone else's lead, a digest
after the lead was reassigned); e-mail now; the daily digest sends one e-mail per member per
day and only when something waits (manual clock); a due task notifies once; a member's live
note reaches only that member's stream."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.core.live import LiveHub
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.jobs.periodic import enqueue_due, schedule
from tests.factories import create_lead, join, login, signup

NOTIFY_JOBS = [
    "notifications.email",
    "notifications.daily",
    "notifications.digest",
    "notifications.tasks",
    "notifications.tasks_due",
]


async def _user_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["user"]["id"])


async def _team(client: httpx.AsyncClient, role: str = "sales") -> dict[str, Any]:
    admin = await signup(client)
    member_email = await join(client, admin["headers"], role)
    member = await login(client, member_email)
    return {
        "admin": admin,
        "member": member,
        "member_email": member_email,
        "member_id": await _user_id(client, member),
        "admin_id": await _user_id(client, admin["headers"]),
    }


async def _mine(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> Any:
    r = await client.get("/api/v1/notifications", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _mail_to(settings: Settings, address: str) -> list[Any]:
    """The notification e-mails sent to ``address`` (not the invitation), oldest first."""
    folder = Path(settings.data_dir) / "mail"
    found = []
    for p in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime):
        msg = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        if msg["To"] == address and "/invitations/" not in _body(msg):
            found.append(msg)
    return found


def _body(msg: Any) -> str:
    return str(msg.get_body(preferencelist=("plain",)).get_content())


async def test_assigned_lead_notifies_its_new_owner_only(client: httpx.AsyncClient) -> None:
    t = await _team(client)
    lead = await create_lead(client, t["admin"]["headers"], assigned_to=t["member_id"])
    page = await _mine(client, t["member"])
    assert page["unread"] == 1
    [item] = page["items"]
    assert item["notification_type"] == "lead_assigned"
    assert item["lead_id"] == lead["id"] and item["link"] == f"/leads/{lead['id']}"
    assert lead["full_name"] in item["title"]
    # Nobody else sees it, by the API…
    assert (await _mine(client, t["admin"]["headers"]))["items"] == []
    r = await client.post(f"/api/v1/notifications/{item['id']}/read", headers=t["admin"]["headers"])
    assert r.status_code == 404
    # …and its member marks it read.
    r = await client.post(f"/api/v1/notifications/{item['id']}/read", headers=t["member"])
    assert r.status_code == 200 and r.json()["read_at"]
    r = await client.get("/api/v1/notifications/unread-count", headers=t["member"])
    assert r.json() == {"unread": 0}
    for _ in range(2):
        await create_lead(client, t["admin"]["headers"], assigned_to=t["member_id"])
    assert (await _mine(client, t["member"], unread="true"))["unread"] == 2
    r = await client.post("/api/v1/notifications/read-all", headers=t["member"])
    assert r.json() == {"marked": 2}
    assert (await _mine(client, t["member"], unread="true"))["items"] == []


async def test_a_lead_taken_away_takes_its_notifications_with_it(
    client: httpx.AsyncClient,
) -> None:
    """A notification about a lead the member can no longer see (reassigned) is neither
    listed, nor counted, nor opened; given back, it is there again."""
    t = await _team(client)
    admin = t["admin"]["headers"]
    lead = await create_lead(client, admin, assigned_to=t["member_id"])
    [item] = (await _mine(client, t["member"]))["items"]
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}", headers=admin, json={"assigned_to": t["admin_id"]}
    )
    assert r.status_code == 200, r.text
    page = await _mine(client, t["member"])
    assert (page["items"], page["unread"]) == ([], 0)
    r = await client.get("/api/v1/notifications/unread-count", headers=t["member"])
    assert r.json() == {"unread": 0}
    r = await client.post(f"/api/v1/notifications/{item['id']}/read", headers=t["member"])
    assert r.status_code == 404
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}", headers=admin, json={"assigned_to": t["member_id"]}
    )
    ids = [i["id"] for i in (await _mine(client, t["member"]))["items"]]
    assert item["id"] in ids


async def test_preferences_per_type(client: httpx.AsyncClient) -> None:
    t = await _team(client)
    r = await client.get("/api/v1/notifications/preferences", headers=t["member"])
    prefs = r.json()["preferences"]
    assert prefs["lead_assigned"] == "in_app" and "payment_failed" in prefs
    r = await client.put(
        "/api/v1/notifications/preferences",
        headers=t["member"],
        json={"preferences": {"lead_assigned": "off", "mention": "digest"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["preferences"]["lead_assigned"] == "off"
    assert r.json()["preferences"]["mention"] == "digest"
    await create_lead(client, t["admin"]["headers"], assigned_to=t["member_id"])
    assert (await _mine(client, t["member"]))["items"] == []
    for bad in ({"no_such_type": "email"}, {"lead_assigned": "pigeon"}, {}):
        r = await client.put(
            "/api/v1/notifications/preferences", headers=t["member"], json={"preferences": bad}
        )
        assert r.status_code == 422, (bad, r.text)


async def test_mention_reaches_only_members_who_can_see_the_lead(
    client: httpx.AsyncClient,
) -> None:
    t = await _team(client)  # the member is "sales": sees only the leads assigned to them
    theirs = await create_lead(client, t["admin"]["headers"], assigned_to=t["member_id"])
    other = await create_lead(client, t["admin"]["headers"])
    await client.post("/api/v1/notifications/read-all", headers=t["member"])
    for lead in (theirs, other):
        r = await client.post(
            f"/api/v1/leads/{lead['id']}/activities",
            headers=t["admin"]["headers"],
            json={"type": "note", "description": "Falar com @Member sobre o preço"},
        )
        assert r.status_code == 201, r.text
    items = (await _mine(client, t["member"]))["items"]
    mentions = [i for i in items if i["notification_type"] == "mention"]
    assert [m["lead_id"] for m in mentions] == [theirs["id"]]
    assert "Ana Souza" in mentions[0]["title"]


async def test_email_now(client: httpx.AsyncClient, database: Database, settings: Settings) -> None:
    t = await _team(client)
    await client.put(
        "/api/v1/notifications/preferences",
        headers=t["member"],
        json={"preferences": {"lead_assigned": "email"}},
    )
    lead = await create_lead(client, t["admin"]["headers"], assigned_to=t["member_id"])
    await run_until_idle(database, settings, types=["notifications.email"], timeout=30)
    [msg] = _mail_to(settings, t["member_email"])
    assert lead["full_name"] in msg["Subject"]
    assert f"/leads/{lead['id']}" in _body(msg)


async def _digest_day(database: Database, settings: Settings, clock: ManualClock) -> None:
    items = tuple(p for p in schedule() if p.name == "notifications-digest")
    await enqueue_due(database, now=clock.now(), items=items)
    await run_until_idle(
        database, settings, types=["notifications.daily", "notifications.digest"], timeout=30
    )


async def test_daily_digest_one_email_per_member_per_day(
    client: httpx.AsyncClient, database: Database, settings: Settings, manual_clock: ManualClock
) -> None:
    items = tuple(p for p in schedule() if p.name == "notifications-digest")
    assert len(items) == 1 and items[0].every == timedelta(days=1)
    t = await _team(client)
    admin_headers = t["admin"]["headers"]
    await client.put(
        "/api/v1/notifications/preferences",
        headers=t["member"],
        json={"preferences": {"lead_assigned": "digest"}},
    )
    kept = await create_lead(client, admin_headers, assigned_to=t["member_id"])
    await create_lead(client, admin_headers, assigned_to=t["member_id"])
    moved = await create_lead(client, admin_headers, assigned_to=t["member_id"])
    # Read in the app already: not in the digest either.
    seen = await create_lead(client, admin_headers, assigned_to=t["member_id"])
    [read] = [i for i in (await _mine(client, t["member"]))["items"] if i["lead_id"] == seen["id"]]
    r = await client.post(f"/api/v1/notifications/{read['id']}/read", headers=t["member"])
    assert r.status_code == 200, r.text
    # The member no longer sees this one: it is left out of their digest.
    r = await client.patch(
        f"/api/v1/leads/{moved['id']}", headers=admin_headers, json={"assigned_to": t["admin_id"]}
    )
    assert r.status_code == 200, r.text
    manual_clock.advance(days=1 + uuid.uuid4().int % 3000)  # a day of our own
    await _digest_day(database, settings, manual_clock)
    [msg] = _mail_to(settings, t["member_email"])
    body = _body(msg)
    assert kept["full_name"] in body and moved["full_name"] not in body
    assert seen["full_name"] not in body
    assert "2" in msg["Subject"]
    # The same day again, then a day with nothing waiting: no other e-mail.
    await _digest_day(database, settings, manual_clock)
    manual_clock.advance(days=1)
    await _digest_day(database, settings, manual_clock)
    assert len(_mail_to(settings, t["member_email"])) == 1
    # Something new waits: the next day brings one more.
    await create_lead(client, admin_headers, assigned_to=t["member_id"])
    manual_clock.advance(days=1)
    await _digest_day(database, settings, manual_clock)
    assert len(_mail_to(settings, t["member_email"])) == 2


async def test_due_task_notifies_its_owner_once(
    client: httpx.AsyncClient, database: Database, settings: Settings, manual_clock: ManualClock
) -> None:
    t = await _team(client)
    lead = await create_lead(client, t["member"])
    due = (manual_clock.now() + timedelta(minutes=30)).isoformat()
    r = await client.post(
        f"/api/v1/leads/{lead['id']}/activities",
        headers=t["member"],
        json={"type": "task", "title": "Ligar de volta", "metadata": {"due_at": due}},
    )
    assert r.status_code == 201, r.text
    items = tuple(p for p in schedule() if p.name == "notifications-tasks")
    for _ in range(2):
        manual_clock.advance(minutes=15)
        await enqueue_due(database, now=manual_clock.now(), items=items)
        await run_until_idle(
            database, settings, types=["notifications.tasks", "notifications.tasks_due"], timeout=30
        )
    tasks = [
        i
        for i in (await _mine(client, t["member"]))["items"]
        if i["notification_type"] == "task_due"
    ]
    assert len(tasks) == 1 and "Ligar de volta" in tasks[0]["title"]


async def test_a_members_live_note_reaches_only_that_member() -> None:
    hub = LiveHub("postgresql://unused")  # dispatch only: never started
    org, me, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    mine, theirs = hub.subscribe(org, me), hub.subscribe(org, other)
    hub.dispatch(
        f'{{"org": "{org}", "type": "notification", "id": "evt_1", "user": "{me}",'
        f' "notification_id": "n1"}}'
    )
    hub.dispatch(f'{{"org": "{org}", "type": "lead.updated", "id": "evt_2", "lead_id": "x"}}')
    got = [mine.queue.get_nowait(), mine.queue.get_nowait()]
    assert [g["type"] for g in got] == ["notification", "lead.updated"]
    assert "user" not in got[0]
    assert [theirs.queue.get_nowait()["type"]] == ["lead.updated"]
    assert theirs.queue.empty()
    await asyncio.sleep(0)
