from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import EmailStr, Field

from lovedcrm.core.schemas import Out, StrictIn
from lovedcrm.organizations.permissions import Role


class OrganizationOut(Out):
    id: uuid.UUID
    name: str
    slug: str
    plan_tier: str
    settings: dict[str, Any] | None
    created_at: datetime | None


class OrganizationUpdateIn(StrictIn):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    settings: dict[str, Any] | None = None


class OrganizationCreateIn(StrictIn):
    name: str = Field(min_length=1, max_length=255)


class MemberOut(Out):
    id: uuid.UUID
    user_id: uuid.UUID
    email: str
    full_name: str
    role: str
    permissions: dict[str, Any]
    is_active: bool | None
    joined_at: datetime | None


class MemberUpdateIn(StrictIn):
    role: Role | None = None
    permissions: dict[str, bool] | None = None
    is_active: bool | None = None


class InvitationIn(StrictIn):
    email: EmailStr
    role: Role = Role.SALES


class InvitationOut(Out):
    id: uuid.UUID
    email: str
    role: str
    expires_at: datetime
    created_at: datetime | None


class InvitationCreatedOut(InvitationOut):
    accept_url: str


class InvitationAcceptIn(StrictIn):
    token: str = Field(min_length=10, max_length=200)
    full_name: str | None = Field(default=None, min_length=1, max_length=255)
    password: str | None = Field(default=None, min_length=1, max_length=256)
