"""Accounts and access: users (global), their sessions and one-time tokens; per organization,
memberships (a role), pending invitations and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB
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


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(50))
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("true"), default=True
    )
    email_verified: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("false"), default=False
    )
    last_login_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


class UserSession(Base):
    """Not in the spec: a browser session (``web``) or an API refresh token (``api``).
    Only the SHA-256 of the opaque token is stored.

    A refresh rotates the row into a new one of the same ``family_id`` (one per log-in) and
    stamps ``rotated_at``; a rotated token presented again is a stolen copy, and the whole
    family is revoked (``auth.service.refresh``)."""

    __tablename__ = "user_sessions"
    __table_args__ = (
        CheckConstraint("kind IN ('web', 'api')", name="kind"),
        Index("ix_user_sessions_user_id", "user_id"),
        Index("ix_user_sessions_family_id", "family_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active_organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL")
    )
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = now_not_null()
    last_seen_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    family_id: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4)
    rotated_at: Mapped[datetime | None] = mapped_column()


class LoginAttempts(Base):
    """Not in the spec: the log-in throttle (UNLOGGED, global). One row per SHA-256 of
    (e-mail, client address): the password checks since ``window_start`` (the first one),
    counted before each check (``auth.service.login``)."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_window_start", "window_start"),
        {"prefixes": ["UNLOGGED"]},
    )

    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer)


class UserToken(Base):
    """Not in the spec: single-use email-verification / password-reset tokens (hashed)."""

    __tablename__ = "user_tokens"
    __table_args__ = (
        CheckConstraint("purpose IN ('verify_email', 'reset_password')", name="purpose"),
        Index("ix_user_tokens_user_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(30))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = now_not_null()


class ApiKey(TenantMixin, Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        org_id_unique("api_keys"),
        Index("ix_api_keys_org_id", "organization_id"),
        Index("ix_api_keys_hash", "api_key_hash"),
        Index("ix_api_keys_prefix", "api_key_prefix"),
        Index(
            "ix_api_keys_org_active",
            "organization_id",
            "is_active",
            postgresql_where=text("is_active = TRUE"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    key_name: Mapped[str] = mapped_column(String(255))
    api_key_hash: Mapped[str] = mapped_column(String(255), unique=True)
    api_key_prefix: Mapped[str] = mapped_column(String(20))
    scopes: Mapped[list[Any]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb"), default=list
    )
    rate_limit_per_hour: Mapped[int | None] = mapped_column(
        Integer, server_default=text("1000"), default=1000
    )
    last_used_at: Mapped[datetime | None] = mapped_column()
    total_requests: Mapped[int | None] = mapped_column(Integer, server_default=text("0"), default=0)
    is_active: Mapped[bool | None] = mapped_column(
        Boolean, server_default=text("true"), default=True
    )
    expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime | None] = created_at_col()
    updated_at: Mapped[datetime | None] = updated_at_col()


ROLES = ("admin", "manager", "sales", "viewer")
_ROLE_CHECK = "role IN ('admin', 'manager', 'sales', 'viewer')"


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
