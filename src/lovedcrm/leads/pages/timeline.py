"""The lead's timeline (more pages), notes and tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError
from lovedcrm.leads import activities as activities_service
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.models import Lead
from lovedcrm.leads.pages._common import ACTIVE, LeadInPage, lead_not_found, lookups_of, on_lead
from lovedcrm.leads.pages.detail import entries_of, lead_page, timeline_page
from lovedcrm.web.kit import Member, attempt, is_htmx, page_router, parse_uuid, redirect, render

router = page_router()


def _to_timeline(lead: Lead, done: str) -> Response:
    return redirect(f"/leads/{lead.id}#timeline", done)


@router.get("/leads/{lead_id}/timeline", response_class=HTMLResponse)
async def lead_timeline(
    request: Request, frame: Member, session: SessionDep, lead: LeadInPage
) -> Response:
    cursor = request.query_params.get("cursor") or None
    try:
        page = await attempt(session, timeline_page(session, frame, lead.id, cursor))
    except AppError:  # a stale cursor: the first page
        page = await timeline_page(session, frame, lead.id)
    lookups = await lookups_of(session, frame)
    ctx = {
        **frame.context(ACTIVE),
        "lead": lead,
        "entries": entries_of(page.items, lookups),
        "timeline_next": page.next_cursor,
        "can_edit": leads_service.may_edit(frame.principal, lead),
    }
    if is_htmx(request):
        return render(request, "leads/_timeline_items.html", **ctx)
    return render(request, "leads/timeline.html", **ctx)


@router.post("/leads/{lead_id}/notes", response_class=HTMLResponse)
async def lead_add_note(
    request: Request,
    frame: Member,
    session: SessionDep,
    lead: LeadInPage,
    description: Annotated[str, Form(max_length=20000)] = "",
) -> Response:
    t = frame.i18n.gettext
    if not description.strip():
        errors = {"note": t("Write something in the note first.")}
        return await lead_page(request, session, frame, lead, status_code=422, errors=errors)
    await on_lead(
        activities_service.create_activity(
            session, frame.principal, lead.id, activity_type="note", description=description
        )
    )
    return _to_timeline(lead, t("Note added."))


@router.post("/leads/{lead_id}/tasks", response_class=HTMLResponse)
async def lead_add_task(
    request: Request,
    frame: Member,
    session: SessionDep,
    lead: LeadInPage,
    title: Annotated[str, Form(max_length=255)] = "",
    due_at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    t = frame.i18n.gettext
    errors: dict[str, str] = {}
    if not title.strip():
        errors["task_title"] = t("Say what needs to be done.")
    due: datetime | None = None
    try:
        due = datetime.fromisoformat(due_at.strip())
    except ValueError:
        errors["task_due"] = t("Choose a date and time.")
    if errors or due is None:
        return await lead_page(
            request,
            session,
            frame,
            lead,
            status_code=422,
            errors=errors,
            form={"task_title": title, "task_due": due_at},
        )
    if due.tzinfo is None:  # datetime-local: the organization's time zone
        due = due.replace(tzinfo=frame.i18n.zone)
    await on_lead(
        activities_service.create_activity(
            session,
            frame.principal,
            lead.id,
            activity_type="task",
            title=title.strip(),
            metadata={"due_at": due.isoformat(), "done": False},
        )
    )
    return _to_timeline(lead, t("Task added."))


@router.post("/leads/{lead_id}/tasks/{activity_id}/done", response_class=HTMLResponse)
async def lead_task_done(
    activity_id: str,
    frame: Member,
    session: SessionDep,
    lead: LeadInPage,
    done: Annotated[str, Form(max_length=5)] = "1",
) -> Response:
    t = frame.i18n.gettext
    parsed = parse_uuid(activity_id)
    if parsed is None:
        raise lead_not_found()
    changes = {"done": done == "1"}
    await on_lead(activities_service.update_activity(session, frame.principal, parsed, changes))
    return _to_timeline(lead, t("Task done.") if done == "1" else t("Task open again."))
