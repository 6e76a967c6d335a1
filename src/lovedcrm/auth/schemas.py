from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import EmailStr, Field, StrictBool

from lovedcrm.auth.permissions import PERMISSIONS, Role
from lovedcrm.core.schemas import Out, StrictIn


class SignupIn(StrictIn):
    email: EmailStr = Field(examples=["ana@example.com.br"])
    password: str = Field(min_length=1, max_length=256, examples=["c0rrect-horse-battery"])
    full_name: str = Field(min_length=1, max_length=255, examples=["Ana Souza"])
    organization_name: str = Field(min_length=1, max_length=255, examples=["Souza Imóveis"])
    phone: str | None = Field(default=None, max_length=50)
    locale: Literal["pt-BR", "en"] = "pt-BR"


class LoginIn(StrictIn):
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)
    organization_id: uuid.UUID | None = None


class RefreshIn(StrictIn):
    refresh_token: str = Field(min_length=10, max_length=200)


class SwitchOrgIn(StrictIn):
    organization_id: uuid.UUID


class TokenOut(Out):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    organization_id: uuid.UUID | None


class UserOut(Out):
    id: uuid.UUID
    email: str
    full_name: str
    phone: str | None
    email_verified: bool | None
    last_login_at: datetime | None
    created_at: datetime | None


class MembershipOut(Out):
    organization_id: uuid.UUID
    organization_name: str
    organization_slug: str
    role: str


class MeOut(Out):
    user: UserOut
    organization_id: uuid.UUID | None
    role: str | None
    permissions: list[str]
    memberships: list[MembershipOut]


class SignupOut(Out):
    user: UserOut
    organization_id: uuid.UUID
    organization_slug: str
    tokens: TokenOut


class EmailIn(StrictIn):
    email: EmailStr


class TokenIn(StrictIn):
    token: str = Field(min_length=10, max_length=200)


class PasswordResetIn(StrictIn):
    token: str = Field(min_length=10, max_length=200)
    new_password: str = Field(min_length=1, max_length=256)


class ChangePasswordIn(StrictIn):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class DetailOut(Out):
    detail: str


class MemberOut(Out):
    id: uuid.UUID
    user_id: uuid.UUID
    email: str
    full_name: str
    role: str
    permissions: dict[str, Any]
    is_active: bool | None
    joined_at: datetime | None


def _permission_names(schema: dict[str, Any]) -> None:
    """The overrides' keys are permission names (others are refused with 422)."""
    for variant in schema.get("anyOf", [schema]):
        if variant.get("type") == "object":
            variant["propertyNames"] = {"enum": sorted(PERMISSIONS)}


class MemberUpdateIn(StrictIn):
    role: Role | None = None
    permissions: dict[str, StrictBool] | None = Field(
        default=None,
        description="Overrides of the role's permissions: true grants, false revokes.",
        json_schema_extra=_permission_names,
    )
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
