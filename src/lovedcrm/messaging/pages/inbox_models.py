"""The inbox's page models: what the conversation list, a chat's bubbles and the composer show,
built from the services' answers (``messaging.inbox``, ``messaging.whatsapp``,
``messaging.templates``) in the reader's language. The routes are in ``pages.inbox``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast
from urllib.parse import urlencode

from babel.dates import format_time
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import User
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.models import Lead, PipelineStage
from lovedcrm.messaging import inbox, whatsapp
from lovedcrm.messaging import templates as templates_service
from lovedcrm.messaging.models import Message, MessageAttachment, WhatsappConfig
from lovedcrm.messaging.whatsapp_configs import active_config, provider_name
from lovedcrm.web.i18n import N_, Localizer
from lovedcrm.web.kit import Shell

FILTERS = ("all", "mine", "unassigned", "urgent", "negative")
LIST_PAGE = 50
THREAD_PAGE = 40
MAX_LIMIT = 200
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")

# How a conversation's last message reads in the list when it has no text.
TYPE_LABELS = {
    "image": N_("Photo"),
    "document": N_("Document"),
    "audio": N_("Audio"),
    "video": N_("Video"),
    "sticker": N_("Sticker"),
    "location": N_("Location"),
    "contacts": N_("Contact card"),
    "reaction": N_("Reaction"),
    "template": N_("Template"),
}
STATUS_LABELS = {
    "pending": N_("Waiting to be sent"),
    "sent": N_("Sent"),
    "delivered": N_("Delivered"),
    "read": N_("Read"),
    "failed": N_("Not sent"),
}


# --- page models ----------------------------------------------------------------------------


@dataclass
class FileView:
    id: str
    name: str
    type: str
    size: str
    url: str
    kind: str  # image | audio | video | file


@dataclass
class Bubble:
    id: str
    direction: str
    status: str
    status_label: str
    message_type: str
    content: str
    time: str
    when: str  # the full date and time, for the title
    iso: str
    day: str
    day_label: str
    failed_reason: str | None = None
    last_error: str | None = None
    attachment_status: str | None = None
    attachment_error: str | None = None
    template_name: str | None = None
    location_url: str | None = None
    files: list[FileView] = field(default_factory=list)
    sentiment: dict[str, Any] | None = None  # metadata.sentiment of an inbound message
    ai: bool = False  # sent by the AI agent (metadata.ai)


@dataclass
class TemplateChoice:
    id: str
    name: str
    approved: bool
    preview: str


@dataclass
class Composer:
    """What the composer offers for one lead, and why not more."""

    blocked: str | None  # permission | provider | phone | None
    provider_kind: str | None
    provider_label: str | None
    window: whatsapp.WindowState
    templates: list[TemplateChoice]

    @property
    def text_allowed(self) -> bool:
        return self.blocked is None and (not self.window.applies or self.window.open)

    @property
    def state(self) -> str:
        """A short name the page's script compares to know when to redraw the composer."""
        if self.blocked:
            return self.blocked
        return "text" if self.text_allowed else "templates"


# --- helpers --------------------------------------------------------------------------------


def chosen_filter(value: str | None) -> str:
    return value if value in FILTERS else "all"


def page_size(value: str | None, default: int) -> int:
    try:
        number = int(value or default)
    except ValueError:
        return default
    return max(1, min(MAX_LIMIT, number))


