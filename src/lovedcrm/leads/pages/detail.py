"""The lead page: its fields (edited in place, custom fields included), the stage, won,
lost and reopen; the first page of its timeline."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError
from lovedcrm.leads import activities as activities_service
from lovedcrm.leads import importing
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.models import Lead
from lovedcrm.leads.pages._common import (
    ACTIVE,
    FRIENDLY,
    LeadInPage,
    Lookups,
    definitions_of,
    field_errors,
    friendly,
    lookups_of,
    on_lead,
)
from lovedcrm.leads.pages._fields import (
    CUSTOM,
    EDITABLE,
    definition_of,
    dom_id,
    field_context,
    is_editable,
)
from lovedcrm.leads.schemas import LeadUpdateIn
from lovedcrm.web.kit import Member, Shell, is_htmx, page_router, parse_uuid, redirect, render

router = page_router()

TIMELINE_PAGE = 20
TIMELINE_TYPES = ("note", "task", "stage_change", "call", "email", "meeting", "message")


# --- the timeline as the page shows it -------------------------------------------------------


@dataclass
class Entry:
    """One timeline item as the page shows it."""

    activity: Any  # LeadActivity
    kind: str
    author: str | None
    due: datetime | None = None
    done: bool = False
    overdue: bool = False


def entries_of(items: list[Any], lookups: Lookups) -> list[Entry]:
    now = datetime.now().astimezone()
    out = []
    for a in items:
        meta = a.metadata_ or {}
        due = None
        if a.activity_type == "task" and isinstance(meta.get("due_at"), str):
            with contextlib.suppress(ValueError):
                due = datetime.fromisoformat(meta["due_at"])
                if due.tzinfo is None:
                    due = due.astimezone()
        done = bool(meta.get("done"))
        out.append(
            Entry(
                activity=a,
                kind=a.activity_type if a.activity_type in TIMELINE_TYPES else "other",
                author=lookups.member_by_id.get(a.user_id) if a.user_id else None,
                due=due,
                done=done,
                overdue=due is not None and not done and due < now,
            )
        )
    return out


async def timeline_page(
    session: AsyncSession, frame: Shell, lead_id: uuid.UUID, cursor: str | None = None
) -> activities_service.ActivityPage:
    return await activities_service.list_activities(
        session, frame.principal, lead_id, limit=TIMELINE_PAGE, cursor=cursor
    )


# --- the page ----------------------------------------------------------------------------------


async def lead_page(
    request: Request,
    session: AsyncSession,
    frame: Shell,
    lead: Lead,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    editing: str | None = None,
) -> HTMLResponse:
    """The lead page; with an error status, shown again with the messages of a form."""
    lookups = await lookups_of(session, frame)
    timeline = await timeline_page(session, frame, lead.id)
    principal = frame.principal
    errors, form = errors or {}, form or {}
    return render(
        request,
        "leads/detail.html",
        status_code,
        **frame.context(ACTIVE),
        lead=lead,
        lookups=lookups,
        stage=lookups.stage_by_id.get(lead.stage_id),
        assignee=lookups.member_by_id.get(lead.assigned_to) if lead.assigned_to else None,
        editable=EDITABLE,
        custom_names=[CUSTOM + d["key"] for d in definitions_of(frame)],
        editing=editing if editing and is_editable(frame, editing) else None,
        entries=entries_of(timeline.items, lookups),
        timeline_next=timeline.next_cursor,
        can_edit=leads_service.may_edit(principal, lead),
        can_assign=principal.can("leads:write_all"),
        can_delete=principal.can("leads:delete"),
        can_merge=principal.can("leads:write_all") and principal.can("leads:delete"),
        errors=errors,
        form=form,
        now_local=frame.i18n.local(datetime.now().astimezone()).strftime("%Y-%m-%dT%H:%M"),
        field_ctx=lambda name: field_context(
            frame,
            lead,
            name,
            editing=(editing == name),
            value=form.get(name),
            error=errors.get(name),
        ),
    )


@router.get("/leads/{lead_id}", response_class=HTMLResponse)
async def lead_detail(
    request: Request, frame: Member, session: SessionDep, lead: LeadInPage
) -> Response:
    return await lead_page(request, session, frame, lead, editing=request.query_params.get("edit"))


# --- edit in place -----------------------------------------------------------------------------


async def _field_fragment(
    request: Request,
    session: AsyncSession,
    frame: Shell,
    lead: Lead,
    f: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    """One field of the lead page (HTMX): shown, or its edit form."""
    return render(
        request,
        "leads/_field.html",
        status_code,
        **frame.context(ACTIVE),
        lead=lead,
        lookups=await lookups_of(session, frame),
        f=f,
    )


@router.get("/leads/{lead_id}/edit", response_class=HTMLResponse)
async def lead_edit_form(
    request: Request, frame: Member, session: SessionDep, lead: LeadInPage
) -> Response:
    name = request.query_params.get("field", "")
    if not is_editable(frame, name):
        return RedirectResponse(f"/leads/{lead.id}", status_code=303)
    if not is_htmx(request):
        query = urlencode({"edit": name})
        return RedirectResponse(f"/leads/{lead.id}?{query}#field-{dom_id(name)}", status_code=303)
    editing = request.query_params.get("cancel") != "1"
    f = field_context(frame, lead, name, editing=editing)
    return await _field_fragment(request, session, frame, lead, f)


def _custom_change(definition: dict[str, Any], raw: str) -> dict[str, Any]:
    """A custom field's typed value as a change for update_lead (empty removes it); the
    service checks it against the definition."""
    value = raw.strip()
    parsed: Any = None
    if definition.get("type") == "checkbox":
        parsed = value in ("1", "on", "true")
    elif value:
        parsed = importing.custom_value(definition, value)
    return {"custom_fields": {definition["key"]: parsed}}


def _edit_changes(name: str, raw: str, t: Any) -> tuple[dict[str, Any] | None, str | None]:
    """One field's new value as a change for update_lead, or the error to show."""
    value = raw.strip()
    if name in ("estimated_value", "probability_percentage", "assigned_to") and not value:
        return {name: None}, None
    if name == "estimated_value":
        try:
            parsed: Any = importing.parse_decimal(value)
        except (InvalidOperation, ValueError):
            return None, FRIENDLY[name](t)
    elif name == "probability_percentage":
        value = value.rstrip("%").strip()
        if not value.isdigit():
            return None, FRIENDLY[name](t)
        parsed = int(value)
    elif name == "assigned_to":
        parsed = parse_uuid(value)
        if parsed is None:
            return None, FRIENDLY[name](t)
    else:
        if not value:
            if name == "full_name":
                return None, FRIENDLY[name](t)
            return {name: None}, None
        parsed = value
    try:
        checked = LeadUpdateIn.model_validate({name: parsed})
    except PydanticValidationError:
        return None, friendly(name, t)
    return checked.model_dump(exclude_unset=True), None


