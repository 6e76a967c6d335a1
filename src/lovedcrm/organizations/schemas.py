from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from lovedcrm.core.schemas import Out, StrictIn

# Settings the app keeps for itself: not shown, so a client can send back what it read.
# service.CURSOR_KEY; "ai": assistant.ai_settings (it holds an encrypted key).
INTERNAL_SETTINGS = frozenset({"assignment_cursor", "ai"})


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
