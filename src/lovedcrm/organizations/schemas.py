from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import EmailStr, Field, field_validator

from lovedcrm.core.schemas import Out, StrictIn
from lovedcrm.leads.assignment import CURSOR_KEY
from lovedcrm.organizations.permissions import Role

# Settings the app keeps for itself: not shown, so a client can send back what it read.
INTERNAL_SETTINGS = frozenset({CURSOR_KEY})


class OrganizationOut(Out):
    id: uuid.UUID
    name: str
    slug: str
    plan_tier: str
    settings: dict[str, Any] | None
    created_at: datetime | None

    @field_validator("settings")
    @classmethod
    def _public_settings(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if not value:
            return value
        return {k: v for k, v in value.items() if k not in INTERNAL_SETTINGS}


class OrganizationUpdateIn(StrictIn):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    settings: dict[str, Any] | None = Field(
        default=None,
        description="Merged into the current settings (keys not named keep their value): "
        "`locale` (pt-BR, en), `currency` (BRL, USD, EUR), `timezone`, `phone_region`, "
        "`assignment` (`manual`, or `round_robin` among the active sales members), "
        "`primary_color` (#RRGGBB), `stale_days` (1-365), `logo` (null removes it) and "
        "`custom_fields`: the whole list of lead custom fields, each `{key, label, type, "
        "options, required}` with `type` one of text, number, date, select, checkbox and "
        "`options` (a list of texts) for select.",
    )


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
