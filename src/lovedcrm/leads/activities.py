"""A lead's activity timeline: notes, calls, e-mails, meetings, tasks and system entries
(stage changes). Visibility follows the lead's: whoever cannot see a lead cannot see its
activities; adding one needs the right to edit the lead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

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
