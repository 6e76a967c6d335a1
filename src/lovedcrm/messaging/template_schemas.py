from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from lovedcrm.core.schemas import Out, StrictIn

META_NAME_HELP = (
    "The Meta-approved WhatsApp template this one maps to (Cloud API): lowercase letters, "
    "digits and underscores. Outside the 24-hour window only mapped templates can be sent."
)
META_LANGUAGE_HELP = (
    "The language of the Meta template, as Meta writes it (`pt_BR`, `en_US`, `es`); "
    "required with `whatsapp_template_name`."
)


class TemplateIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Follow-up proposta",
                    "category": "follow_up",
                    "content": "Oi {{first_name}}, conseguiu avaliar a proposta para "
                    "{{company|sua empresa}}?",
                    "is_shared": True,
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=255, examples=["Follow-up proposta"])
    category: str = Field(min_length=1, max_length=100, examples=["follow_up"])
    content: str = Field(
        min_length=1,
        max_length=10000,
        description="Text with `{{variable}}` or `{{variable|fallback}}` placeholders.",
        examples=["Oi {{first_name}}, tudo bem?"],
    )
    parent_template_id: uuid.UUID | None = Field(
        default=None, description="Create an A/B variant of this template."
    )
    is_active: bool = True
    is_shared: bool = False
    whatsapp_template_name: str | None = Field(
        default=None, max_length=512, description=META_NAME_HELP, examples=["follow_up_proposta"]
    )
    whatsapp_language: str | None = Field(
        default=None, max_length=20, description=META_LANGUAGE_HELP, examples=["pt_BR"]
    )


class TemplateUpdateIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"content": "Olá {{lead_name}}!", "is_active": True}]}
    )

    name: str | None = Field(default=None, min_length=1, max_length=255)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    content: str | None = Field(default=None, min_length=1, max_length=10000)
    is_active: bool | None = None
    is_shared: bool | None = None
    whatsapp_template_name: str | None = Field(
        default=None,
        max_length=512,
        description=META_NAME_HELP + " `null` or an empty string removes the mapping.",
    )
    whatsapp_language: str | None = Field(
        default=None, max_length=20, description=META_LANGUAGE_HELP
    )


class TemplateVariable(Out):
    name: str = Field(examples=["first_name"])
    type: str = Field(examples=["string"])


class TemplateOut(Out):
    id: uuid.UUID
    created_by: uuid.UUID
    name: str
    category: str
    content: str
    variables: list[TemplateVariable]
    version: int | None
    parent_template_id: uuid.UUID | None
    usage_count: int | None
    success_rate: float | None
    is_active: bool | None
    is_shared: bool | None
    whatsapp_template_name: str | None
    whatsapp_language: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @field_validator("variables", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        return value or []
