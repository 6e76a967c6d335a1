from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import ConfigDict, EmailStr, Field, field_validator

from lovedcrm.core.fields import partial_model
from lovedcrm.core.schemas import Out, StrictIn
from lovedcrm.web.i18n import N_

LeadStatus = Literal["active", "inactive", "converted", "lost"]
LeadSort = Literal[
    "-created_at",
    "created_at",
    "-updated_at",
    "updated_at",
    "full_name",
    "-full_name",
    "-lead_score",
    "lead_score",
    "relevance",
]


_LEAD_EXAMPLE: dict[str, Any] = {
    "full_name": "João da Silva",
    "email": "joao@example.com",
    "phone": "(11) 98765-4321",
    "company": "Padaria Pão Quente",
    "source": "whatsapp",
    "estimated_value": "1500.00",
    "custom_fields": {"segment": "varejo"},
}


class LeadIn(StrictIn):
    model_config = ConfigDict(json_schema_extra={"examples": [_LEAD_EXAMPLE]})

    full_name: str = Field(min_length=1, max_length=255, examples=["João da Silva"])
    email: EmailStr | None = Field(default=None, max_length=255, examples=["joao@example.com"])
    phone: str | None = Field(default=None, max_length=50, examples=["(11) 98765-4321"])
    company: str | None = Field(default=None, max_length=255, examples=["Padaria Pão Quente"])
    job_title: str | None = Field(default=None, max_length=255, examples=["Sócio"])
    stage_id: uuid.UUID | None = None
    assigned_to: uuid.UUID | None = Field(
        default=None,
        description="The member the lead goes to. Left out, the organization's "
        "`settings.assignment` decides: `round_robin` gives it to the next active sales "
        "member, `manual` to nobody; `null` leaves it unassigned either way. Without "
        "`leads:write_all` a new lead is always yours.",
    )
    source: str | None = Field(default=None, max_length=100, examples=["whatsapp"])
    estimated_value: Decimal | None = Field(
        default=None, ge=0, max_digits=10, decimal_places=2, examples=["1500.00"]
    )
    probability_percentage: int | None = Field(default=None, ge=0, le=100, examples=[40])
    custom_fields: dict[str, Any] | None = Field(
        default=None,
        description="Values for the organization's custom fields (settings.custom_fields).",
        examples=[{"segment": "varejo"}],
    )
    allow_duplicate: bool = Field(
        default=False,
        description="Create the lead even when it looks like a duplicate of an existing one "
        "(same e-mail or phone, or a very similar name and company); otherwise 409 "
        "`duplicate_lead` lists the candidates.",
    )


def _not_null(schema: dict[str, Any]) -> None:
    """The JSON Schema of an optional field that refuses null: its one non-null variant."""
    variants = [v for v in schema.pop("anyOf", []) if v.get("type") != "null"]
    schema.pop("default", None)
    if len(variants) == 1:
        schema.update(variants[0])


class LeadUpdateIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"stage_id": "6f1c1f9e-6d1a-4a53-9d1b-2a4f2b7c9e10"},
                {"status": "lost", "lost_reason": "Preço"},
            ]
        }
    )

    # Leave out to keep; a lead always has a name and a stage, so null is refused (422).
    full_name: str | None = Field(
        default=None, min_length=1, max_length=255, json_schema_extra=_not_null
    )
    email: EmailStr | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=50)
    company: str | None = Field(default=None, max_length=255)
    job_title: str | None = Field(default=None, max_length=255)
    stage_id: uuid.UUID | None = Field(default=None, json_schema_extra=_not_null)
    assigned_to: uuid.UUID | None = None
    source: str | None = Field(default=None, max_length=100)
    estimated_value: Decimal | None = Field(default=None, ge=0, max_digits=10, decimal_places=2)
    probability_percentage: int | None = Field(default=None, ge=0, le=100)
    custom_fields: dict[str, Any] | None = Field(
        default=None,
        description="Merged into the lead's values; a key set to null is removed.",
    )
    status: LeadStatus | None = Field(default=None, examples=["converted"])
    lost_reason: str | None = Field(default=None, max_length=255, examples=["Preço"])

    @field_validator("full_name", "stage_id")
    @classmethod
    def _given_means_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(N_("Cannot be null: leave the field out to keep its value."))
        return value


class LeadOut(Out):
    id: uuid.UUID
    organization_id: uuid.UUID
    full_name: str
    email: str | None
    phone: str | None
    company: str | None
    job_title: str | None
    stage_id: uuid.UUID
    assigned_to: uuid.UUID | None
    source: str | None
    lead_score: int | None
    estimated_value: Decimal | None
    probability_percentage: int | None
    custom_fields: dict[str, Any] | None
    status: str | None
    converted_at: datetime | None
    lost_reason: str | None
    last_activity_at: datetime | None = None
    created_at: datetime | None
    updated_at: datetime | None


class LeadPageOut(Out):
    items: list[LeadOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


# With `fields`, each lead carries only the fields asked for.
LeadFieldsOut = partial_model(LeadOut, "LeadFieldsOut")


class LeadFieldsPageOut(Out):
    items: list[LeadFieldsOut]  # type: ignore[valid-type]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


# --- activities ---------------------------------------------------------------------------

ActivityType = Literal["note", "call", "email", "meeting", "task"]


class NoteIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"title": "Ligação", "description": "Pediu proposta até sexta."}]
        }
    )

    title: str | None = Field(default=None, min_length=1, max_length=255, examples=["Ligação"])
    description: str = Field(min_length=1, max_length=20000, examples=["Pediu proposta até sexta."])


class ActivityIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "task",
                    "title": "Enviar proposta",
                    "metadata": {"due_at": "2030-01-31T14:00:00-03:00", "done": False},
                },
                {"type": "call", "title": "Primeiro contato", "duration_minutes": 12},
            ]
        }
    )

    type: ActivityType = Field(examples=["task"])
    title: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=20000)
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="For a task: `due_at` (ISO 8601 datetime, required) and `done` (boolean).",
    )
    duration_minutes: int | None = Field(default=None, ge=0, le=100000)


class ActivityUpdateIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"done": True}, {"description": "Texto corrigido"}]}
    )

    title: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=20000)
    metadata: dict[str, Any] | None = Field(
        default=None, description="Merged into the current metadata."
    )
    duration_minutes: int | None = Field(default=None, ge=0, le=100000)
    done: bool | None = Field(default=None, description="Mark a task done (or not done).")


class ActivityOut(Out):
    id: uuid.UUID
    lead_id: uuid.UUID
    user_id: uuid.UUID | None
    type: str = Field(validation_alias="activity_type", examples=["note"])
    title: str
    description: str | None
    metadata: dict[str, Any] | None = Field(validation_alias="metadata_")
    duration_minutes: int | None
    created_at: datetime | None


class ActivityPageOut(Out):
    items: list[ActivityOut]
    next_cursor: str | None


# With `fields`, each activity carries only the fields asked for.
ActivityFieldsOut = partial_model(ActivityOut, "ActivityFieldsOut")


class ActivityFieldsPageOut(Out):
    items: list[ActivityFieldsOut]  # type: ignore[valid-type]
    next_cursor: str | None