@router.post("/leads/{lead_id}/edit", response_class=HTMLResponse)
async def lead_edit_submit(
    request: Request,
    frame: Member,
    session: SessionDep,
    lead: LeadInPage,
    field_name: Annotated[str, Form(alias="field", max_length=80)] = "",
    value: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    t = frame.i18n.gettext
    if not is_editable(frame, field_name):
        return RedirectResponse(f"/leads/{lead.id}", status_code=303)
    definition = definition_of(frame, field_name)
    changes: dict[str, Any] | None = None
    error: str | None = None
    if definition is not None:
        changes = _custom_change(definition, value)
    else:
        changes, error = _edit_changes(field_name, value, t)
    if changes is not None:
        try:
            lead = await on_lead(
                leads_service.update_lead(session, frame.principal, lead.id, changes)
            )
        except AppError as exc:
            if exc.status == 403:
                error = t("You cannot change this field.")
            else:
                errors = field_errors(exc, t, definitions_of(frame))
                error = next(iter(errors.values()), t("Check this field."))
    if not is_htmx(request):
        if error is None:
            return redirect(f"/leads/{lead.id}", t("Saved."))
        return await lead_page(
            request,
            session,
            frame,
            lead,
            status_code=422,
            editing=field_name,
            errors={field_name: error},
            form={field_name: value},
        )
    f = field_context(
        frame,
        lead,
        field_name,
        editing=error is not None,
        value=value if error else None,
        error=error,
    )
    return await _field_fragment(request, session, frame, lead, f, 422 if error else 200)


# --- stage, won, lost --------------------------------------------------------------------------


async def _update_and_back(
    request: Request,
    session: AsyncSession,
    frame: Shell,
    lead: Lead,
    changes: dict[str, Any],
    done: str,
) -> Response:
    try:
        await on_lead(leads_service.update_lead(session, frame.principal, lead.id, changes))
    except AppError as exc:
        if exc.status == 403:
            raise
        errors = field_errors(exc, frame.i18n.gettext)
        return await lead_page(request, session, frame, lead, status_code=422, errors=errors)
    return redirect(f"/leads/{lead.id}", done)


@router.post("/leads/{lead_id}/stage", response_class=HTMLResponse)
async def lead_stage(
    request: Request,
    frame: Member,
    session: SessionDep,
    lead: LeadInPage,
    stage_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    t = frame.i18n.gettext
    stage = parse_uuid(stage_id)
    if stage is None:
        errors = {"stage_id": FRIENDLY["stage_id"](t)}
        return await lead_page(request, session, frame, lead, status_code=422, errors=errors)
    return await _update_and_back(
        request, session, frame, lead, {"stage_id": stage}, t("Stage changed.")
    )


@router.post("/leads/{lead_id}/won", response_class=HTMLResponse)
async def lead_won(
    request: Request, frame: Member, session: SessionDep, lead: LeadInPage
) -> Response:
    done = frame.i18n.gettext("Lead marked as won. Congratulations!")
    return await _update_and_back(request, session, frame, lead, {"status": "converted"}, done)


@router.post("/leads/{lead_id}/lost", response_class=HTMLResponse)
async def lead_lost(
    request: Request,
    frame: Member,
    session: SessionDep,
    lead: LeadInPage,
    lost_reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    t = frame.i18n.gettext
    reason = lost_reason.strip()
    if not reason or len(reason) > 255:
        message = (
            t("Tell us why the lead was lost.")
            if not reason
            else t("Keep the reason under 255 characters.")
        )
        return await lead_page(
            request,
            session,
            frame,
            lead,
            status_code=422,
            errors={"lost_reason": message},
            form={"lost_reason": reason},
        )
    changes = {"status": "lost", "lost_reason": reason}
    return await _update_and_back(request, session, frame, lead, changes, t("Lead marked as lost."))


@router.post("/leads/{lead_id}/reopen", response_class=HTMLResponse)
async def lead_reopen(
    request: Request, frame: Member, session: SessionDep, lead: LeadInPage
) -> Response:
    changes = {"status": "active", "lost_reason": None}
    done = frame.i18n.gettext("Lead reopened.")
    return await _update_and_back(request, session, frame, lead, changes, done)
