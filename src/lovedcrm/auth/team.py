"""The team: an organization's members (people with a role) and the invitations that add
them. Members with ``members:read`` see the list; ``members:manage`` invites, changes roles,
removes; an organization always keeps one active admin.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth import service as auth_service
from lovedcrm.auth.models import Invitation, OrganizationMember, User
from lovedcrm.auth.permissions import Role, validate_overrides
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.emails import normalize_email, valid_email
from lovedcrm.core.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.mail import get_mailer
from lovedcrm.core.principal import Principal
from lovedcrm.db.tenant import after_commit, set_tenant
from lovedcrm.organizations import plans
from lovedcrm.organizations import service as organizations


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
    return await get_in_org(
        session,
        OrganizationMember,
        member_id,
        principal,
        NotFound("No member with that id in this organization.", code="member_not_found"),
    )


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
    await audit.record_by(
        session, principal, "member_remove", "organization_member", member_id, {"before": snapshot}
    )


async def seats_taken(session: AsyncSession, organization_id: uuid.UUID) -> int:
    """Active members plus pending invitations (the plan's ``seats`` limit)."""
    members = await session.execute(
        select(func.count())
        .select_from(OrganizationMember)
        .where(
            OrganizationMember.organization_id == organization_id,
            OrganizationMember.is_active.is_not(False),
        )
    )
    pending = await session.execute(
        select(func.count())
        .select_from(Invitation)
        .where(
            Invitation.organization_id == organization_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > security.utcnow(),
        )
    )
    return int(members.scalar_one()) + int(pending.scalar_one())


async def create_invitation(
    session: AsyncSession, settings: Settings, principal: Principal, *, email: str, role: str
) -> tuple[Invitation, str]:
    principal.require("members:manage")
    email = valid_email(email)
    role = Role(role).value
    org = await organizations.get_organization(session, principal)
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
    await plans.check_limit(
        session, org.id, "seats", lambda: seats_taken(session, org.id), settings=settings
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
    invitation = await get_in_org(
        session,
        Invitation,
        invitation_id,
        principal,
        NotFound("No invitation with that id.", code="invitation_not_found"),
    )
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
            password_hash=await security.hash_password(password),
            full_name=full_name,
            is_active=True,
            email_verified=True,  # the invitation link proves the address
        )
        session.add(user)
        await session.flush()
    elif normalize_email(user.email) != invitation.email:
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