def parse_cursor(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        return None


def filter_query(which: str) -> str:
    return "" if which == "all" else "?" + urlencode({"filter": which})


def _clock(loc: Localizer, value: datetime) -> str:
    return format_time(loc.local(value), "short", locale=loc.locale)


def _day_label(loc: Localizer, value: datetime) -> str:
    today = loc.local(datetime.now(UTC)).date()
    day = loc.local(value).date()
    if day == today:
        return loc.gettext("Today")
    if (today - day).days == 1:
        return loc.gettext("Yesterday")
    return loc.date(day)


def _size(loc: Localizer, size: int) -> str:
    """``820 B``, ``13 KB``, ``3,3 MB`` (in the page's language)."""
    if size < 1024:
        return f"{loc.number(size)} B"
    if size < 1024 * 1024:
        kb = (Decimal(size) / 1024).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return f"{loc.number(kb)} KB"
    mb = (Decimal(size) / (1024 * 1024)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{loc.number(mb)} MB"


def _location_url(metadata: dict[str, Any]) -> str | None:
    where = metadata.get("location")
    if not isinstance(where, dict):
        return None
    try:
        lat, lon = float(str(where.get("latitude"))), float(str(where.get("longitude")))
    except ValueError:
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}&zoom=16"


def _file(loc: Localizer, a: MessageAttachment) -> FileView:
    kind = "file"
    if a.file_type in IMAGE_TYPES:
        kind = "image"
    elif a.file_type.startswith("audio/"):
        kind = "audio"
    elif a.file_type.startswith("video/"):
        kind = "video"
    return FileView(
        id=str(a.id),
        name=a.file_name,
        type=a.file_type,
        size=_size(loc, a.file_size),
        url=f"/api/v1/attachments/{a.id}",
        kind=kind,
    )


def bubble(loc: Localizer, msg: Message, files: list[MessageAttachment]) -> Bubble:
    meta: dict[str, Any] = dict(msg.metadata_ or {})
    created = msg.created_at or datetime.now(UTC)
    status = msg.status or "pending"
    template = meta.get("template") if isinstance(meta.get("template"), dict) else None
    return Bubble(
        id=str(msg.id),
        direction=msg.direction,
        status=status,
        status_label=loc.gettext(STATUS_LABELS.get(status, status)),
        message_type=msg.message_type or "text",
        content=msg.content or "",
        time=_clock(loc, created),
        when=loc.datetime(created),
        iso=loc.local(created).isoformat(),
        day=loc.local(created).date().isoformat(),
        day_label=_day_label(loc, created),
        failed_reason=msg.failed_reason if status == "failed" else None,
        last_error=str(meta["last_error"])
        if status == "pending" and meta.get("last_error")
        else None,
        attachment_status=meta.get("attachment_status"),
        attachment_error=meta.get("attachment_error"),
        template_name=str(template.get("name")) if template and template.get("name") else None,
        location_url=_location_url(meta),
        files=[_file(loc, a) for a in files],
        sentiment=dict(meta["sentiment"])
        if msg.direction == "inbound" and isinstance(meta.get("sentiment"), dict)
        else None,
        ai=msg.direction == "outbound" and bool(meta.get("ai")),
    )


def _conversation_rows(loc: Localizer, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        name = str(row.get("lead_name") or row.get("phone") or "")
        preview = (row.get("last_message") or "").strip().replace("\n", " ")
        if not preview:
            label = TYPE_LABELS.get(str(row.get("last_type") or ""), "Message")
            preview = loc.gettext(label)
        status = str(row.get("last_status") or "")
        out.append(
            {
                **row,
                "name": name,
                "initials": "".join(p[:1] for p in name.split()[:2]).upper() or "?",
                "preview": preview[:140],
                "outbound": row.get("last_direction") == "outbound",
                "status": status,
                "status_label": loc.gettext(STATUS_LABELS.get(status, status)) if status else "",
                "unread": int(row.get("unread") or 0),
                "version": f"{row.get('last_message_at')}|{status}|{row.get('unread')}",
            }
        )
    return out


async def list_context(
    session: AsyncSession,
    frame: Shell,
    which: str,
    *,
    active: uuid.UUID | None,
    before: datetime | None = None,
    limit: int = LIST_PAGE,
) -> dict[str, Any]:
    rows = await inbox.conversations(
        session, frame.principal, which=cast(inbox.Filter, which), before=before, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = rows[-1]["last_message_at"].isoformat() if more and rows else None
    return {
        "conversations": _conversation_rows(frame.i18n, rows),
        "which": which,
        "active_id": str(active) if active else "",
        "next_cursor": next_cursor,
        "filter_query": filter_query(which),
        "paged": before is not None,
    }


async def _composer(
    session: AsyncSession,
    frame: Shell,
    lead: Lead,
    config: WhatsappConfig | None,
    window: whatsapp.WindowState,
) -> Composer:
    principal = frame.principal
    blocked: str | None = None
    if not principal.can("messages:write") or not leads_service.may_edit(principal, lead):
        blocked = "permission"
    elif config is None:
        blocked = "provider"
    elif not lead.phone:
        blocked = "phone"
    choices: list[TemplateChoice] = []
    if blocked is None:
        rows = await templates_service.list_templates(session, principal, active=True)
        active_ids = {t.id for t in rows}
        stage = await session.get(PipelineStage, lead.stage_id)
        assignee = await session.get(User, lead.assigned_to) if lead.assigned_to else None
        for t in rows:
            # An A/B family is one choice (the server picks the variant).
            if t.parent_template_id is not None and t.parent_template_id in active_ids:
                continue
            approved = bool(t.whatsapp_template_name)
            if window.applies and not window.open and not approved:
                continue
            preview = templates_service.render(t, lead, frame.org, stage=stage, assignee=assignee)
            choices.append(TemplateChoice(str(t.id), t.name, approved, preview))
    kind = config.provider_type if config is not None else None
    return Composer(
        blocked=blocked,
        provider_kind=kind,
        provider_label=provider_name(kind) if kind else None,
        window=window,
        templates=choices,
    )


async def chat_context(
    session: AsyncSession,
    frame: Shell,
    lead: Lead,
    *,
    limit: int = THREAD_PAGE,
    draft: str = "",
    error: str | None = None,
    which: str = "all",
    config: WhatsappConfig | None = None,
) -> dict[str, Any]:
    rows = await inbox.messages(session, frame.principal, lead.id, limit=limit + 1)
    has_older = len(rows) > limit
    rows = rows[-limit:] if has_older else rows
    if config is None:
        config = await active_config(session, frame.principal.org())
    window = await whatsapp.window_state(session, config.provider_type if config else None, lead.id)
    composer = await _composer(session, frame, lead, config, window)
    bubbles = [bubble(frame.i18n, m, files) for m, files in rows]
    return {
        "lead": lead,
        "bubbles": bubbles,
        "older_cursor": rows[0][0].created_at.isoformat()
        if has_older and rows[0][0].created_at
        else None,
        "composer": composer,
        "draft": draft,
        "error": error,
        "which": which,
        "filter_query": filter_query(which),
    }


def simulate_context(
    frame: Shell, config: WhatsappConfig | None, lead: Lead | None = None
) -> dict[str, Any] | None:
    """The sandbox's form, when the sandbox is the active provider and the member may send."""
    if not frame.principal.can("messages:write"):
        return None
    if config is None or config.provider_type != "sandbox":
        return None
    return {
        "phone": lead.phone if lead is not None and lead.phone else "",
        "name": lead.full_name if lead is not None else "",
        "content": "",
        "error": None,
        "done": False,
        "open": False,
    }
