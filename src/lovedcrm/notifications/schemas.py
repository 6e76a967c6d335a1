"""The notifications API's bodies and answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from lovedcrm.core.schemas import Out, StrictIn

NotificationType = Literal[
    "lead_assigned",
    "message_received",
    "missed_call",
    "task_due",
    "mention",
    "ai_handoff",
    "import_finished",
    "webhook_disabled",
    "payment_failed",
    "plan_limit_near",
]
Channel = Literal["in_app", "email", "digest", "off"]


class NotificationOut(Out):
    id: uuid.UUID
    notification_type: str
    title: str
    link: str | None
    lead_id: uuid.UUID | None
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime


class NotificationPageOut(Out):
    items: list[NotificationOut]
    next_cursor: str | None
    unread: int


class UnreadOut(Out):
    unread: int


class MarkedOut(Out):
    marked: int


class PreferencesOut(Out):
    preferences: dict[str, Channel] = Field(
        description="Every notification type with its channel: in_app (the bell only), "
        "email (the bell and an e-mail now), digest (the bell and the daily digest), off."
    )


class PreferencesIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"preferences": {"lead_assigned": "email", "task_due": "digest"}}]
        }
    )
    preferences: dict[NotificationType, Channel] = Field(
        min_length=1, description="The types to change, each with its channel."
    )
