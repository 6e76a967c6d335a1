"""Agenda API shapes."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field

from lovedcrm.core.schemas import IsoDateTime, Out, StrictIn

Email = Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Status = Literal["scheduled", "completed", "cancelled", "no_show"]


class MeetingIn(StrictIn):
    title: str = Field(min_length=1, max_length=255)
    start_time: IsoDateTime
    end_time: IsoDateTime
    timezone: str | None = Field(
        default=None, max_length=100, description="IANA name; default: the organization's"
    )
    attendees: list[Email] = Field(default_factory=list, max_length=50)
    lead_id: uuid.UUID | None = None
    description: str | None = Field(default=None, max_length=10_000)
    reminder_minutes: int | None = Field(default=None, ge=0, le=10_080)
    video: Literal["jitsi", "google", "none"] = "jitsi"
    whatsapp_template_id: uuid.UUID | None = Field(
        default=None,
        description="An approved WhatsApp template (mapped to a Meta template) sent to the lead "
        "before the meeting; needs lead_id",
    )
    whatsapp_reminder_minutes: Literal[60, 180, 1440] | None = Field(
        default=None, description="How long before the start the WhatsApp reminder goes out"
    )


class MeetingUpdateIn(StrictIn):
    title: str | None = Field(default=None, min_length=1, max_length=255)
    start_time: IsoDateTime | None = None
    end_time: IsoDateTime | None = None
    timezone: str | None = Field(default=None, max_length=100)
    attendees: list[Email] | None = Field(default=None, max_length=50)
    lead_id: uuid.UUID | None = None
    description: str | None = Field(default=None, max_length=10_000)
    reminder_minutes: int | None = Field(default=None, ge=0, le=10_080)
    status: Status | None = None


class WhatsappReminderOut(Out):
    template_id: uuid.UUID
    minutes: int


class MeetingOut(Out):
    id: uuid.UUID
    title: str
    description: str | None
    start_time: IsoDateTime
    end_time: IsoDateTime
    timezone: str
    attendees: list[str] | None
    lead_id: uuid.UUID | None
    created_by: uuid.UUID
    status: str | None
    meeting_url: str | None
    meeting_password: str | None
    source: str
    sync_state: str | None
    sync_error: str | None
    ics_sequence: int
    reminder_minutes: int | None
    whatsapp_reminder: WhatsappReminderOut | None = None


class MeetingCreatedOut(MeetingOut):
    conflicts: list[uuid.UUID] = Field(
        default_factory=list, description="The member's overlapping scheduled meetings"
    )


class MeetingListOut(Out):
    items: list[MeetingOut]


class GoogleCalendarOut(Out):
    id: str = Field(max_length=255)
    summary: str = Field(max_length=255)
    primary: bool
    access_role: str = Field(description="owner, writer, reader or freeBusyReader")
    writable: bool = Field(description="Whether it can be chosen for the sync (owner/writer)")
    selected: bool


class GoogleCalendarListOut(Out):
    items: list[GoogleCalendarOut]


class GoogleCalendarChoiceIn(StrictIn):
    calendar_id: str = Field(min_length=1, max_length=255)


class GoogleCalendarChosenOut(Out):
    calendar_id: str
    calendar_name: str | None
    sync_status: str | None
