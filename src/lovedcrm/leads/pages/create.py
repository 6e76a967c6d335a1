"""The create form: errors under the fields, the duplicate warning (create anyway)."""

from __future__ import annotations

from decimal import InvalidOperation
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError
from lovedcrm.leads import importing
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.pages._common import (
    ACTIVE,
    FRIENDLY,
    custom_message,
    definitions_of,
    field_errors,
    lookups_of,
)
from lovedcrm.leads.schemas import LeadIn
from lovedcrm.organizations import service as org_service
from lovedcrm.web.kit import Member, Shell, page_router, parse_uuid, redirect, render, require

router = page_router()

TEXT_FIELDS = ("full_name", "email", "phone", "company", "job_title", "source")
Writer = Annotated[Shell, Depends(require("leads:write"))]


def _custom_values(
    form: dict[str, str], definitions: list[dict[str, Any]], errors: dict[str, str], t: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for d in definitions:
        key = d["key"]
        raw = (form.get(f"custom_{key}") or "").strip()
        if d.get("type") == "checkbox":
            values[key] = raw in ("1", "on", "true")
            continue
        if not raw:
            continue
        value = importing.custom_value(d, raw)
        if d.get("type") == "number" and isinstance(value, str):
            errors[f"custom_{key}"] = custom_message(d, "must be a number", t)
            continue
        values[key] = value
    return values


def _lead_data(frame: Shell, form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A create form → LeadIn-checked data, or the errors by field."""
    t = frame.i18n.gettext
    errors: dict[str, str] = {}
    data: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = (form.get(name) or "").strip()
        if value:
            data[name] = value
    if "full_name" not in data:
        errors["full_name"] = FRIENDLY["full_name"](t)
    raw_value = (form.get("estimated_value") or "").strip()
    if raw_value:
        try:
            data["estimated_value"] = importing.parse_decimal(raw_value)
        except (InvalidOperation, ValueError):
            errors["estimated_value"] = FRIENDLY["estimated_value"](t)
    raw_prob = (form.get("probability_percentage") or "").strip().rstrip("%")
    if raw_prob:
        if raw_prob.isdigit() and 0 <= int(raw_prob) <= 100:
            data["probability_percentage"] = int(raw_prob)
        else:
            errors["probability_percentage"] = FRIENDLY["probability_percentage"](t)
    if (form.get("assigned_to") or "").strip() == "none":
        # Nobody on purpose; an empty choice leaves it to the assignment setting.
        data["assigned_to"] = None
        form = {k: v for k, v in form.items() if k != "assigned_to"}
    for name in ("stage_id", "assigned_to"):
        raw = (form.get(name) or "").strip()
        if raw:
            parsed = parse_uuid(raw)
            if parsed is None:
                errors[name] = FRIENDLY[name](t)
            else:
                data[name] = parsed
    custom = _custom_values(form, definitions_of(frame), errors, t)
    if custom:
        data["custom_fields"] = custom
    try:
        checked = LeadIn.model_validate({k: v for k, v in data.items() if k not in errors})
    except PydanticValidationError as exc:
        for key, message in field_errors(exc, t).items():
            errors.setdefault(key, message)
        return data, errors
    if errors:
        return data, errors
    return checked.model_dump(exclude_unset=True, exclude={"allow_duplicate"}), errors


async def _form_page(
    request: Request,
    session: AsyncSession,
    frame: Shell,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    candidates: list[dict[str, Any]] | None = None,
    hidden_candidates: int = 0,
    status_code: int = 200,
) -> HTMLResponse:
    org_settings = frame.org.settings if frame.org else None
    return render(
        request,
        "leads/new.html",
        status_code,
        **frame.context(ACTIVE),
        form=form or {},
        errors=errors or {},
        lookups=await lookups_of(session, frame),
        definitions=definitions_of(frame),
        candidates=candidates,
        hidden_candidates=hidden_candidates,
        can_assign=frame.principal.can("leads:write_all"),
        round_robin=org_service.mode_of(org_settings) == org_service.ROUND_ROBIN,
    )


@router.get("/leads/new", response_class=HTMLResponse)
async def lead_new(request: Request, frame: Writer, session: SessionDep) -> Response:
    return await _form_page(request, session, frame)


@router.post("/leads", response_class=HTMLResponse)
async def lead_create(request: Request, frame: Member, session: SessionDep) -> Response:
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    form.pop("csrf_token", None)
    data, errors = _lead_data(frame, form)
    if errors:
        return await _form_page(request, session, frame, form=form, errors=errors, status_code=422)
    data["allow_duplicate"] = form.get("allow_duplicate") in ("1", "on", "true")
    try:
        lead = await leads_service.create_lead(session, frame.principal, data)
    except AppError as exc:
        if exc.code == "duplicate_lead":
            return await _form_page(
                request,
                session,
                frame,
                form=form,
                candidates=list(exc.extra.get("candidates", [])),
                hidden_candidates=int(exc.extra.get("hidden_candidates", 0)),
                status_code=409,
            )
        if exc.status in (403, 404):
            raise
        return await _form_page(
            request,
            session,
            frame,
            form=form,
            errors=field_errors(exc, frame.i18n.gettext, definitions_of(frame)),
            status_code=exc.status,
        )
    return redirect(f"/leads/{lead.id}", frame.i18n.gettext("Lead created."))
