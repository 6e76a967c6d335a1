"""Organizations (the tenants), their members and pending invitations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import (
    Base,
    TenantMixin,
    created_at_col,
    jsonb_object,
    now_not_null,
    org_id_unique,
    updated_at_col,
    uuid_pk,
)

PLAN_TIERS = ("starter", "pro", "enterprise")
ROLES = ("admin", "manager", "sales", "viewer")

_ROLE_CHECK = "role IN ('admin', 'manager', 'sales', 'viewer')"


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (
        CheckConstraint("plan_tier IN ('starter', 'pro', 'enterprise')", name="plan_tier"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    plan_tier: Mapped[str] = mapped_column(
        String(50), server_default=text("'starter'"), default="starter"
    )
    settings: Mapped[dict[str, Any] | None] = jsonb_object()
    features_enabled: Mapped[dict[str, Any] | None] = jsonb_object()
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class OrganizationMember(TenantMixin, Base):
    __tablename__ = "organization_members"
    __table_args__ = (
        UniqueConstraint("organization_id", "user_id"),
        org_id_unique("organization_members"),
        # Deviation: the spec's default 'member' is not one of the roles it lists.
        CheckConstraint(_ROLE_CHECK, name="role"),
        Index("ix_organization_members_org_id", "organization_id"),
        Index("ix_organization_members_user_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(50), server_default=text("'sales'"), default="sales")
    permissions: Mapped[dict[str, Any] | None] = jsonb_object()
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("true"), default=True
    )
    joined_at: Mapped[datetime | None] = created_at_col()


class Invitation(TenantMixin, Base):
    """Not in the spec: an emailed, single-use invitation to join an organization."""

    __tablename__ = "invitations"
    __table_args__ = (
        org_id_unique("invitations"),
        CheckConstraint(_ROLE_CHECK, name="role"),
        Index(
            "ix_invitations_pending_email",
            "organization_id",
            "email",
            unique=True,
            postgresql_where=text("accepted_at IS NULL AND revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(50))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    expires_at: Mapped[datetime] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column()
    accepted_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = now_not_null()
