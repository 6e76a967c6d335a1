"""Organizations (the tenants): creating one, its settings, branding and custom fields.

Who belongs to an organization and with which role is ``auth``'s business (people and
access); a new organization announces itself with the internal event ``organization.created``
so that its admin membership (``auth``), default stages (``pipeline``) and message templates
(``messaging``) are made in the same transaction by the domains that own them.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import set_tenant
from lovedcrm.organizations import custom_fields
from lovedcrm.organizations.models import Organization

DEFAULT_ORG_SETTINGS = {
    "locale": "pt-BR",
    "currency": "BRL",
    "timezone": "America/Sao_Paulo",
    "phone_region": "BR",
    "assignment": "manual",
    "primary_color": "#6366f1",
}

# Settings an admin may change through the API, with their validators.
_SETTING_KEYS = {
    "locale",
    "currency",
    "timezone",
    "phone_region",
    "assignment",
    "primary_color",
    "custom_fields",
    "logo",
    "stale_days",
}
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
LOCALES = ("pt-BR", "en")
# How new leads get an owner (``leads.assignment``): by hand, or in turn among the active
# sales members; the rotation's position is kept in the settings under CURSOR_KEY.
MANUAL = "manual"
ROUND_ROBIN = "round_robin"
ASSIGNMENT_MODES = (MANUAL, ROUND_ROBIN)
CURSOR_KEY = "assignment_cursor"
CURRENCIES = ("BRL", "USD", "EUR")
# A lead without activity for this many days is idle (the home page lists it).
DEFAULT_STALE_DAYS = 7


def mode_of(org_settings: Mapping[str, Any] | None) -> str:
    """The organization's assignment mode (``manual`` when unset or unknown)."""
    value = (org_settings or {}).get("assignment")
    return value if value in ASSIGNMENT_MODES else MANUAL


def stale_days_of(org: custom_fields.HasSettings | None) -> int:
    """After how many days without activity a lead is idle (``settings.stale_days``)."""
    raw = (org.settings or {}).get("stale_days") if org is not None else None
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= 365:
        return raw
    return DEFAULT_STALE_DAYS


