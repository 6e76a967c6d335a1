"""What the lead pages share: the names shown for ids (stages, members), the lead's
load-or-404, the custom field definitions and field errors in words a person understands."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth import team
from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.leads import service as leads_service
from lovedcrm.leads import stages as stages_service
from lovedcrm.leads.models import Lead
from lovedcrm.organizations import custom_fields
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import Member, PageError, Shell, attempt, parse_uuid

T = TypeVar("T")

ACTIVE = "leads"  # the menu entry of every lead page


# --- the lead of the URL -----------------------------------------------------------------------


def not_found(title: str, message: str) -> PageError:
    """A 404 page of the leads (title and message: catalog msgids), back to the list."""
    return PageError(404, title, message, back_url="/leads", back_label=N_("Back to leads"))


def lead_not_found() -> PageError:
    return not_found(
        N_("Lead not found"), N_("This lead does not exist, was deleted, or is not visible to you.")
    )


async def lead_in_page(lead_id: str, frame: Member, session: SessionDep) -> Lead:
    """The lead of the URL, visible to the member, else the lead's 404 page."""
    parsed = parse_uuid(lead_id)
    if parsed is None:
        raise lead_not_found()
    try:
        return await leads_service.get_lead(session, frame.principal, parsed)
    except NotFound as exc:
        raise lead_not_found() from exc


LeadInPage = Annotated[Lead, Depends(lead_in_page)]


async def on_lead(call: Awaitable[T]) -> T:
    """A change to the page's lead: a 404 from it (the lead is not the member's to change, or
    is gone) is the lead's 404 page."""
    try:
        return await call
    except AppError as exc:
        if exc.status == 404:
            raise lead_not_found() from exc
        raise


async def find_lead(session: AsyncSession, frame: Shell, lead_id: uuid.UUID) -> Lead | None:
    """A lead visible to the member, or None."""
    try:
        return await attempt(session, leads_service.get_lead(session, frame.principal, lead_id))
    except NotFound:
        return None


# --- names for ids -----------------------------------------------------------------------------


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


async def lookups_of(session: AsyncSession, frame: Shell) -> Lookups:
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


# --- custom fields and field errors ------------------------------------------------------------


def definitions_of(frame: Shell) -> list[dict[str, Any]]:
    """The organization's custom field definitions."""
    return custom_fields.custom_field_definitions(frame.org)


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


def friendly(name: str, t: Any) -> str:
    if name.startswith("custom_fields"):
        return str(t("Check this field: the value does not fit its type."))
    return FRIENDLY[name](t) if name in FRIENDLY else str(t("Check this field."))


def custom_message(definition: dict[str, Any] | None, message: str, t: Any) -> str:
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


def field_errors(
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
            errors.setdefault(key, friendly(name, t))
    elif isinstance(exc, AppError):
        for err in exc.extra.get("errors", []) or []:
            name = str(err.get("field", "form"))
            key = name.replace("custom_fields.", "custom_")
            if definitions is not None and name.startswith("custom_fields"):
                definition = by_key.get(name.removeprefix("custom_fields."))
                errors.setdefault(key, custom_message(definition, str(err.get("message")), t))
            else:
                errors.setdefault(key, friendly(name, t))
        if not errors:
            errors["form"] = str(t(exc.detail))
    return errors
