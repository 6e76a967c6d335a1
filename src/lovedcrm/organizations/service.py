"""Organizations, members, roles and invitations."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth import service as auth_service
from lovedcrm.auth.deps import Principal
from lovedcrm.auth.models import User
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from lovedcrm.core.mail import get_mailer
from lovedcrm.db.tenant import after_commit, set_tenant
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.assignment import ASSIGNMENT_MODES
from lovedcrm.organizations.models import Invitation, Organization, OrganizationMember
from lovedcrm.organizations.permissions import Role, validate_overrides

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
CURRENCIES = ("BRL", "USD", "EUR")


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
        errors += leads_service.custom_field_definition_errors(settings["custom_fields"])
    days = settings.get("stale_days", 7)
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
    return [dict(d) for d in leads_service.custom_field_definitions(org)]


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


# --- members ------------------------------------------------------------------------------


async def list_members(
    session: AsyncSession, principal: Principal
) -> list[tuple[OrganizationMember, User]]:
    principal.require("members:read")
    result = await session.execute(
        select(OrganizationMember, User)
        .join(User, User.id == OrganizationMember.user_id)
        .where(OrganizationMember.organization_id == principal.org())
        .order_by(OrganizationMember.joined_at)
    )
    return [(m, u) for m, u in result.all()]


async def _get_member(
    session: AsyncSession, principal: Principal, member_id: uuid.UUID
) -> OrganizationMember:
    member = await session.get(OrganizationMember, member_id)
    # RLS already hides other organizations' rows; the explicit check keeps a future
    # policy change from turning into a leak.
    if member is None or member.organization_id != principal.org():
        raise NotFound("No member with that id in this organization.", code="member_not_found")
    return member


async def _admins_left(session: AsyncSession, org_id: uuid.UUID, excluding: uuid.UUID) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(OrganizationMember)
        .where(
            OrganizationMember.organization_id == org_id,
            OrganizationMember.role == Role.ADMIN.value,
            OrganizationMember.is_active.is_(True),
            OrganizationMember.id != excluding,
        )
    )
    return int(result.scalar_one())


async def update_member(
    session: AsyncSession,
    principal: Principal,
    member_id: uuid.UUID,
    *,
    role: str | None = None,
    permissions: dict[str, Any] | None = None,
    is_active: bool | None = None,
) -> OrganizationMember:
    principal.require("members:manage")
    member = await _get_member(session, principal, member_id)
    before = {
        "role": member.role,
        "permissions": dict(member.permissions or {}),
        "is_active": member.is_active,
    }
    demoting = (role is not None and role != Role.ADMIN.value) or is_active is False
    if (
        member.role == Role.ADMIN.value
        and demoting
        and await _admins_left(session, member.organization_id, member.id) == 0
    ):
        raise Conflict("An organization needs at least one active admin.", code="last_admin")
    if role is not None:
        member.role = Role(role).value
    if permissions is not None:
        try:
            member.permissions = validate_overrides(permissions)
        except ValueError as exc:
            raise ValidationFailed(str(exc), code="invalid_permissions") from exc
    if is_active is not None:
        member.is_active = is_active
    await session.flush()
    after = {
        "role": member.role,
        "permissions": dict(member.permissions or {}),
        "is_active": member.is_active,
    }
    await audit.record(
        session,
        action="role_change" if before["role"] != after["role"] else "member_update",
        resource_type="organization_member",
        resource_id=member.id,
        organization_id=member.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(before, after),
    )
    return member


async def remove_member(session: AsyncSession, principal: Principal, member_id: uuid.UUID) -> None:
    principal.require("members:manage")
    member = await _get_member(session, principal, member_id)
    if (
        member.role == Role.ADMIN.value
        and await _admins_left(session, member.organization_id, member.id) == 0
    ):
        raise Conflict("An organization needs at least one active admin.", code="last_admin")
    snapshot = {"user_id": member.user_id, "role": member.role}
    await session.delete(member)
    await session.flush()
    await audit.record(
        session,
        action="member_remove",
        resource_type="organization_member",
        resource_id=member_id,
        organization_id=principal.org(),
        user_id=principal.user_id,
        changes={"before": snapshot},
    )


async def create_invitation(
    session: AsyncSession, settings: Settings, principal: Principal, *, email: str, role: str
) -> tuple[Invitation, str]:
    principal.require("members:manage")
    email = auth_service.valid_email(email)
    role = Role(role).value
    org = await get_organization(session, principal)
    existing = await session.execute(
        select(OrganizationMember.id)
        .join(User, User.id == OrganizationMember.user_id)
        .where(OrganizationMember.organization_id == org.id, User.email == email)
    )
    if existing.first() is not None:
        raise Conflict(f"{email} is already a member of this organization.", code="already_member")
    # A new invitation replaces a pending one for the same email.
    await session.execute(
        update(Invitation)
        .where(
            Invitation.organization_id == org.id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )
    token = security.new_token()
    invitation = Invitation(
        organization_id=org.id,
        email=email,
        role=role,
        token_hash=security.token_hash(token),
        invited_by=principal.user_id,
        expires_at=security.utcnow() + timedelta(days=settings.invitation_days),
    )
    session.add(invitation)
    await session.flush()
    await audit.record(
        session,
        action="invitation_create",
        resource_type="invitation",
        resource_id=invitation.id,
        organization_id=org.id,
        user_id=principal.user_id,
        changes={"after": {"email": email, "role": role}},
    )
    link = f"{settings.base_url}/invitations/accept?token={token}"
    mailer, inviter, org_name = get_mailer(settings), principal.user.full_name, org.name
    after_commit(
        session,
        lambda: mailer.send(
            email,
            f"{inviter} convidou você para {org_name} no Loved CRM",
            f"{inviter} convidou você para a equipe {org_name} no Loved CRM.\n"
            f"Aceite o convite: {link}\n\n{inviter} invited you to join {org_name} on Loved CRM.\n"
            f"Accept the invitation: {link}\n",
        ),
    )
    return invitation, token


async def list_invitations(session: AsyncSession, principal: Principal) -> list[Invitation]:
    principal.require("members:manage")
    result = await session.execute(
        select(Invitation)
        .where(
            Invitation.organization_id == principal.org(),
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .order_by(Invitation.created_at.desc())
    )
    return list(result.scalars())


async def revoke_invitation(
    session: AsyncSession, principal: Principal, invitation_id: uuid.UUID
) -> None:
    principal.require("members:manage")
    invitation = await session.get(Invitation, invitation_id)
    if invitation is None or invitation.organization_id != principal.org():
        raise NotFound("No invitation with that id.", code="invitation_not_found")
    invitation.revoked_at = security.utcnow()
    await audit.record(
        session,
        action="invitation_revoke",
        resource_type="invitation",
        resource_id=invitation.id,
        organization_id=invitation.organization_id,
        user_id=principal.user_id,
    )


async def invitation_by_token(session: AsyncSession, token: str) -> Invitation:
    """Find a pending invitation by its token. Its organization is unknown until then, so
    the look-up goes through the security-definer function, then the tenant is set."""
    digest = security.token_hash(token)
    org_id = (
        await session.execute(text("SELECT lovedcrm_invitation_org(:h)"), {"h": digest})
    ).scalar()
    if org_id is None:
        raise Unauthorized(
            "This invitation is invalid, expired or already used.", code="invalid_invitation"
        )
    await set_tenant(session, org_id, None)
    result = await session.execute(select(Invitation).where(Invitation.token_hash == digest))
    invitation = result.scalar_one()
    return invitation


async def accept_invitation(
    session: AsyncSession,
    settings: Settings,
    *,
    token: str,
    user: User | None,
    full_name: str | None = None,
    password: str | None = None,
) -> tuple[User, Invitation]:
    """Accept as the signed-in user, or create the account (email from the invitation)."""
    invitation = await invitation_by_token(session, token)
    if user is None:
        existing = await auth_service.get_user_by_email(session, invitation.email)
        if existing is not None:
            raise Conflict(
                "An account with this email exists. Log in to accept.", code="email_taken"
            )
        if not full_name or not password:
            raise ValidationFailed("Full name and password are needed to create your account.")
        auth_service.check_password(password, email=invitation.email)
        user = User(
            email=invitation.email,
            password_hash=security.hash_password(password),
            full_name=full_name,
            is_active=True,
            email_verified=True,  # the invitation link proves the address
        )
        session.add(user)
        await session.flush()
    elif auth_service.normalize_email(user.email) != invitation.email:
        raise Forbidden(
            "This invitation was sent to another email address.", code="invitation_email_mismatch"
        )
    await set_tenant(session, invitation.organization_id, user.id)
    already = await session.execute(
        select(OrganizationMember).where(
            OrganizationMember.organization_id == invitation.organization_id,
            OrganizationMember.user_id == user.id,
        )
    )
    if already.scalar_one_or_none() is None:
        session.add(
            OrganizationMember(
                organization_id=invitation.organization_id, user_id=user.id, role=invitation.role
            )
        )
    invitation.accepted_at = security.utcnow()
    invitation.accepted_by = user.id
    await session.flush()
    await audit.record(
        session,
        action="invitation_accept",
        resource_type="invitation",
        resource_id=invitation.id,
        organization_id=invitation.organization_id,
        user_id=user.id,
        changes={"after": {"role": invitation.role}},
    )
    return user, invitation


async def get_organization_by_id(session: AsyncSession, organization_id: uuid.UUID) -> Organization:
    org = await session.get(Organization, organization_id)
    if org is None:
        raise NotFound("Organization not found.")
    return org