def _setting_errors(settings: dict[str, Any]) -> list[dict[str, str]]:
    """Field errors for the settings with a known shape (the others are free-form)."""
    errors = []
    if "primary_color" in settings and not (
        isinstance(settings["primary_color"], str) and _COLOR.fullmatch(settings["primary_color"])
    ):
        errors.append(
            {"field": "primary_color", "message": "must be a color like #6366f1 (#RRGGBB)"}
        )
    if "locale" in settings and settings["locale"] not in LOCALES:
        errors.append({"field": "locale", "message": f"must be one of {', '.join(LOCALES)}"})
    if "currency" in settings and settings["currency"] not in CURRENCIES:
        errors.append({"field": "currency", "message": f"must be one of {', '.join(CURRENCIES)}"})
    if "assignment" in settings and settings["assignment"] not in ASSIGNMENT_MODES:
        errors.append(
            {"field": "assignment", "message": f"must be one of {', '.join(ASSIGNMENT_MODES)}"}
        )
    if settings.get("custom_fields") is not None:
        errors += custom_fields.custom_field_definition_errors(settings["custom_fields"])
    days = settings.get("stale_days", DEFAULT_STALE_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        errors.append({"field": "stale_days", "message": "must be a whole number from 1 to 365"})
    return errors


def logo_path_valid(organization_id: uuid.UUID, value: object) -> bool:
    """A stored logo is ``uploads/<org id>/logo.<png|jpg|webp>`` under the data folder."""
    return isinstance(value, str) and bool(
        re.fullmatch(rf"uploads/{organization_id}/logo\.(png|jpg|webp)", value)
    )


async def get_organization(session: AsyncSession, principal: Principal) -> Organization:
    org = await session.get(Organization, principal.org())
    if org is None:
        raise NotFound("Organization not found.")
    return org


async def _locked_organization(session: AsyncSession, principal: Principal) -> Organization:
    """The organization re-read and row-locked (FOR NO KEY UPDATE: inserts referencing it
    are not blocked) until the transaction ends, so a read-modify-write of its settings
    cannot lose a concurrent change (the lead assignment cursor among them)."""
    org = (
        await session.execute(
            select(Organization)
            .where(Organization.id == principal.org())
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if org is None:
        raise NotFound("Organization not found.")
    return org


async def update_organization(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str | None,
    settings: dict[str, Any] | None,
) -> Organization:
    principal.require("settings:manage")
    org = await _locked_organization(session, principal)
    before = {"name": org.name, "settings": dict(org.settings or {})}
    if settings:
        unknown = sorted(set(settings) - _SETTING_KEYS)
        if unknown:
            raise ValidationFailed(
                f"Unknown settings: {', '.join(unknown)}", code="unknown_setting"
            )
        errors = _setting_errors(settings)
        if "logo" in settings and not (
            settings["logo"] is None or logo_path_valid(org.id, settings["logo"])
        ):
            errors.append({"field": "logo", "message": "is set by uploading a logo"})
        if errors:
            raise ValidationFailed(
                "Invalid settings: " + "; ".join(f"{e['field']} {e['message']}" for e in errors),
                extra={"errors": errors},
            )
        org.settings = {**(org.settings or {}), **settings}
    if name:
        org.name = name
    org.updated_at = func.now()
    await session.flush()
    await audit.record(
        session,
        action="settings_update",
        resource_type="organization",
        resource_id=org.id,
        organization_id=org.id,
        user_id=principal.user_id,
        changes=audit.diff(before, {"name": org.name, "settings": dict(org.settings or {})}),
    )
    return org


# --- custom fields (settings.custom_fields, edited one at a time by the settings page) ------


def custom_field_key(label: str) -> str:
    """The key a label suggests: "Data de aniversário" → ``data_de_aniversario``."""
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if key[:1].isdigit():
        key = f"f_{key}"
    return key[:50].rstrip("_")


async def _custom_fields(session: AsyncSession, principal: Principal) -> list[dict[str, Any]]:
    principal.require("settings:manage")
    org = await _locked_organization(session, principal)
    return [dict(d) for d in custom_fields.custom_field_definitions(org)]


def _index_of(fields: list[dict[str, Any]], key: str) -> int:
    for i, d in enumerate(fields):
        if d["key"] == key:
            return i
    raise NotFound("No custom field with that key.", code="custom_field_not_found")


def _definition(
    key: str, label: str, kind: str, options: list[str] | None, required: bool
) -> dict[str, Any]:
    definition: dict[str, Any] = {"key": key, "label": label.strip(), "type": kind}
    if kind == "select":
        definition["options"] = [o.strip() for o in options or [] if o.strip()]
    if required:
        definition["required"] = True
    return definition


async def add_custom_field(
    session: AsyncSession,
    principal: Principal,
    *,
    label: str,
    key: str | None,
    kind: str,
    options: list[str] | None = None,
    required: bool = False,
) -> dict[str, Any]:
    """Append a field (the key derived from the label when not given); the settings'
    validation decides what is acceptable."""
    fields = await _custom_fields(session, principal)
    definition = _definition(
        (key or "").strip() or custom_field_key(label), label, kind, options, required
    )
    await update_organization(
        session, principal, name=None, settings={"custom_fields": [*fields, definition]}
    )
    return definition


async def update_custom_field(
    session: AsyncSession,
    principal: Principal,
    key: str,
    *,
    label: str,
    options: list[str] | None = None,
    required: bool = False,
) -> dict[str, Any]:
    """A field's label, options (select) and required flag; its key and type stay (the
    values already saved in leads depend on them). Other attributes are kept."""
    fields = await _custom_fields(session, principal)
    i = _index_of(fields, key)
    current = fields[i]
    changed = _definition(key, label, str(current.get("type", "text")), options, required)
    kept = {k: v for k, v in current.items() if k not in ("label", "options", "required")}
    fields[i] = {**kept, **changed}
    await update_organization(session, principal, name=None, settings={"custom_fields": fields})
    return fields[i]


async def move_custom_field(
    session: AsyncSession, principal: Principal, key: str, direction: Literal["up", "down"]
) -> None:
    """One place up or down (the order of the lead page and forms)."""
    fields = await _custom_fields(session, principal)
    i = _index_of(fields, key)
    j = i - 1 if direction == "up" else i + 1
    if 0 <= j < len(fields):
        fields[i], fields[j] = fields[j], fields[i]
        await update_organization(session, principal, name=None, settings={"custom_fields": fields})


async def remove_custom_field(session: AsyncSession, principal: Principal, key: str) -> None:
    """Stop offering a field. The values leads hold are kept (not shown any more; adding a
    field with the same key brings them back)."""
    fields = await _custom_fields(session, principal)
    del fields[_index_of(fields, key)]
    await update_organization(session, principal, name=None, settings={"custom_fields": fields})


async def get_organization_by_id(session: AsyncSession, organization_id: uuid.UUID) -> Organization:
    org = await session.get(Organization, organization_id)
    if org is None:
        raise NotFound("Organization not found.")
    return org


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return (slug or "org")[:80]


async def _insert_organization(session: AsyncSession, org: Organization) -> None:
    """Insert with a unique slug: on a clash, retry with a numbered suffix."""
    base = org.slug
    for attempt in range(1, 50):
        try:
            async with session.begin_nested():
                session.add(org)
                await session.flush()
            return
        except IntegrityError as exc:
            if "slug" not in str(exc.orig):
                raise
            if org in session:  # the savepoint rollback usually expunged it already
                session.expunge(org)
            org.slug = f"{base[:90]}-{attempt + 1}"
    raise Conflict("Could not find a free organization slug", code="slug_taken")


async def create_organization(
    session: AsyncSession,
    *,
    name: str,
    owner_id: uuid.UUID,
    settings_override: dict[str, object] | None = None,
) -> Organization:
    """A new organization owned by ``owner_id``: its admin membership, default stages and
    templates come from the subscribers of ``organization.created``."""
    org_id = uuid.uuid4()
    await set_tenant(session, org_id, owner_id)
    org = Organization(
        id=org_id,
        name=name.strip(),
        slug=slugify(name),
        plan_tier="starter",
        settings={**DEFAULT_ORG_SETTINGS, **(settings_override or {})},
        features_enabled={},
    )
    await _insert_organization(session, org)
    await emit(
        session,
        DomainEvent(
            type="organization.created",
            organization_id=org_id,
            data={"owner_id": str(owner_id), "locale": str((org.settings or {}).get("locale", ""))},
            actor_id=owner_id,
        ),
    )
    await session.flush()
    return org
