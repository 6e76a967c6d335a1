"""Message templates: a library of texts with ``{{variable}}`` placeholders, A/B variants and
rendering for a lead.

A placeholder names a lead field (``LEAD_VARIABLES``) or one of the organization's custom
fields, optionally with a fallback: ``{{company|sua empresa}}`` renders the lead's company, or
"sua empresa" when it has none. Reading needs ``messages:read``; changing needs
``templates:manage``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.models import User
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import save_new
from lovedcrm.leads.models import Lead, PipelineStage
from lovedcrm.messaging.models import MessageTemplate
from lovedcrm.organizations.custom_fields import HasSettings, custom_field_definitions
from lovedcrm.organizations.models import Organization

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|([^}]*))?\}\}")

# Lead fields a template may use, with how each is read from a lead.
LEAD_VARIABLES: dict[str, Callable[[Lead, PipelineStage | None, User | None], Any]] = {
    "lead_name": lambda lead, _s, _u: lead.full_name,
    "first_name": lambda lead, _s, _u: (lead.full_name or "").split(" ")[0],
    "company": lambda lead, _s, _u: lead.company,
    "email": lambda lead, _s, _u: lead.email,
    "phone": lambda lead, _s, _u: lead.phone,
    "job_title": lambda lead, _s, _u: lead.job_title,
    "stage": lambda _l, stage, _u: stage.name if stage else None,
    "assignee_name": lambda _l, _s, user: user.full_name if user else None,
}
_FIELDS = (
    "name",
    "category",
    "content",
    "is_active",
    "is_shared",
    "variables",
    "whatsapp_template_name",
    "whatsapp_language",
)
# Meta's rules for a message template's name, and its language codes (``pt_BR``, ``en_US``,
# ``es``, ``fil``): the Cloud API sends a template by name + language.
META_NAME = re.compile(r"[a-z0-9_]{1,512}")
META_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
# The mapping's error messages (stable: the pages translate them by value).
MAP_BAD_NAME = (
    "use only lowercase letters, digits and underscores (up to 512), exactly as the template "
    "is named in Meta's WhatsApp Manager"
)
MAP_BAD_LANGUAGE = "use a language code as Meta writes it, such as pt_BR, en_US or es"
MAP_NEEDS_LANGUAGE = "required with a Meta template name: the language it was approved in"
MAP_NEEDS_NAME = "required with a language: the name of the approved Meta template"


def parse_variables(content: str) -> list[str]:
    """The placeholder names in ``content``, in order of first use."""
    names: list[str] = []
    for match in PLACEHOLDER.finditer(content):
        if match.group(1) not in names:
            names.append(match.group(1))
    return names


def _variables(content: str, org: HasSettings | None) -> list[dict[str, str]]:
    known = set(LEAD_VARIABLES) | {d["key"] for d in custom_field_definitions(org)}
    names = parse_variables(content)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationFailed(
            f"Unknown template variables: {', '.join(unknown)}",
            code="unknown_variables",
            extra={
                "unknown": unknown,
                "errors": [
                    {"field": "content", "message": f"unknown variable {n}"} for n in unknown
                ],
            },
        )
    return [{"name": n, "type": "string"} for n in names]


def _clean(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def meta_mapping(name: Any, language: Any) -> tuple[str | None, str | None]:
    """The Meta template (name, language) a template maps to, checked; (None, None) for no
    mapping. A language needs a name, and a name needs a language."""
    clean_name, clean_language = _clean(name), _clean(language)
    errors: list[dict[str, str]] = []
    if clean_name is not None and not META_NAME.fullmatch(clean_name):
        errors.append({"field": "whatsapp_template_name", "message": MAP_BAD_NAME})
    if clean_language is not None and not META_LANGUAGE.fullmatch(clean_language):
        errors.append({"field": "whatsapp_language", "message": MAP_BAD_LANGUAGE})
    if clean_name is not None and clean_language is None:
        errors.append({"field": "whatsapp_language", "message": MAP_NEEDS_LANGUAGE})
    if clean_name is None and clean_language is not None:
        errors.append({"field": "whatsapp_template_name", "message": MAP_NEEDS_NAME})
    if errors:
        raise ValidationFailed(
            "Invalid Meta template mapping: "
            + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            code="invalid_whatsapp_template",
            extra={"errors": errors},
        )
    return clean_name, clean_language


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "sim" if value else "não"
    return str(value).strip()


def render(
    template: MessageTemplate | str,
    lead: Lead,
    org: HasSettings | None = None,
    *,
    stage: PipelineStage | None = None,
    assignee: User | None = None,
) -> str:
    """The template's text for ``lead``: each placeholder becomes the lead's value, else its
    fallback, else nothing. ``stage``/``assignee`` feed ``{{stage}}``/``{{assignee_name}}``."""
    content = template if isinstance(template, str) else template.content
    custom = lead.custom_fields or {}
    custom_keys = {d["key"] for d in custom_field_definitions(org)} | set(custom)

    def replace(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        value: Any = None
        if name in LEAD_VARIABLES:
            value = LEAD_VARIABLES[name](lead, stage, assignee)
        elif name in custom_keys:
            value = custom.get(name)
        text = _text(value)
        return text if text else (fallback or "").strip()

    return PLACEHOLDER.sub(replace, content)


def _snapshot(t: MessageTemplate) -> dict[str, Any]:
    return {f: getattr(t, f) for f in _FIELDS}


async def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    template_id: uuid.UUID,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    await audit.record_by(
        session, principal, action, "message_template", template_id, audit.diff(before, after)
    )


async def list_templates(
    session: AsyncSession,
    principal: Principal,
    *,
    category: str | None = None,
    active: bool | None = None,
) -> list[MessageTemplate]:
    principal.require("messages:read")
    query = select(MessageTemplate).where(MessageTemplate.organization_id == principal.org())
    if category:
        query = query.where(MessageTemplate.category == category)
    if active is not None:
        query = query.where(MessageTemplate.is_active.is_(active))
    query = query.order_by(
        MessageTemplate.category,
        func.coalesce(MessageTemplate.parent_template_id, MessageTemplate.id),
        MessageTemplate.version,
        MessageTemplate.name,
    )
    return list((await session.execute(query)).scalars())


async def get_template(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID
) -> MessageTemplate:
    principal.require("messages:read")
    return await get_in_org(
        session,
        MessageTemplate,
        template_id,
        principal,
        NotFound("No template with that id.", code="template_not_found"),
    )


async def create_template(
    session: AsyncSession, principal: Principal, data: dict[str, Any]
) -> MessageTemplate:
    """A new template, or with ``parent_template_id`` an A/B variant of one: variants hang off
    the original and number on from the highest version of the family."""
    principal.require("templates:manage")
    org = await session.get(Organization, principal.org())
    meta_name, meta_language = meta_mapping(
        data.get("whatsapp_template_name"), data.get("whatsapp_language")
    )
    variables = _variables(data["content"], org)
    version = 1
    parent_id = data.get("parent_template_id")
    if parent_id is not None:
        try:
            parent = await get_template(session, principal, parent_id)
        except NotFound as exc:
            raise ValidationFailed(
                "parent_template_id is not a template of this organization.",
                code="invalid_parent_template",
                extra={"errors": [{"field": "parent_template_id", "message": "not found"}]},
            ) from exc
        parent_id = parent.parent_template_id or parent.id
        highest = await session.execute(
            select(func.max(MessageTemplate.version)).where(
                MessageTemplate.organization_id == principal.org(),
                or_(
                    MessageTemplate.id == parent_id, MessageTemplate.parent_template_id == parent_id
                ),
            )
        )
        version = (highest.scalar_one_or_none() or 1) + 1
    template = MessageTemplate(
        organization_id=principal.org(),
        created_by=principal.user_id,
        name=data["name"],
        category=data["category"],
        content=data["content"],
        variables=variables,
        version=version,
        parent_template_id=parent_id,
        is_active=data.get("is_active", True),
        is_shared=data.get("is_shared", False),
        whatsapp_template_name=meta_name,
        whatsapp_language=meta_language,
    )
    await save_new(session, template)
    await _audit(session, principal, "create", template.id, None, _snapshot(template))
    return template


async def update_template(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID, changes: dict[str, Any]
) -> MessageTemplate:
    principal.require("templates:manage")
    template = await get_template(session, principal, template_id)
    before = _snapshot(template)
    mapping = (template.whatsapp_template_name, template.whatsapp_language)
    if "whatsapp_template_name" in changes or "whatsapp_language" in changes:
        # A name removed takes its language along, unless a language is given again.
        name = changes.get("whatsapp_template_name", template.whatsapp_template_name)
        language = changes.get("whatsapp_language")
        if "whatsapp_language" not in changes and _clean(name) is not None:
            language = template.whatsapp_language
        mapping = meta_mapping(name, language)
    if changes.get("content") is not None:
        org = await session.get(Organization, principal.org())
        template.variables = _variables(changes["content"], org)
        template.content = changes["content"]
    for key in ("name", "category", "is_active", "is_shared"):
        if changes.get(key) is not None:
            setattr(template, key, changes[key])
    template.whatsapp_template_name, template.whatsapp_language = mapping
    template.updated_at = func.now()
    await session.flush()
    await session.refresh(template)
    await _audit(session, principal, "update", template.id, before, _snapshot(template))
    return template


async def delete_template(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID
) -> None:
    principal.require("templates:manage")
    template = await get_template(session, principal, template_id)
    variants = await session.execute(
        select(func.count(MessageTemplate.id)).where(
            MessageTemplate.organization_id == principal.org(),
            MessageTemplate.parent_template_id == template.id,
        )
    )
    count = variants.scalar_one()
    if count:
        raise Conflict(
            f"The template has {count} variant(s): delete them first.",
            code="template_has_variants",
            extra={"variant_count": count},
        )
    before = _snapshot(template)
    await session.delete(template)
    try:
        await session.flush()
    except IntegrityError as exc:  # pragma: no cover - a row added since the check
        raise Conflict("The template is in use.", code="template_in_use") from exc
    await _audit(session, principal, "delete", template_id, before, None)
