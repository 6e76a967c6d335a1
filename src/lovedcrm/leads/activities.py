"""A lead's activity timeline: notes, calls, e-mails, meetings, tasks and system entries
(stage changes). Visibility follows the lead's: whoever cannot see a lead cannot see its
activities; adding one needs the right to edit the lead.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.pagination import keyset_after, page_of
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import save_new
from lovedcrm.leads import access as leads
from lovedcrm.leads.models import Lead, LeadActivity

# Kinds a person writes (and may edit or delete); other kinds are written by the system.
USER_TYPES = ("note", "call", "email", "meeting", "task")
_AUDITED = ("activity_type", "title", "description", "metadata_", "duration_minutes")


@dataclass
class ActivityPage:
    items: list[LeadActivity]
    next_cursor: str | None


def _snapshot(activity: LeadActivity) -> dict[str, Any]:
    return {("metadata" if f == "metadata_" else f): getattr(activity, f) for f in _AUDITED} | {
        "lead_id": activity.lead_id
    }


async def record_activity(
    session: AsyncSession,
    lead: Lead,
    *,
    user_id: uuid.UUID | None,
    activity_type: str,
    title: str,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    duration_minutes: int | None = None,
) -> LeadActivity:
    """Write an activity, bump the lead's ``last_activity_at`` and emit ``activity.created``."""
    activity = LeadActivity(
        organization_id=lead.organization_id,
        lead_id=lead.id,
        user_id=user_id,
        activity_type=activity_type,
        title=title,
        description=description,
        metadata_=metadata or {},
        duration_minutes=duration_minutes,
    )
    await save_new(session, activity)
    lead.last_activity_at = activity.created_at
    await session.flush()
    await session.refresh(lead)  # the update also refreshed server-side columns
    await emit(
        session,
        DomainEvent(
            type="activity.created",
            organization_id=lead.organization_id,
            data={
                "activity_id": str(activity.id),
                "lead_id": str(lead.id),
                "activity_type": activity_type,
                "title": title,
            },
            actor_id=user_id,
        ),
    )
    return activity


@dataclass(frozen=True)
class NewActivity:
    """One entry for :func:`record_activities`."""

    lead: Lead
    activity_type: str
    title: str
    description: str | None = None
    metadata: dict[str, Any] | None = None
    user_id: uuid.UUID | None = None


async def record_activities(
    session: AsyncSession, entries: Sequence[NewActivity]
) -> list[uuid.UUID]:
    """:func:`record_activity` for many entries of one organization at once (one INSERT, one
    UPDATE of the leads' ``last_activity_at``), then ``activity.created`` for each, in order.
    Returns their ids."""
    if not entries:
        return []
    ids = [uuid.uuid4() for _ in entries]
    rows = [
        {
            "id": str(activity_id),
            "lead_id": str(e.lead.id),
            "user_id": str(e.user_id) if e.user_id else None,
            "activity_type": e.activity_type,
            "title": e.title,
            "description": e.description,
            "metadata": e.metadata or {},
        }
        for activity_id, e in zip(ids, entries, strict=True)
    ]
    await session.execute(
        _INSERT_MANY,
        {"org": entries[0].lead.organization_id, "rows": json.dumps(rows, default=str)},
    )
    leads_by_id = {e.lead.id: e.lead for e in entries}
    # The same moment record_activity gives the lead: the activities' created_at (now()).
    bumped = await session.execute(
        update(Lead)
        .where(
            Lead.organization_id == entries[0].lead.organization_id,
            Lead.id.in_(list(leads_by_id)),
        )
        .values(last_activity_at=func.now(), updated_at=func.now())
        .returning(Lead.id, Lead.last_activity_at, Lead.updated_at, Lead.version)
        .execution_options(synchronize_session=False)
    )
    for row in bumped:  # the loaded leads show what the database now holds
        for name in ("last_activity_at", "updated_at", "version"):
            set_committed_value(leads_by_id[row.id], name, getattr(row, name))
    for n, (activity_id, e) in enumerate(zip(ids, entries, strict=True)):
        if n % 10 == 9:
            await asyncio.sleep(0)  # a long batch lets the process's other work run
        await emit(
            session,
            DomainEvent(
                type="activity.created",
                organization_id=e.lead.organization_id,
                data={
                    "activity_id": str(activity_id),
                    "lead_id": str(e.lead.id),
                    "activity_type": e.activity_type,
                    "title": e.title,
                },
                actor_id=e.user_id,
            ),
        )
    return ids


# Many activities of one organization in one INSERT: the rows as one JSON array (one
# parameter, one statement text whatever the number of rows).
_INSERT_MANY = text(
    """
    INSERT INTO lead_activities
        (id, organization_id, lead_id, user_id, activity_type, title, description, metadata)
    SELECT r.id, :org, r.lead_id, r.user_id, r.activity_type, r.title, r.description,
           COALESCE(r.metadata, '{}')
      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
           id uuid, lead_id uuid, user_id uuid, activity_type text, title text,
           description text, metadata jsonb)
    """
)


def _task_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A task's metadata: ``due_at`` an ISO datetime (required) and ``done`` a boolean."""
    errors = []
    due = metadata.get("due_at")
    try:
        if not isinstance(due, str):
            raise ValueError(due)
        datetime.fromisoformat(due)
    except ValueError:
        errors.append({"field": "metadata.due_at", "message": "must be an ISO 8601 datetime"})
    done = metadata.setdefault("done", False)
    if not isinstance(done, bool):
        errors.append({"field": "metadata.done", "message": "must be true or false"})
    if errors:
        raise ValidationFailed(
            "The task has invalid fields: " + ", ".join(e["field"] for e in errors),
            extra={"errors": errors},
        )
    return metadata


