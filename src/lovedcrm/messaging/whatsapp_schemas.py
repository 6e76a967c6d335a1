"""Request and response models of the WhatsApp API (configurations, switching, messages)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lovedcrm.core.schemas import Out, StrictIn


class RateLimitsIn(StrictIn):
    messages_per_second: int | None = Field(default=None, ge=1, le=1000)
    messages_per_minute: int | None = Field(default=None, ge=1, le=60000)


class ConfigIn(StrictIn):
    """A provider configuration. Which fields are required depends on ``provider_type``:
    ``business_api`` needs ``business_phone_id``, ``access_token`` and ``app_secret``;
    ``web_unofficial`` needs ``session_id`` and ``bridge_url``; ``sandbox`` needs nothing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"provider_type": "sandbox", "label": "Demo"},
                {
                    "provider_type": "business_api",
                    "business_phone_id": "106540352242922",
                    "access_token": "EAAG...",
                    "app_secret": "0f1e2d...",
                },
                {
                    "provider_type": "web_unofficial",
                    "session_id": "default",
                    "bridge_url": "http://waha:3000",
                    "bridge_api_key": "secret",
                },
            ]
        }
    )

    provider_type: Literal["business_api", "web_unofficial", "sandbox"]
    label: str | None = Field(default=None, max_length=100, examples=["Comercial"])
    # business_api
    business_phone_id: str | None = Field(default=None, max_length=100, examples=["1065..."])
    business_account_id: str | None = Field(default=None, max_length=100)
    access_token: str | None = Field(default=None, max_length=4096)
    app_secret: str | None = Field(default=None, max_length=512)
    api_version: str | None = Field(default=None, pattern=r"^v\d{1,3}\.\d$", examples=["v21.0"])
    graph_base_url: str | None = Field(
        default=None,
        max_length=500,
        description="Another Graph API host (a BSP mirror); default https://graph.facebook.com",
    )
    # web_unofficial
    session_id: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    bridge_url: str | None = Field(default=None, max_length=500, examples=["http://waha:3000"])
    bridge_api_key: str | None = Field(default=None, max_length=512)
    rate_limits: RateLimitsIn | None = None


class ConfigUpdateIn(StrictIn):
    """Fields to change; a secret left out (or empty) keeps its stored value."""

    label: str | None = Field(default=None, max_length=100)
    business_phone_id: str | None = Field(default=None, max_length=100)
    business_account_id: str | None = Field(default=None, max_length=100)
    access_token: str | None = Field(default=None, max_length=4096)
    app_secret: str | None = Field(default=None, max_length=512)
    api_version: str | None = Field(default=None, pattern=r"^v\d{1,3}\.\d$")
    graph_base_url: str | None = Field(default=None, max_length=500)
    session_id: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    bridge_url: str | None = Field(default=None, max_length=500)
    bridge_api_key: str | None = Field(default=None, max_length=512)
    rate_limits: RateLimitsIn | None = None


class ConfigOut(BaseModel):
    id: uuid.UUID
    provider_type: str
    label: str | None
    is_active: bool
    business_phone_id: str | None
    business_account_id: str | None
    access_token: str | None = Field(description="Masked: only the last characters.")
    app_secret: str | None = Field(description="Masked.")
    api_version: str | None
    graph_base_url: str | None
    session_id: str | None
    bridge_url: str | None
    bridge_api_key: str | None = Field(description="Masked.")
    connection_status: str | None
    last_connected_at: datetime | None
    webhook_url: str | None = Field(description="Paste into Meta's console or the bridge.")
    webhook_verify_token: str | None = Field(
        description="The verify token to paste into Meta's console (business_api)."
    )
    rate_limits: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


class ConnectionOut(BaseModel):
    ok: bool
    status: str
    detail: str


class QrOut(BaseModel):
    status: str
    mimetype: str | None
    data_base64: str | None


class MigrationOut(Out):
    id: uuid.UUID
    migration_type: str
    from_provider: str
    to_provider: str
    status: str | None
    migration_data: dict[str, Any] | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime | None


class SendIn(StrictIn):
    """A text (``content``) or a template (``template_id``), not both."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"content": "Oi Ana, segue a proposta!"},
                {"template_id": "6f1c1f9e-6d1a-4a53-9d1b-2a4f2b7c9e10"},
            ]
        }
    )

    content: str | None = Field(default=None, min_length=1, max_length=4096)
    template_id: uuid.UUID | None = None
    reply_to_message_id: uuid.UUID | None = None


class AttachmentOut(Out):
    id: uuid.UUID
    file_name: str
    file_type: str
    file_size: int
    url: str


class MessageOut(BaseModel):
    id: uuid.UUID
    lead_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    provider_type: str
    provider_message_id: str | None
    direction: str
    message_type: str | None
    content: str | None
    from_number: str | None
    to_number: str | None
    contact_name: str | None
    status: str | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_reason: str | None
    metadata: dict[str, Any]
    attachments: list[AttachmentOut]
    created_at: datetime | None


class ConversationOut(BaseModel):
    lead_id: uuid.UUID
    lead_name: str
    phone: str | None
    assigned_to: uuid.UUID | None
    last_message: str | None
    last_direction: str
    last_status: str | None
    last_message_at: datetime
    unread: int


class InjectIn(StrictIn):
    """An inbound message typed into the sandbox provider."""

    from_number: str = Field(min_length=3, max_length=50, examples=["(11) 98765-4321"])
    contact_name: str | None = Field(default=None, max_length=255)
    content: str = Field(min_length=1, max_length=4096)
