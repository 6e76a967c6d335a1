"""HTML pages for leads: the list (sort, filters, keyset pages, bulk actions), the create
form (with the duplicate warning), the lead page (edit in place, stage, won/lost, timeline,
notes, tasks, merge, delete, custom fields) and the import wizard (upload → mapping →
progress).

Thin: every rule (scope, permissions, validation, duplicates) lives in ``leads.service``,
``leads.activities``, ``leads.dedup`` and ``leads.importing``; these views translate forms
into their calls and their errors into words under the fields.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth import team
from lovedcrm.config import Settings
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.leads import activities as activities_service
from lovedcrm.leads import assignment, dedup, importing
from lovedcrm.leads import service as leads_service
from lovedcrm.leads import stages as stages_service
from lovedcrm.leads.models import LEAD_STATUSES, Lead
from lovedcrm.leads.schemas import LeadIn, LeadSort, LeadUpdateIn
from lovedcrm.organizations import custom_fields
from lovedcrm.organizations import service as org_service
from lovedcrm.web.render import Shell, flash, page_frame, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
TIMELINE_PAGE = 20
MERGE_RESULTS = 10
# Sort keys of the list page → the service's sort names.
SORTS = {
    "name": "full_name",
    "company": "company",
    "stage": "stage",
    "value": "estimated_value",
    "score": "lead_score",
    "assignee": "assignee",
    "activity": "last_activity_at",
    "created": "created_at",
}
DEFAULT_SORT = "-created"
# Fields that can be edited in place on the lead page.
EDITABLE = (
    "full_name",
    "email",
    "phone",
    "company",
    "job_title",
    "source",
    "estimated_value",
    "probability_percentage",
    "assigned_to",
)
TEXT_FIELDS = ("full_name", "email", "phone", "company", "job_title", "source")
# A custom field is edited in place as "custom:<key>".
CUSTOM = "custom:"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
TIMELINE_TYPES = ("note", "task", "stage_change", "call", "email", "meeting", "message")


# --- helpers -------------------------------------------------------------------------------


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def _int(value: str | None, low: int, high: int) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return max(low, min(high, number))


def _decimal(raw: str) -> Decimal:
    """``1500``, ``1.500,50``, ``R$ 1.500`` → Decimal (the importer's rules)."""
    return importing.parse_decimal(raw)


def _login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


def _message(
    request: Request, frame: Shell, status_code: int, title: str, message: str
) -> HTMLResponse:
    return render(
        request,
        "leads/message.html",
        status_code,
        **frame.context("leads"),
        title=title,
        message=message,
    )


def _error_page(request: Request, frame: Shell, exc: AppError) -> HTMLResponse:
    t = frame.i18n.gettext
    if exc.status == 404:
        return _not_found(request, frame)
    if exc.status == 403:
        return _message(
            request,
            frame,
            403,
            t("No access"),
            t("You do not have permission to do this. Ask an admin of your organization."),
        )
    return _message(request, frame, exc.status, t("Something went wrong"), t(exc.detail))


def _not_found(request: Request, frame: Shell) -> HTMLResponse:
    t = frame.i18n.gettext
    return _message(
        request,
        frame,
        404,
        t("Lead not found"),
        t("This lead does not exist, was deleted, or is not visible to you."),
    )


@dataclass
class Lookups:
    """Names the pages show for ids: stages and members."""

    stages: list[Any]  # PipelineStage, in pipeline order
    members: list[tuple[uuid.UUID, str]]  # (user id, name) of active members
    stage_by_id: dict[uuid.UUID, Any] = field(default_factory=dict)
    member_by_id: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def active_stages(self) -> list[Any]:
        return [s for s in self.stages if s.is_active]


async def _lookups(session: AsyncSession, frame: Shell) -> Lookups:
    stages = await stages_service.list_stages(session, frame.principal)
    members: list[tuple[uuid.UUID, str]] = []
    everyone: dict[uuid.UUID, str] = {}
    if frame.principal.can("members:read"):
        for member, user in await team.list_members(session, frame.principal):
            everyone[user.id] = user.full_name or user.email
            if member.is_active:
                members.append((user.id, user.full_name or user.email))
    else:
        everyone[frame.principal.user_id] = frame.principal.user.full_name
        members.append((frame.principal.user_id, frame.principal.user.full_name))
    return Lookups(
        stages=stages,
        members=sorted(members, key=lambda m: m[1].lower()),
        stage_by_id={s.id: s for s in stages},
        member_by_id=everyone,
    )


# --- the list --------------------------------------------------------------------------------


@dataclass
class ListFilters:
    stage: str = ""
    assignee: str = ""
    source: str = ""
    status: str = ""
    score_min: str = ""
    score_max: str = ""
    q: str = ""
    sort: str = DEFAULT_SORT

    def query(self, **changes: str | None) -> str:
        """The page's query string with ``changes`` applied (None drops a key)."""
        values: dict[str, str | None] = {
            "q": self.q,
            "stage": self.stage,
            "assignee": self.assignee,
            "source": self.source,
            "status": self.status,
            "score_min": self.score_min,
            "score_max": self.score_max,
            "sort": self.sort if self.sort != DEFAULT_SORT else "",
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v})

    def sort_link(self, key: str) -> str:
        """Ascending on the first click (newest first for dates), then the other way."""
        first = f"-{key}" if key in ("created", "activity", "score", "value") else key
        current = self.sort
        target = ("-" + key if current == key else key) if current.lstrip("-") == key else first
        return "/leads?" + self.query(sort=target, cursor=None)

    def sort_state(self, key: str) -> str:
        if self.sort.lstrip("-") != key:
            return "none"
        return "descending" if self.sort.startswith("-") else "ascending"

    @property
    def active(self) -> bool:
        return any(
            (
                self.q,
                self.stage,
                self.assignee,
                self.source,
                self.status,
                self.score_min,
                self.score_max,
            )
        )

    def service_kwargs(self, principal_id: uuid.UUID) -> dict[str, Any]:
        assignee = principal_id if self.assignee == "me" else _uuid(self.assignee)
        name = self.sort.lstrip("-")
        service_sort = SORTS.get(name, "created_at")
        return {
            "stage_id": _uuid(self.stage),
            "assigned_to": assignee,
            "source": self.source.strip() or None,
            "status": self.status if self.status in LEAD_STATUSES else None,
            "score_min": _int(self.score_min, 0, 100),
            "score_max": _int(self.score_max, 0, 100),
            "q": self.q.strip()[:200] or None,
            "sort": ("-" if self.sort.startswith("-") else "") + service_sort,
        }

    def export_url(self, principal_id: uuid.UUID) -> str:
        kwargs = self.service_kwargs(principal_id)
        params = {
            "stage_id": kwargs["stage_id"],
            "assigned_to": kwargs["assigned_to"],
            "source": kwargs["source"],
            "status": kwargs["status"],
            "score_min": kwargs["score_min"],
            "score_max": kwargs["score_max"],
            "q": kwargs["q"],
        }
        if kwargs["sort"] in get_args(LeadSort):
            params["sort"] = kwargs["sort"]
        clean = {k: str(v) for k, v in params.items() if v is not None}
        return "/api/v1/leads/export.csv" + ("?" + urlencode(clean) if clean else "")