def _default_title(activity_type: str, description: str | None) -> str:
    if description:
        first = description.strip().splitlines()[0] if description.strip() else ""
        if first:
            return first[:120]
    return activity_type.capitalize()


async def create_activity(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    *,
    activity_type: str,
    title: str | None = None,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    duration_minutes: int | None = None,
) -> LeadActivity:
    if activity_type not in USER_TYPES:
        raise ValidationFailed(
            f"Unknown activity type: {activity_type}", code="invalid_activity_type"
        )
    if activity_type == "note" and not (description and description.strip()):
        raise ValidationFailed(
            "A note needs a description.",
            extra={"errors": [{"field": "description", "message": "is required"}]},
        )
    metadata = dict(metadata or {})
    if activity_type == "task":
        metadata = _task_metadata(metadata)
    lead = await leads.editable_lead(session, principal, lead_id)
    activity = await record_activity(
        session,
        lead,
        user_id=principal.user_id,
        activity_type=activity_type,
        title=title or _default_title(activity_type, description),
        description=description,
        metadata=metadata,
        duration_minutes=duration_minutes,
    )
    await audit.record(
        session,
        action="create",
        resource_type="lead_activity",
        resource_id=activity.id,
        organization_id=activity.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(None, _snapshot(activity)),
    )
    return activity


async def list_activities(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    *,
    limit: int = 50,
    cursor: str | None = None,
    activity_type: str | None = None,
) -> ActivityPage:
    """The lead's timeline, newest first."""
    await leads.get_lead(session, principal, lead_id)
    query = select(LeadActivity).where(
        LeadActivity.organization_id == principal.org(), LeadActivity.lead_id == lead_id
    )
    if activity_type:
        query = query.where(LeadActivity.activity_type == activity_type)
    sort = "-created_at"
    query = keyset_after(
        query,
        cursor,
        sort=sort,
        key=LeadActivity.created_at,
        id_col=LeadActivity.id,
        parse=datetime.fromisoformat,
        descending=True,
    )
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    rows, cursor_out = page_of(rows, limit, sort=sort, key_of=lambda a: a.created_at)
    return ActivityPage(items=rows, next_cursor=cursor_out)


async def _changeable(
    session: AsyncSession, principal: Principal, activity_id: uuid.UUID
) -> tuple[LeadActivity, Lead]:
    """An activity the principal may edit or delete: on a lead they see, written by a person,
    and their own unless they hold ``leads:write_all``."""
    principal.require("leads:write")
    activity = await get_in_org(
        session,
        LeadActivity,
        activity_id,
        principal,
        NotFound("No activity with that id.", code="activity_not_found"),
    )
    try:
        lead = await leads.get_lead(session, principal, activity.lead_id)
    except NotFound as exc:
        raise NotFound("No activity with that id.", code="activity_not_found") from exc
    if activity.activity_type not in USER_TYPES:
        raise Conflict(
            f"A '{activity.activity_type}' entry is written by the system and cannot be changed.",
            code="activity_not_editable",
        )
    if activity.user_id != principal.user_id and not principal.can("leads:write_all"):
        raise Forbidden(
            "You can only change your own activities.",
            code="permission_denied",
            extra={"permission": "leads:write_all"},
        )
    return activity, lead


async def update_activity(
    session: AsyncSession, principal: Principal, activity_id: uuid.UUID, changes: dict[str, Any]
) -> LeadActivity:
    activity, _ = await _changeable(session, principal, activity_id)
    before = _snapshot(activity)
    if (
        "description" in changes
        and activity.activity_type == "note"
        and not (changes["description"] or "").strip()
    ):
        raise ValidationFailed(
            "A note needs a description.",
            extra={"errors": [{"field": "description", "message": "is required"}]},
        )
    if "metadata" in changes:
        metadata = {**(activity.metadata_ or {}), **(changes.pop("metadata") or {})}
        if activity.activity_type == "task":
            metadata = _task_metadata(metadata)
        activity.metadata_ = metadata
    if "done" in changes:
        done = changes.pop("done")
        if activity.activity_type != "task":
            raise ValidationFailed(
                "Only a task can be marked done.",
                extra={"errors": [{"field": "done", "message": "only for tasks"}]},
            )
        activity.metadata_ = {**(activity.metadata_ or {}), "done": bool(done)}
    for key in ("title", "description", "duration_minutes"):
        if key in changes:
            value = changes[key]
            if key == "title" and not value:
                continue
            setattr(activity, key, value)
    await session.flush()
    await audit.record(
        session,
        action="update",
        resource_type="lead_activity",
        resource_id=activity.id,
        organization_id=activity.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(before, _snapshot(activity)),
    )
    return activity


async def delete_activity(
    session: AsyncSession, principal: Principal, activity_id: uuid.UUID
) -> None:
    activity, lead = await _changeable(session, principal, activity_id)
    before = _snapshot(activity)
    await session.delete(activity)
    await session.flush()
    latest = await session.execute(
        select(func.max(LeadActivity.created_at)).where(LeadActivity.lead_id == lead.id)
    )
    lead.last_activity_at = latest.scalar_one_or_none()
    await audit.record_by(
        session, principal, "delete", "lead_activity", activity_id, audit.diff(before, None)
    )
