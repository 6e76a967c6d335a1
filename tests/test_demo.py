"""The demo organization looks like a working week: every page has something true to show."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.demo import DEMO_TIMEZONE, build_demo

pytestmark = pytest.mark.usefixtures("manual_clock")


async def _rows(session: AsyncSession, sql: str, org_id: uuid.UUID) -> list[sa.Row[tuple]]:  # type: ignore[type-arg]
    return list((await session.execute(sa.text(sql), {"org": org_id})).all())


async def test_the_demo_is_a_business_with_a_week_behind_it(
    settings: Settings, database: Database, manual_clock: ManualClock
) -> None:
    domain = f"demo-{uuid.uuid4().hex[:8]}.example.com"
    async with tenant_transaction(database.sessionmaker, None) as session:
        org_id = await build_demo(session, settings, "demo-password-1", email=f"demo@{domain}")
    async with tenant_transaction(database.sessionmaker, org_id) as session:
        members = await _rows(
            session,
            "SELECT role FROM organization_members WHERE organization_id = :org AND is_active",
            org_id,
        )
        assert sorted(r.role for r in members) == ["admin", "sales", "sales"]
        stages = await _rows(
            session,
            "SELECT s.name, s.stage_order, count(l.id) AS leads, sum(l.estimated_value) AS value"
            " FROM pipeline_stages s LEFT JOIN leads l ON l.stage_id = s.id"
            " WHERE s.organization_id = :org GROUP BY s.id ORDER BY s.stage_order",
            org_id,
        )
        # Named in the organization's language (pt-BR), and no stage is empty.
        assert [s.name for s in stages] == ["Lead", "Contato", "Proposta", "Negociação", "Fechado"]
        assert all(s.leads >= 2 and s.value > 0 for s in stages)
        leads = await _rows(
            session,
            "SELECT status, assigned_to, lead_score, created_at, estimated_value FROM leads"
            " WHERE organization_id = :org",
            org_id,
        )
        statuses = [lead.status for lead in leads]
        assert statuses.count("converted") >= 2 and statuses.count("lost") >= 2
        assert len({lead.assigned_to for lead in leads}) == 3  # everyone sells
        assert all(lead.lead_score in (None, 0) for lead in leads)  # nothing scored it yet
        assert len({lead.created_at.date() for lead in leads}) >= 7  # not all created today
        assert any(lead.estimated_value % 1 for lead in leads)  # a value with cents
        # The way each lead came: stage changes on its timeline.
        moves = await _rows(
            session,
            "SELECT count(*) AS n FROM lead_activities WHERE organization_id = :org"
            " AND activity_type = 'stage_change'",
            org_id,
        )
        assert moves[0].n >= 20
        notes = await _rows(
            session,
            "SELECT count(*) AS n FROM lead_activities WHERE organization_id = :org"
            " AND activity_type = 'note'",
            org_id,
        )
        assert notes[0].n >= 5
        tasks = await _rows(
            session,
            "SELECT metadata FROM lead_activities WHERE organization_id = :org"
            " AND activity_type = 'task'",
            org_id,
        )
        zone = ZoneInfo(DEMO_TIMEZONE)
        today = manual_clock.now().astimezone(zone).date()
        due = [datetime.fromisoformat(t.metadata["due_at"]).astimezone(zone).date() for t in tasks]
        assert any(d == today for d in due) and any(d < today for d in due)
        assert any(d > today for d in due)
        inbound = await _rows(
            session,
            "SELECT count(*) AS n FROM background_jobs WHERE organization_id = :org"
            " AND job_type = 'whatsapp.inbound'",
            org_id,
        )
        assert inbound[0].n >= 3  # customers' messages, waiting for the worker