def _filters_from(request: Request) -> ListFilters:
    params = request.query_params
    sort = params.get("sort") or DEFAULT_SORT
    if sort.lstrip("-") not in SORTS:
        sort = DEFAULT_SORT
    return ListFilters(
        stage=params.get("stage", "")[:64],
        assignee=params.get("assignee", "")[:64],
        source=params.get("source", "")[:100],
        status=params.get("status", "")[:20],
        score_min=params.get("score_min", "")[:3],
        score_max=params.get("score_max", "")[:3],
        q=params.get("q", "")[:200],
        sort=sort,
    )


@router.get("/leads", response_class=HTMLResponse)
async def leads_list(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    filters = _filters_from(request)
    cursor = request.query_params.get("cursor") or None
    error = None
    try:
        lookups = await _lookups(session, frame)
        try:
            async with session.begin_nested():
                page = await leads_service.list_leads(
                    session,
                    frame.principal,
                    limit=PAGE_SIZE,
                    cursor=cursor,
                    **filters.service_kwargs(frame.principal.user_id),
                )
        except AppError as exc:
            if exc.status != 400:  # a stale cursor: show the first page instead
                raise
            error = frame.i18n.gettext("That page link expired. Here is the first page.")
            page = await leads_service.list_leads(
                session,
                frame.principal,
                limit=PAGE_SIZE,
                **filters.service_kwargs(frame.principal.user_id),
            )
            cursor = None
    except AppError as exc:
        return _error_page(request, frame, exc)
    principal = frame.principal
    return render(
        request,
        "leads/list.html",
        **frame.context("leads"),
        leads=page.items,
        next_cursor=page.next_cursor,
        next_url="/leads?" + filters.query(cursor=page.next_cursor) if page.next_cursor else None,
        first_url="/leads?" + filters.query() if cursor else None,
        filters=filters,
        lookups=lookups,
        statuses=LEAD_STATUSES,
        sorts=SORTS,
        list_error=error,
        export_url=filters.export_url(principal.user_id) if principal.can("leads:export") else None,
        can_import=principal.can("leads:import"),
        can_write=principal.can("leads:write"),
        can_assign=principal.can("leads:write_all"),
        can_delete=principal.can("leads:delete"),
        back=filters.query(),
    )


@router.post("/leads/bulk")
async def leads_bulk(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    action: Annotated[str, Form(max_length=20)] = "",
    ids: Annotated[list[str] | None, Form()] = None,
    assignee_id: Annotated[str, Form(max_length=64)] = "",
    stage_id: Annotated[str, Form(max_length=64)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    target = "/leads" + ("?" + back if back else "")
    response = RedirectResponse(target, status_code=303)
    lead_ids = [i for i in (_uuid(x) for x in (ids or [])[:500]) if i is not None]
    if not lead_ids:
        flash(response, t("Select at least one lead first."), "error")
        return response
    changes: dict[str, Any] | None = None
    if action == "assign":
        member = _uuid(assignee_id)
        if member is None and assignee_id != "none":
            flash(response, t("Choose who the leads go to."), "error")
            return response
        changes = {"assigned_to": member}
    elif action == "stage":
        stage = _uuid(stage_id)
        if stage is None:
            flash(response, t("Choose the stage to move the leads to."), "error")
            return response
        changes = {"stage_id": stage}
    elif action != "delete":
        flash(response, t("Choose an action."), "error")
        return response
    done = 0
    for lead_id in lead_ids:
        try:
            async with session.begin_nested():
                if changes is None:
                    await leads_service.delete_lead(session, frame.principal, lead_id)
                else:
                    await leads_service.update_lead(
                        session, frame.principal, lead_id, dict(changes)
                    )
            done += 1
        except AppError:
            continue
    total = len(lead_ids)
    if action == "delete":
        text = frame.i18n.ngettext(
            "%(done)d of %(total)d lead deleted.", "%(done)d of %(total)d leads deleted.", total
        )
    else:
        text = frame.i18n.ngettext(
            "%(done)d of %(total)d lead updated.", "%(done)d of %(total)d leads updated.", total
        )
    message = text % {"done": done, "total": total}
    if done < total:
        message += " " + t("The others could not be changed: you may not have permission.")
    flash(response, message, "success" if done == total else "error")
    return response


# --- creating --------------------------------------------------------------------------------

# Field errors in words a person understands (t: the request's gettext).
FRIENDLY: dict[str, Callable[[Any], str]] = {
    "full_name": lambda t: t("Give the lead a name."),
    "email": lambda t: t("Enter a valid e-mail, like ana@empresa.com.br."),
    "phone": lambda t: t("Enter a valid phone number with the area code, like (11) 98765-4321."),
    "company": lambda t: t("The company name is too long."),
    "job_title": lambda t: t("The job title is too long."),
    "source": lambda t: t("The source is too long."),
    "estimated_value": lambda t: t("Use a positive amount, like 1.500,00."),
    "probability_percentage": lambda t: t("Use a whole number from 0 to 100."),
    "stage_id": lambda t: t("Choose a stage from the list."),
    "assigned_to": lambda t: t("Choose a member of your organization."),
    "lost_reason": lambda t: t("Tell us why the lead was lost."),
}


def _friendly(name: str, t: Any) -> str:
    if name.startswith("custom_fields"):
        return str(t("Check this field: the value does not fit its type."))
    return FRIENDLY[name](t) if name in FRIENDLY else str(t("Check this field."))


def _custom_message(definition: dict[str, Any] | None, message: str, t: Any) -> str:
    """A custom field's error (leads.service's validation) naming the field."""
    if definition is None:
        return str(t("This custom field no longer exists. Reload the page."))
    name = {"field": definition.get("label") or definition["key"]}
    if message == "is required":
        return str(t("%(field)s is required: fill it in.")) % name
    kind = definition.get("type", "text")
    if kind == "number":
        return str(t("%(field)s: use a number, like 12 or 1500.50.")) % name
    if kind == "date":
        return str(t("%(field)s: use a date, like 2026-11-25.")) % name
    if kind == "checkbox":
        return str(t("%(field)s: choose yes or no.")) % name
    if kind == "select":
        options = ", ".join(str(o) for o in definition.get("options") or [])
        return str(t("%(field)s: choose one of the options: %(options)s.")) % {
            **name,
            "options": options,
        }
    return str(t("%(field)s: use text.")) % name


def _field_errors(
    exc: Exception, t: Any, definitions: list[dict[str, Any]] | None = None
) -> dict[str, str]:
    """Errors by form field from a pydantic error or a service's ValidationFailed (custom
    fields named by their label when ``definitions`` are given)."""
    by_key = {d["key"]: d for d in definitions or []}
    errors: dict[str, str] = {}
    if isinstance(exc, PydanticValidationError):
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            name = ".".join(loc) or "form"
            key = name.replace("custom_fields.", "custom_") if loc else "form"
            errors.setdefault(key, _friendly(name, t))
    elif isinstance(exc, AppError):
        for err in exc.extra.get("errors", []) or []:
            name = str(err.get("field", "form"))
            key = name.replace("custom_fields.", "custom_")
            if definitions is not None and name.startswith("custom_fields"):
                definition = by_key.get(name.removeprefix("custom_fields."))
                errors.setdefault(key, _custom_message(definition, str(err.get("message")), t))
            else:
                errors.setdefault(key, _friendly(name, t))
        if not errors:
            errors["form"] = str(t(exc.detail))
    return errors


def _custom_definitions(frame: Shell) -> list[dict[str, Any]]:
    return custom_fields.custom_field_definitions(frame.org)


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
            errors[f"custom_{key}"] = _custom_message(d, "must be a number", t)
            continue
        values[key] = value
    return values


async def _lead_data(
    request: Request, frame: Shell, form: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
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
            data["estimated_value"] = _decimal(raw_value)
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
            parsed = _uuid(raw)
            if parsed is None:
                errors[name] = FRIENDLY[name](t)
            else:
                data[name] = parsed
    definitions = _custom_definitions(frame)
    custom = _custom_values(form, definitions, errors, t)
    if custom:
        data["custom_fields"] = custom
    try:
        checked = LeadIn.model_validate({k: v for k, v in data.items() if k not in errors})
    except PydanticValidationError as exc:
        for key, message in _field_errors(exc, t).items():
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
    lookups = await _lookups(session, frame)
    return render(
        request,
        "leads/new.html",
        status_code,
        **frame.context("leads"),
        form=form or {},
        errors=errors or {},
        lookups=lookups,
        definitions=_custom_definitions(frame),
        candidates=candidates,
        hidden_candidates=hidden_candidates,
        can_assign=frame.principal.can("leads:write_all"),
        round_robin=_round_robin(frame),
    )


def _round_robin(frame: Shell) -> bool:
    org_settings = frame.org.settings if frame.org else None
    return assignment.mode_of(org_settings) == org_service.ROUND_ROBIN


@router.get("/leads/new", response_class=HTMLResponse)
async def lead_new(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    if not frame.principal.can("leads:write"):
        return _error_page(request, frame, AppError("", status=403))
    return await _form_page(request, session, frame)


@router.post("/leads", response_class=HTMLResponse)
async def lead_create(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    form.pop("csrf_token", None)
    data, errors = await _lead_data(request, frame, form)
    if errors:
        return await _form_page(request, session, frame, form=form, errors=errors, status_code=422)
    data["allow_duplicate"] = form.get("allow_duplicate") in ("1", "on", "true")
    try:
        async with session.begin_nested():
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
            return _error_page(request, frame, exc)
        return await _form_page(
            request,
            session,
            frame,
            form=form,
            errors=_field_errors(exc, frame.i18n.gettext, _custom_definitions(frame)),
            status_code=exc.status,
        )
    response = RedirectResponse(f"/leads/{lead.id}", status_code=303)
    flash(response, frame.i18n.gettext("Lead created."))
    return response


# --- the lead page ---------------------------------------------------------------------------


async def _lead_or_none(session: AsyncSession, frame: Shell, lead_id: str) -> Lead | None:
    parsed = _uuid(lead_id)
    if parsed is None:
        return None
    try:
        async with session.begin_nested():
            return await leads_service.get_lead(session, frame.principal, parsed)
    except NotFound:
        return None


def _field_value(lead: Lead, name: str) -> str:
    """The value an edit form starts with."""
    value = getattr(lead, name)
    if value is None:
        return ""
    if name == "estimated_value":
        return f"{value:.2f}".replace(".", ",")
    return str(value)


def _definition_of(frame: Shell, name: str) -> dict[str, Any] | None:
    """The custom field an in-place name ("custom:<key>") stands for, if it is defined."""
    if not name.startswith(CUSTOM):
        return None
    key = name.removeprefix(CUSTOM)
    return next((d for d in _custom_definitions(frame) if d["key"] == key), None)


def _editable(frame: Shell, name: str) -> bool:
    return name in EDITABLE or _definition_of(frame, name) is not None


def _dom_id(name: str) -> str:
    """The field's element id (a key with other characters, possible in older
    definitions, is hashed so the HTMX target stays a valid selector)."""
    if not name.startswith(CUSTOM):
        return name
    key = name.removeprefix(CUSTOM)
    return "cf-" + (
        key if _SAFE_ID.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()[:16]
    )


def _custom_input(definition: dict[str, Any], value: Any) -> str:
    """A custom value as its edit input starts with."""
    if value is None:
        return ""
    kind = definition.get("type", "text")
    if kind == "checkbox":
        return "1" if value is True else ""
    if kind == "number" and isinstance(value, float):
        return str(value).replace(".", ",")  # "1.5" would read as 15 (thousands)
    return str(value)


def _custom_display(frame: Shell, definition: dict[str, Any], value: Any) -> str | None:
    """A custom value for people (None when empty)."""
    if value is None or value == "":
        return None
    kind = definition.get("type", "text")
    t = frame.i18n.gettext
    if kind == "checkbox":
        return str(t("Yes") if value is True else t("No"))
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return frame.i18n.number(value)
    if kind == "date" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return frame.i18n.date(date.fromisoformat(value))
    return str(value)


def _field_context(
    frame: Shell,
    lead: Lead,
    lookups: Lookups,
    name: str,
    *,
    editing: bool = False,
    value: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    definition = _definition_of(frame, name)
    ctx: dict[str, Any] = {
        "name": name,
        "dom": _dom_id(name),
        "custom": definition,
        "editing": editing,
        "error": error,
        "can_edit": leads_service.may_edit(frame.principal, lead)
        and (name != "assigned_to" or frame.principal.can("leads:write_all")),
    }
    if definition is None:
        ctx["value"] = _field_value(lead, name) if value is None else value
        return ctx
    stored = (lead.custom_fields or {}).get(definition["key"])
    ctx["value"] = _custom_input(definition, stored) if value is None else value
    ctx["display"] = _custom_display(frame, definition, stored)
    return ctx


@dataclass
class Entry:
    """One timeline item as the page shows it."""

    activity: Any  # LeadActivity
    kind: str
    author: str | None
    due: datetime | None = None
    done: bool = False
    overdue: bool = False


def _entries(items: list[Any], lookups: Lookups) -> list[Entry]:
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


async def _timeline(
    session: AsyncSession, frame: Shell, lead_id: uuid.UUID, cursor: str | None = None
) -> activities_service.ActivityPage:
    return await activities_service.list_activities(
        session, frame.principal, lead_id, limit=TIMELINE_PAGE, cursor=cursor
    )


async def _lead_page(
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
    lookups = await _lookups(session, frame)
    timeline = await _timeline(session, frame, lead.id)
    principal = frame.principal
    return render(
        request,
        "leads/detail.html",
        status_code,
        **frame.context("leads"),
        lead=lead,
        lookups=lookups,
        stage=lookups.stage_by_id.get(lead.stage_id),
        assignee=lookups.member_by_id.get(lead.assigned_to) if lead.assigned_to else None,
        editable=EDITABLE,
        custom_names=[CUSTOM + d["key"] for d in _custom_definitions(frame)],
        editing=editing if editing and _editable(frame, editing) else None,
        entries=_entries(timeline.items, lookups),
        timeline_next=timeline.next_cursor,
        can_edit=leads_service.may_edit(principal, lead),
        can_assign=principal.can("leads:write_all"),
        can_delete=principal.can("leads:delete"),
        can_merge=principal.can("leads:write_all") and principal.can("leads:delete"),
        errors=errors or {},
        form=form or {},
        now_local=frame.i18n.local(datetime.now().astimezone()).strftime("%Y-%m-%dT%H:%M"),
        field_ctx=lambda name: _field_context(
            frame,
            lead,
            lookups,
            name,
            editing=(editing == name),
            value=(form or {}).get(name),
            error=(errors or {}).get(name),
        ),
    )


@router.get("/leads/import", response_class=HTMLResponse)
async def import_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    if not frame.principal.can("leads:import"):
        return _error_page(request, frame, AppError("", status=403))
    return _upload_page(request, frame, settings)


def _limit_text(frame: Shell, settings: Settings) -> str:
    megabytes = Decimal(settings.import_max_bytes) / Decimal(1_048_576)
    return f"{frame.i18n.number(megabytes.quantize(Decimal('0.1')).normalize())} MB"


def _upload_page(
    request: Request,
    frame: Shell,
    settings: Settings,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "leads/import_upload.html",
        status_code,
        **frame.context("leads"),
        limit=_limit_text(frame, settings),
        error=error,
    )


@router.post("/leads/import", response_class=HTMLResponse)
async def import_upload(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    if file is None or not file.filename:
        return _upload_page(
            request, frame, settings, error=t("Choose a .csv or .xlsx file."), status_code=422
        )

    async def chunks() -> AsyncIterator[bytes]:
        while block := await file.read(1 << 20):
            yield block

    try:
        async with session.begin_nested():
            analysis = await importing.analyse_upload(
                session, settings, frame.principal, file.filename, chunks()
            )
    except AppError as exc:
        if exc.status == 403:
            return _error_page(request, frame, exc)
        messages = {
            "unsupported_file_type": t("Upload a .csv or .xlsx file."),
            "payload_too_large": t("The file is too large: the limit is %(limit)s.")
            % {"limit": _limit_text(frame, settings)},
            "empty_file": t("The file is empty: it needs a header row and at least one lead."),
            "unreadable_file": t(
                "We could not read this file. Save it again as CSV (UTF-8) or XLSX and retry."
            ),
        }
        return _upload_page(
            request,
            frame,
            settings,
            error=messages.get(exc.code, t(exc.detail)),
            status_code=exc.status,
        )
    return _mapping_page(
        request,
        frame,
        upload_id=analysis.upload_id,
        file_name=analysis.file_name,
        headers=analysis.headers,
        mapping=analysis.suggested_mapping,
        targets=analysis.fields,
        preview=analysis.preview,
        total=analysis.total_rows,
        policy="skip",
    )


def _target_label(target: str, definitions: list[dict[str, Any]], t: Any) -> str:
    labels = {
        "full_name": t("Name"),
        "email": t("E-mail"),
        "phone": t("Phone"),
        "company": t("Company"),
        "job_title": t("Job title"),
        "source": t("Source"),
        "estimated_value": t("Estimated value"),
        "probability_percentage": t("Probability (0–100)"),
    }
    if target.startswith(importing.CUSTOM_PREFIX):
        key = target.removeprefix(importing.CUSTOM_PREFIX)
        label = next((d.get("label") for d in definitions if d["key"] == key), None)
        return f"{label or key} ({t('custom field')})"
    return str(labels.get(target, target))


def _mapping_page(
    request: Request,
    frame: Shell,
    *,
    upload_id: str,
    file_name: str,
    headers: list[str],
    mapping: dict[str, str | None],
    targets: list[str],
    preview: list[dict[str, Any]],
    total: int,
    policy: str,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    definitions = _custom_definitions(frame)
    t = frame.i18n.gettext
    return render(
        request,
        "leads/import_mapping.html",
        status_code,
        **frame.context("leads"),
        upload_id=upload_id,
        file_name=file_name,
        headers=headers,
        mapping=mapping,
        targets=[(target, _target_label(target, definitions, t)) for target in targets],
        preview=preview,
        total=total,
        policy=policy,
        errors=errors or [],
    )


def _reload_preview(
    settings: Settings, frame: Shell, upload_id: str
) -> tuple[str, list[str], list[dict[str, Any]], int] | None:
    """The file name, headers and first rows of a stored upload (to show the mapping step
    again after a mistake), or None when the upload is gone."""
    if not upload_id.isalnum() or len(upload_id) != 32 or frame.org is None:
        return None
    folder = importing.imports_dir(settings, frame.org.id)
    meta_path = folder / f"{upload_id}.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    path = importing.upload_path(settings, frame.org.id, upload_id, meta["format"])
    if not path.is_file():
        return None
    fmt = importing.FileFormat(meta["format"], meta.get("encoding"), meta.get("delimiter"))
    preview: list[dict[str, Any]] = []
    with contextlib.suppress(AppError):
        data = importing.open_rows(path, fmt)
        for line, cells in data.rows:
            if len(preview) >= importing.PREVIEW_ROWS:
                break
            values = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(data.headers)}
            preview.append({"line": line, "values": values})
    return meta["file_name"], list(meta["headers"]), preview, int(meta.get("total_rows") or 0)


@router.post("/leads/import/start", response_class=HTMLResponse)
async def import_start(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    upload_id: Annotated[str, Form(max_length=64)],
    columns: Annotated[list[str] | None, Form()] = None,
    targets: Annotated[list[str] | None, Form()] = None,
    duplicate_policy: Annotated[str, Form(max_length=10)] = "skip",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    columns, targets = columns or [], targets or []
    mapping: dict[str, str | None] = {
        column: (target if target and target != "ignore" else None)
        for column, target in zip(columns, targets, strict=False)
    }
    policy = duplicate_policy if duplicate_policy in ("skip", "update", "create") else "skip"
    try:
        async with session.begin_nested():
            job_id = await importing.start_import(
                session,
                settings,
                frame.principal,
                upload_id=upload_id,
                mapping=mapping,
                duplicate_policy=policy,  # type: ignore[arg-type]
            )
    except AppError as exc:
        if exc.status == 403:
            return _error_page(request, frame, exc)
        reloaded = _reload_preview(settings, frame, upload_id)
        if exc.status == 404 or reloaded is None:
            return _upload_page(
                request,
                frame,
                settings,
                error=t("The uploaded file expired. Upload it again."),
                status_code=404,
            )
        if exc.code == "import_already_started":
            return _upload_page(
                request,
                frame,
                settings,
                error=t("This file was already imported. Upload it again to import once more."),
                status_code=409,
            )
        errors = []
        for err in exc.extra.get("errors", []):
            message = str(err.get("message", ""))
            if "full_name" in message and "must be mapped" in message:
                errors.append(t("Choose the column that holds the lead's name (Name)."))
            elif "mapped from" in message:
                errors.append(t("Each field can come from one column only."))
            else:
                errors.append(t("A column is mapped to a field that does not exist."))
        file_name, headers, preview, total = reloaded
        org = frame.org
        definitions = custom_fields.custom_field_definitions(org)
        return _mapping_page(
            request,
            frame,
            upload_id=upload_id,
            file_name=file_name,
            headers=headers,
            mapping={h: mapping.get(h) for h in headers},
            targets=importing.mapping_targets(definitions),
            preview=preview,
            total=total,
            policy=policy,
            errors=errors or [t(exc.detail)],
            status_code=exc.status,
        )
    return RedirectResponse(f"/leads/import/{job_id}", status_code=303)


@router.get("/leads/import/{job_id}", response_class=HTMLResponse)
async def import_progress(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    parsed = _uuid(job_id)
    try:
        if parsed is None:
            raise NotFound("No import with that id.")
        job = await importing.get_import(session, frame.principal, parsed)
    except AppError as exc:
        if exc.status == 404:
            return _message(
                request, frame, 404, t("Import not found"), t("This import does not exist.")
            )
        return _error_page(request, frame, exc)
    progress = importing.progress_of(job)
    running = job.status in ("pending", "running", "retrying")
    total = progress["total"] or 0
    percent = min(100, int((progress["processed"] or 0) * 100 / total)) if total else 0
    ctx = {
        **frame.context("leads"),
        "job": job,
        "progress": progress,
        "running": running,
        "percent": percent,
        "file_name": (job.job_data or {}).get("file_name"),
        "errors_url": f"/api/v1/imports/{job.id}/errors.csv",
    }
    if _is_htmx(request):
        return render(request, "leads/_import_progress.html", **ctx)
    return render(request, "leads/import_progress.html", **ctx)


@router.get("/leads/{lead_id}", response_class=HTMLResponse)
async def lead_detail(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    try:
        lead = await _lead_or_none(session, frame, lead_id)
        if lead is None:
            return _not_found(request, frame)
        return await _lead_page(
            request, session, frame, lead, editing=request.query_params.get("edit")
        )
    except AppError as exc:
        return _error_page(request, frame, exc)


# --- edit in place ---------------------------------------------------------------------------


@router.get("/leads/{lead_id}/edit", response_class=HTMLResponse)
async def lead_edit_form(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    name = request.query_params.get("field", "")
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    if not _editable(frame, name):
        return RedirectResponse(f"/leads/{lead.id}", status_code=303)
    if not _is_htmx(request):
        query = urlencode({"edit": name})
        return RedirectResponse(f"/leads/{lead.id}?{query}#field-{_dom_id(name)}", status_code=303)
    lookups = await _lookups(session, frame)
    editing = request.query_params.get("cancel") != "1"
    return render(
        request,
        "leads/_field.html",
        **frame.context("leads"),
        lead=lead,
        lookups=lookups,
        f=_field_context(frame, lead, lookups, name, editing=editing),
    )


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
            parsed: Any = _decimal(value)
        except (InvalidOperation, ValueError):
            return None, FRIENDLY[name](t)
    elif name == "probability_percentage":
        value = value.rstrip("%").strip()
        if not value.isdigit():
            return None, FRIENDLY[name](t)
        parsed = int(value)
    elif name == "assigned_to":
        parsed = _uuid(value)
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
        return None, _friendly(name, t)
    return checked.model_dump(exclude_unset=True), None


@router.post("/leads/{lead_id}/edit", response_class=HTMLResponse)
async def lead_edit_submit(
    lead_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    field_name: Annotated[str, Form(alias="field", max_length=80)] = "",
    value: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    if not _editable(frame, field_name):
        return RedirectResponse(f"/leads/{lead.id}", status_code=303)
    definition = _definition_of(frame, field_name)
    changes: dict[str, Any] | None = None
    error: str | None = None
    if definition is not None:
        changes = _custom_change(definition, value)
    else:
        changes, error = _edit_changes(field_name, value, t)
    if changes is not None:
        try:
            async with session.begin_nested():
                lead = await leads_service.update_lead(session, frame.principal, lead.id, changes)
        except AppError as exc:
            if exc.status == 404:
                return _not_found(request, frame)
            if exc.status == 403:
                error = t("You cannot change this field.")
            else:
                errors = _field_errors(exc, t, _custom_definitions(frame))
                error = next(iter(errors.values()), t("Check this field."))
            await session.refresh(lead)
    if not _is_htmx(request):
        if error is None:
            response = RedirectResponse(f"/leads/{lead.id}", status_code=303)
            flash(response, t("Saved."))
            return response
        return await _lead_page(
            request,
            session,
            frame,
            lead,
            status_code=422,
            editing=field_name,
            errors={field_name: error},
            form={field_name: value},
        )
    lookups = await _lookups(session, frame)
    return render(
        request,
        "leads/_field.html",
        422 if error else 200,
        **frame.context("leads"),
        lead=lead,
        lookups=lookups,
        f=_field_context(
            frame,
            lead,
            lookups,
            field_name,
            editing=error is not None,
            value=value if error else None,
            error=error,
        ),
    )


# --- stage, won, lost ------------------------------------------------------------------------


async def _update_and_back(
    request: Request,
    session: AsyncSession,
    frame: Shell,
    lead_id: str,
    changes: dict[str, Any],
    done: str,
) -> Response:
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    try:
        async with session.begin_nested():
            await leads_service.update_lead(session, frame.principal, lead.id, changes)
    except AppError as exc:
        if exc.status in (403, 404):
            return _error_page(request, frame, exc)
        await session.refresh(lead)
        errors = _field_errors(exc, frame.i18n.gettext)
        return await _lead_page(request, session, frame, lead, status_code=422, errors=errors)
    response = RedirectResponse(f"/leads/{lead.id}", status_code=303)
    flash(response, done)
    return response


@router.post("/leads/{lead_id}/stage", response_class=HTMLResponse)
async def lead_stage(
    lead_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    stage_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    stage = _uuid(stage_id)
    if stage is None:
        lead = await _lead_or_none(session, frame, lead_id)
        if lead is None:
            return _not_found(request, frame)
        errors = {"stage_id": FRIENDLY["stage_id"](frame.i18n.gettext)}
        return await _lead_page(request, session, frame, lead, status_code=422, errors=errors)
    return await _update_and_back(
        request, session, frame, lead_id, {"stage_id": stage}, frame.i18n.gettext("Stage changed.")
    )


@router.post("/leads/{lead_id}/won", response_class=HTMLResponse)
async def lead_won(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    return await _update_and_back(
        request,
        session,
        frame,
        lead_id,
        {"status": "converted"},
        frame.i18n.gettext("Lead marked as won. Congratulations!"),
    )


@router.post("/leads/{lead_id}/lost", response_class=HTMLResponse)
async def lead_lost(
    lead_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    lost_reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    reason = lost_reason.strip()
    if not reason or len(reason) > 255:
        lead = await _lead_or_none(session, frame, lead_id)
        if lead is None:
            return _not_found(request, frame)
        message = (
            t("Tell us why the lead was lost.")
            if not reason
            else t("Keep the reason under 255 characters.")
        )
        return await _lead_page(
            request,
            session,
            frame,
            lead,
            status_code=422,
            errors={"lost_reason": message},
            form={"lost_reason": reason},
        )
    return await _update_and_back(
        request,
        session,
        frame,
        lead_id,
        {"status": "lost", "lost_reason": reason},
        t("Lead marked as lost."),
    )


@router.post("/leads/{lead_id}/reopen", response_class=HTMLResponse)
async def lead_reopen(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    return await _update_and_back(
        request,
        session,
        frame,
        lead_id,
        {"status": "active", "lost_reason": None},
        frame.i18n.gettext("Lead reopened."),
    )


# --- timeline, notes, tasks ------------------------------------------------------------------


@router.get("/leads/{lead_id}/timeline", response_class=HTMLResponse)
async def lead_timeline(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    cursor = request.query_params.get("cursor") or None
    try:
        async with session.begin_nested():
            page = await _timeline(session, frame, lead.id, cursor)
    except AppError:
        page = await _timeline(session, frame, lead.id)
    lookups = await _lookups(session, frame)
    ctx = {
        **frame.context("leads"),
        "lead": lead,
        "entries": _entries(page.items, lookups),
        "timeline_next": page.next_cursor,
        "can_edit": leads_service.may_edit(frame.principal, lead),
    }
    if _is_htmx(request):
        return render(request, "leads/_timeline_items.html", **ctx)
    return render(request, "leads/timeline.html", **ctx)


@router.post("/leads/{lead_id}/notes", response_class=HTMLResponse)
async def lead_add_note(
    lead_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    description: Annotated[str, Form(max_length=20000)] = "",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    if not description.strip():
        return await _lead_page(
            request,
            session,
            frame,
            lead,
            status_code=422,
            errors={"note": t("Write something in the note first.")},
        )
    try:
        async with session.begin_nested():
            await activities_service.create_activity(
                session, frame.principal, lead.id, activity_type="note", description=description
            )
    except AppError as exc:
        return _error_page(request, frame, exc)
    response = RedirectResponse(f"/leads/{lead.id}#timeline", status_code=303)
    flash(response, t("Note added."))
    return response


@router.post("/leads/{lead_id}/tasks", response_class=HTMLResponse)
async def lead_add_task(
    lead_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    title: Annotated[str, Form(max_length=255)] = "",
    due_at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    errors: dict[str, str] = {}
    if not title.strip():
        errors["task_title"] = t("Say what needs to be done.")
    due: datetime | None = None
    try:
        due = datetime.fromisoformat(due_at.strip())
    except ValueError:
        errors["task_due"] = t("Choose a date and time.")
    if errors or due is None:
        return await _lead_page(
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
    try:
        async with session.begin_nested():
            await activities_service.create_activity(
                session,
                frame.principal,
                lead.id,
                activity_type="task",
                title=title.strip(),
                metadata={"due_at": due.isoformat(), "done": False},
            )
    except AppError as exc:
        return _error_page(request, frame, exc)
    response = RedirectResponse(f"/leads/{lead.id}#timeline", status_code=303)
    flash(response, t("Task added."))
    return response


@router.post("/leads/{lead_id}/tasks/{activity_id}/done", response_class=HTMLResponse)
async def lead_task_done(
    lead_id: str,
    activity_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    done: Annotated[str, Form(max_length=5)] = "1",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    t = frame.i18n.gettext
    lead = await _lead_or_none(session, frame, lead_id)
    parsed = _uuid(activity_id)
    if lead is None or parsed is None:
        return _not_found(request, frame)
    try:
        async with session.begin_nested():
            await activities_service.update_activity(
                session, frame.principal, parsed, {"done": done == "1"}
            )
    except AppError as exc:
        return _error_page(request, frame, exc)
    response = RedirectResponse(f"/leads/{lead.id}#timeline", status_code=303)
    flash(response, t("Task done.") if done == "1" else t("Task open again."))
    return response


# --- merge and delete ------------------------------------------------------------------------


@router.get("/leads/{lead_id}/merge", response_class=HTMLResponse)
async def lead_merge_page(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    q = (request.query_params.get("q") or "").strip()[:200]
    other = None
    other_id = _uuid(request.query_params.get("other"))
    results: list[Any] = []
    if other_id is not None and other_id != lead.id:
        other = await _lead_or_none(session, frame, str(other_id))
    elif q:
        page = await leads_service.list_leads(
            session, frame.principal, limit=MERGE_RESULTS + 1, q=q, sort="full_name"
        )
        results = [row for row in page.items if row.id != lead.id][:MERGE_RESULTS]
    return render(
        request,
        "leads/merge.html",
        **frame.context("leads"),
        lead=lead,
        other=other,
        q=q,
        results=results,
        can_merge=frame.principal.can("leads:write_all") and frame.principal.can("leads:delete"),
    )


@router.post("/leads/{lead_id}/merge", response_class=HTMLResponse)
async def lead_merge(
    lead_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    other_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    lead = await _lead_or_none(session, frame, lead_id)
    other = _uuid(other_id)
    if lead is None or other is None:
        return _not_found(request, frame)
    try:
        async with session.begin_nested():
            kept = await dedup.merge(session, frame.principal, lead.id, other)
    except AppError as exc:
        return _error_page(request, frame, exc)
    response = RedirectResponse(f"/leads/{kept.id}", status_code=303)
    flash(response, frame.i18n.gettext("Leads merged."))
    return response


@router.get("/leads/{lead_id}/delete", response_class=HTMLResponse)
async def lead_delete_page(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    return render(request, "leads/delete.html", **frame.context("leads"), lead=lead)


@router.post("/leads/{lead_id}/delete", response_class=HTMLResponse)
async def lead_delete(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return _login()
    lead = await _lead_or_none(session, frame, lead_id)
    if lead is None:
        return _not_found(request, frame)
    name = lead.full_name
    try:
        async with session.begin_nested():
            await leads_service.delete_lead(session, frame.principal, lead.id)
    except AppError as exc:
        return _error_page(request, frame, exc)
    response = RedirectResponse("/leads", status_code=303)
    flash(response, frame.i18n.gettext("Lead %(name)s deleted.") % {"name": name})
    return response
