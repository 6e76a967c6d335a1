"""The agenda's timed jobs, on the manual clock: the 15-minute Google pull fan-out (one pull
per connected integration, bulk priority, once per period) and the e-mail reminder (sent at
the chosen time, once, through the mail outbox; nothing when the meeting moved or was
cancelled)."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.jobs.periodic import enqueue_due, period_start, schedule
from lovedcrm.jobs.queue import BULK_PRIORITY
from tests.factories import owner_sql, signup

INTEGRATION = (
    "INSERT INTO calendar_integrations"
    " (organization_id, user_id, provider, refresh_token, calendar_id, sync_status)"
    " VALUES (:org, (SELECT id FROM users WHERE email = :e), 'google', 'v1:x', 'primary', :st)"
    " RETURNING id"
)
PULLS = (
    "SELECT job_data->>'integration_id' AS integration, priority, dedupe_key, organization_id"
    " FROM background_jobs WHERE job_type = 'calendar.pull' AND job_data->>'integration_id'"
    " IN :ids ORDER BY created_at"
)


def _integration(owner: sa.Engine, account: dict[str, Any], status: str = "active") -> str:
    rows = owner_sql(
        owner, INTEGRATION, org=account["organization_id"], e=account["email"], st=status
    )
    return str(rows[0][0])


def _pulls(owner: sa.Engine, ids: list[str]) -> list[Any]:
    stmt = sa.text(PULLS).bindparams(sa.bindparam("ids", expanding=True))
    with owner.begin() as conn:
        return list(conn.execute(stmt, {"ids": ids}).all())


async def test_pull_fan_out_every_15_minutes(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    manual_clock: ManualClock,
) -> None:
    items = tuple(p for p in schedule() if p.name == "calendar-pull")
    assert len(items) == 1 and items[0].every == timedelta(minutes=15)
    assert items[0].job_type == "calendar.pull_all"
    one, two = await signup(client), await signup(client)
    active = [_integration(owner, one), _integration(owner, two)]
    broken = _integration(owner, one, status="error")  # a revoked grant waits for reconnect
    # A period of our own, later than any other test's.
    manual_clock.advance(days=1 + uuid.uuid4().int % 3000)
    period = period_start(manual_clock.now(), timedelta(minutes=15))

    assert await enqueue_due(database, now=manual_clock.now(), items=items) == 1
    assert await enqueue_due(database, now=manual_clock.now(), items=items) == 0
    await run_until_idle(database, settings, types=["calendar.pull_all"], timeout=30)
    pulls = _pulls(owner, [*active, broken])
    assert sorted(p.integration for p in pulls) == sorted(active)
    assert {p.priority for p in pulls} == {BULK_PRIORITY}
    assert {p.dedupe_key for p in pulls} == {
        f"calendar.pull:{i}:{period.isoformat()}" for i in active
    }
    by_integration = {p.integration: str(p.organization_id) for p in pulls}
    assert by_integration[active[0]] == one["organization_id"]
    assert by_integration[active[1]] == two["organization_id"]

    # The fan-out run twice in one period queues nothing more.
    owner_sql(
        owner,
        "INSERT INTO background_jobs (organization_id, job_type, job_data, status, scheduled_for)"
        " VALUES (NULL, 'calendar.pull_all', '{}'::jsonb, 'pending', :at)",
        at=manual_clock.now(),
    )
    await run_until_idle(database, settings, types=["calendar.pull_all"], timeout=30)
    assert len(_pulls(owner, active)) == 2

    # The next period: one more pull each.
    manual_clock.advance(minutes=15)
    assert await enqueue_due(database, now=manual_clock.now(), items=items) == 1
    await run_until_idle(database, settings, types=["calendar.pull_all"], timeout=30)
    assert sorted(p.integration for p in _pulls(owner, [*active, broken])) == sorted(
        active + active
    )


# --- the e-mail reminder ---------------------------------------------------------------------


def _reminders(settings: Settings, to: str) -> list[str]:
    folder = Path(settings.data_dir) / "mail"
    subjects = []
    for path in folder.glob("*.eml") if folder.exists() else []:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if msg["To"] == to and str(msg["Subject"]).startswith("Reminder:"):
            subjects.append(str(msg["Subject"]))
    return sorted(subjects)


async def _run_reminders(database: Database, settings: Settings) -> None:
    await run_until_idle(database, settings, types=["calendar.reminder"], timeout=30)


async def test_reminder_sent_once_at_its_time_not_when_moved_or_cancelled(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    manual_clock: ManualClock,
) -> None:
    admin = await signup(client)
    h, me = admin["headers"], admin["email"]
    start = (manual_clock.now() + timedelta(days=1)).replace(microsecond=0)

    async def meeting(title: str, at: Any) -> dict[str, Any]:
        r = await client.post(
            "/api/v1/calendar/events",
            headers=h,
            json={
                "title": title,
                "start_time": at.isoformat(),
                "end_time": (at + timedelta(minutes=30)).isoformat(),
                "timezone": "America/Sao_Paulo",
                "reminder_minutes": 30,
                "video": "none",
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    kept = await meeting("Kept", start)
    moved = await meeting("Moved", start + timedelta(hours=2))
    cancelled = await meeting("Cancelled", start + timedelta(hours=4))
    jobs = owner_sql(
        owner,
        "SELECT job_data->>'event_id', scheduled_for FROM background_jobs"
        " WHERE job_type = 'calendar.reminder' AND organization_id = :o",
        o=admin["organization_id"],
    )
    at = {row[0]: row[1] for row in jobs}
    assert at[kept["id"]] == start - timedelta(minutes=30)
    assert at[moved["id"]] == start + timedelta(hours=2) - timedelta(minutes=30)

    # Moved a day later; the other cancelled.
    r = await client.patch(
        f"/api/v1/calendar/events/{moved['id']}",
        headers=h,
        json={
            "start_time": (start + timedelta(days=1, hours=2)).isoformat(),
            "end_time": (start + timedelta(days=1, hours=2, minutes=30)).isoformat(),
        },
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/api/v1/calendar/events/{cancelled['id']}", headers=h, json={"status": "cancelled"}
    )
    assert r.status_code == 200, r.text

    # Not yet: a minute before the reminder time nothing is sent.
    manual_clock.advance(seconds=(start - manual_clock.now()).total_seconds() - 31 * 60)
    await _run_reminders(database, settings)
    assert _reminders(settings, me) == []

    # At the chosen time: the kept meeting's reminder, once.
    manual_clock.advance(minutes=1)
    await _run_reminders(database, settings)
    assert len(_reminders(settings, me)) == 1
    assert "Kept" in _reminders(settings, me)[0]

    # Past the moved and cancelled meetings' old reminder times: nothing more.
    manual_clock.advance(hours=5)
    await _run_reminders(database, settings)
    sent = _reminders(settings, me)
    assert len(sent) == 1 and "Kept" in sent[0]
    skipped = owner_sql(
        owner,
        "SELECT job_data->>'event_id', result_data FROM background_jobs"
        " WHERE job_type = 'calendar.reminder' AND organization_id = :o AND status = 'completed'",
        o=admin["organization_id"],
    )
    outcome = {row[0]: row[1] for row in skipped}
    assert outcome[kept["id"]] == {"reminded": me}
    assert "skipped" in outcome[cancelled["id"]]

    # The moved meeting is reminded at its new time, once.
    manual_clock.advance(days=1)
    await _run_reminders(database, settings)
    await _run_reminders(database, settings)
    sent = _reminders(settings, me)
    assert len(sent) == 2 and sum("Moved" in s for s in sent) == 1
