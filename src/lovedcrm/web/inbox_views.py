"""HTML pages for the inbox: the conversation list (filters, unread counts, newest first), a
chat per lead (bubbles, status ticks, attachments, "load older"), the composer (text and
templates, the Cloud API's 24-hour window), the sandbox's "simulate a received message"
form and the fragments the page's script re-reads on live events.

Thin: the rules live in ``messaging.inbox`` (what a member may read), ``messaging.whatsapp``
(sending, the window, marking read), ``messaging.templates`` and ``messaging.sandbox``; these
views turn their answers into page models and their refusals into words. Live updates come
from ``/api/v1/events/stream`` in ``static/inbox.js``, which re-reads ``/inbox/list`` and
``/inbox/{id}/thread``; every action also works as a plain form without JavaScript.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, cast
from urllib.parse import urlencode

from babel.dates import format_time
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import User
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.models import Lead, PipelineStage
from lovedcrm.messaging import inbox, sandbox, whatsapp
from lovedcrm.messaging import templates as templates_service
from lovedcrm.messaging.models import Message, MessageAttachment, WhatsappConfig
from lovedcrm.messaging.whatsapp_configs import active_config, provider_name
from lovedcrm.web.i18n import N_, Localizer
from lovedcrm.web.render import Shell, flash, page_frame, render, templates

router = APIRouter(include_in_schema=False)

FILTERS = ("all", "mine", "unassigned")
LIST_PAGE = 50
THREAD_PAGE = 40
MAX_LIMIT = 200
CONTENT_MAX = 4096
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")
_SAFE_NEXT = re.compile(r"/inbox(/[0-9a-fA-F-]{36})?(\?[\w=&%.-]*)?")

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
# The services' refusals of a send, by code, as the composer says them.
SEND_ERRORS = {
    "outside_window": N_("Outside the 24-hour window: only approved templates can be sent."),
    "lead_without_phone": N_(
        "This lead has no phone number. Add one on the lead's page to talk on WhatsApp."
    ),
    "whatsapp_not_configured": N_(
        "WhatsApp is not set up yet: activate a provider in Settings → WhatsApp."
    ),
    "template_inactive": N_("This template is inactive. Choose another one."),
    "template_not_found": N_("That template no longer exists. Choose another one."),
    "lead_not_found": N_("You cannot send messages to this lead."),
    "permission_denied": N_("You cannot send messages to this lead."),
    "csrf_failed": N_("The form expired or came from another site. Reload the page."),
}
SIMULATE_ERRORS = {
    "sandbox_not_active": N_("The sandbox is not the active WhatsApp provider."),
    "validation_failed": N_("Type a valid phone number, with the area code."),
    "permission_denied": N_("You cannot simulate messages."),
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


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def _which(value: str | None) -> str:
    return value if value in FILTERS else "all"


def _limit(value: str | None, default: int) -> int:
    try:
        number = int(value or default)
    except ValueError:
        return default
    return max(1, min(MAX_LIMIT, number))


def _cursor(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        return None


def _filter_query(which: str) -> str:
    return "" if which == "all" else "?" + urlencode({"filter": which})


def _fragment(
    request: Request, frame: Shell, name: str, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    """A piece of a page for htmx and the live script (no flash messages consumed)."""
    response: HTMLResponse = templates.TemplateResponse(
        request,
        name,
        {
            "i18n": frame.i18n,
            "lang": frame.i18n.tag,
            "csrf": frame.csrf,
            "principal": frame.principal,
            **ctx,
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _message_page(
    request: Request, frame: Shell, status_code: int, title: str, message: str
) -> HTMLResponse:
    return render(
        request,
        "inbox/message.html",
        status_code,
        **frame.context("inbox"),
        title=title,
        message=message,
    )


def _error_page(request: Request, frame: Shell, exc: AppError) -> HTMLResponse:
    t = frame.i18n.gettext
    if exc.status == 404:
        return _message_page(
            request,
            frame,
            404,
            t("Conversation not found"),
            t("This lead does not exist, was deleted, or is not visible to you."),
        )
    if exc.status == 403:
        return _message_page(
            request,
            frame,
            403,
            t("No access"),
            t(
                "You do not have permission to read conversations. Ask an admin of your "
                "organization."
            ),
        )
    return _message_page(request, frame, exc.status, t("Something went wrong"), t(exc.detail))


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


def _bubble(loc: Localizer, msg: Message, files: list[MessageAttachment]) -> Bubble:
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


async def _list_context(
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
        "filter_query": _filter_query(which),
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


async def _chat_context(
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
    bubbles = [_bubble(frame.i18n, m, files) for m, files in rows]
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
        "filter_query": _filter_query(which),
    }


def _simulate_context(
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


async def _page(
    request: Request,
    session: AsyncSession,
    frame: Shell,
    which: str,
    *,
    lead: Lead | None = None,
    status_code: int = 200,
    draft: str = "",
    error: str | None = None,
    before: datetime | None = None,
    limit: int = THREAD_PAGE,
) -> HTMLResponse:
    ctx = await _list_context(
        session, frame, which, active=lead.id if lead else None, before=before
    )
    ctx["lead"] = lead
    config = await active_config(session, frame.principal.org())
    if lead is not None:
        ctx.update(
            await _chat_context(
                session,
                frame,
                lead,
                limit=limit,
                draft=draft,
                error=error,
                which=which,
                config=config,
            )
        )
    return render(
        request,
        "inbox/page.html",
        status_code,
        **frame.context("inbox"),
        **ctx,
        provider=config.provider_type if config else None,
        show_filters=frame.principal.can("leads:read_all"),
        simulate=_simulate_context(frame, config, lead),
        can_configure=frame.principal.can("settings:manage"),
    )


def _send_error(frame: Shell, exc: AppError) -> str:
    t = frame.i18n.gettext
    message = SEND_ERRORS.get(exc.code)
    if message is None and exc.status == 403:
        message = SEND_ERRORS["permission_denied"]
    return t(message) if message else t(exc.detail)


# --- the list -------------------------------------------------------------------------------


@router.get("/inbox", response_class=HTMLResponse)
async def inbox_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    which = _which(request.query_params.get("filter"))
    before = _cursor(request.query_params.get("before"))
    try:
        async with session.begin_nested():
            return await _page(request, session, frame, which, before=before)
    except AppError as exc:
        return _error_page(request, frame, exc)


@router.get("/inbox/list", response_class=HTMLResponse)
async def inbox_list(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The conversation list's items: a live re-read (``limit``) or the next page (``before``).
    ``X-Unread-Total`` carries the unread count for the menu's badge."""
    frame = await page_frame(request, session, settings)
    if frame is None or frame.org is None:
        return Response(status_code=401)
    p = request.query_params
    which = _which(p.get("filter"))
    before = _cursor(p.get("before"))
    if p.get("before") and before is None:
        return Response(status_code=400)
    try:
        ctx = await _list_context(
            session,
            frame,
            which,
            active=_uuid(p.get("active")),
            before=before,
            limit=_limit(p.get("limit"), LIST_PAGE),
        )
        unread = await inbox.unread_total(session, frame.principal)
    except AppError as exc:
        return Response(status_code=exc.status)
    response = _fragment(request, frame, "inbox/_list.html", **ctx)
    response.headers["X-Unread-Total"] = str(unread)
    return response


@router.get("/inbox/unread", response_class=HTMLResponse)
async def inbox_unread(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The menu's unread badge."""
    frame = await page_frame(request, session, settings)
    if frame is None or frame.org is None:
        return HTMLResponse('<span class="nav-count" id="nav-unread" hidden></span>')
    try:
        count = await inbox.unread_total(session, frame.principal)
    except AppError:
        count = 0
    return _fragment(request, frame, "inbox/_unread.html", unread=count)


@router.post("/inbox/simulate", response_class=HTMLResponse)
async def inbox_simulate(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    from_number: Annotated[str, Form(max_length=50)] = "",
    contact_name: Annotated[str, Form(max_length=255)] = "",
    content: Annotated[str, Form(max_length=CONTENT_MAX)] = "",
    next: Annotated[str, Form(max_length=200)] = "/inbox",
) -> Response:
    """Sandbox only: a customer's message typed in; it arrives through the inbound job."""
    frame = await page_frame(request, session, settings)
    if frame is None or frame.org is None:
        return RedirectResponse("/login", status_code=303)
    t = frame.i18n.gettext
    phone, name, text = from_number.strip(), contact_name.strip(), content.strip()
    form: dict[str, Any] = {
        "phone": phone,
        "name": name,
        "content": text,
        "error": None,
        "done": False,
        "open": True,
    }
    error: str | None = None
    status = 422
    if not phone or not text:
        error = t("Type the customer's phone number and the message.")
    else:
        try:
            async with session.begin_nested():
                frame.principal.require("messages:write")
                await sandbox.inject(
                    session,
                    frame.principal.org(),
                    from_number=phone,
                    content=text,
                    contact_name=name or None,
                )
        except AppError as exc:
            message = SIMULATE_ERRORS.get(exc.code)
            error = t(message) if message else t(exc.detail)
            status = exc.status
    target = next if _SAFE_NEXT.fullmatch(next) else "/inbox"
    if not _is_htmx(request):
        response = RedirectResponse(target, status_code=303)
        if error:
            flash(response, error, "error")
        else:
            flash(response, t("Message simulated: it shows up in the list in a moment."))
        return response
    if error:
        form["error"] = error
        return _fragment(request, frame, "inbox/_simulate.html", status, simulate=form, next=target)
    form.update(content="", done=True)
    return _fragment(request, frame, "inbox/_simulate.html", 202, simulate=form, next=target)


# --- a conversation -------------------------------------------------------------------------


async def _visible_lead(session: AsyncSession, frame: Shell, lead_id: str) -> Lead:
    """The lead of a conversation, 404 (an AppError) unless the member may read it."""
    parsed = _uuid(lead_id)
    if parsed is None:
        raise NotFound("No lead with that id.", code="lead_not_found")
    frame.principal.require("messages:read")
    return await leads_service.get_lead(session, frame.principal, parsed)


@router.get("/inbox/{lead_id}", response_class=HTMLResponse)
async def conversation_page(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    frame = await page_frame(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    which = _which(request.query_params.get("filter"))
    try:
        async with session.begin_nested():
            lead = await _visible_lead(session, frame, lead_id)
            await whatsapp.mark_conversation_read(session, frame.principal, lead.id)
            limit = _limit(request.query_params.get("limit"), THREAD_PAGE)
            return await _page(request, session, frame, which, lead=lead, limit=limit)
    except AppError as exc:
        return _error_page(request, frame, exc)


@router.get("/inbox/{lead_id}/thread", response_class=HTMLResponse)
async def conversation_thread(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """The chat's body (notice, messages, composer) for the live script; ``read=1`` marks the
    conversation read (the page is in front of someone)."""
    frame = await page_frame(request, session, settings)
    if frame is None or frame.org is None:
        return Response(status_code=401)
    p = request.query_params
    try:
        async with session.begin_nested():
            lead = await _visible_lead(session, frame, lead_id)
            if p.get("read") == "1":
                await whatsapp.mark_conversation_read(session, frame.principal, lead.id)
            ctx = await _chat_context(
                session,
                frame,
                lead,
                limit=_limit(p.get("limit"), THREAD_PAGE),
                which=_which(p.get("filter")),
            )
    except AppError as exc:
        return Response(status_code=exc.status)
    return _fragment(request, frame, "inbox/_body.html", **ctx)


@router.get("/inbox/{lead_id}/older", response_class=HTMLResponse)
async def conversation_older(
    lead_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Messages before ``before`` (and the next "load older" button when there are more)."""
    frame = await page_frame(request, session, settings)
    if frame is None or frame.org is None:
        return Response(status_code=401)
    before = _cursor(request.query_params.get("before"))
    if before is None:
        return Response(status_code=400)
    try:
        lead = await _visible_lead(session, frame, lead_id)
        rows = await inbox.messages(
            session, frame.principal, lead.id, before=before, limit=THREAD_PAGE + 1
        )
    except AppError as exc:
        return Response(status_code=exc.status)
    has_older = len(rows) > THREAD_PAGE
    rows = rows[-THREAD_PAGE:] if has_older else rows
    return _fragment(
        request,
        frame,
        "inbox/_older.html",
        lead=lead,
        bubbles=[_bubble(frame.i18n, m, files) for m, files in rows],
        older_cursor=rows[0][0].created_at.isoformat()
        if has_older and rows[0][0].created_at
        else None,
    )


@router.post("/inbox/{lead_id}/send", response_class=HTMLResponse)
async def conversation_send(
    lead_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    content: Annotated[str, Form(max_length=CONTENT_MAX)] = "",
    template_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """The composer: a text, or a template by id (rendered by the server, A/B variant picked
    there). htmx gets the chat's body back; a plain form goes back to the page."""
    frame = await page_frame(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    if frame.org is None:
        return RedirectResponse("/", status_code=303)
    t = frame.i18n.gettext
    which = _which(request.query_params.get("filter"))
    try:
        async with session.begin_nested():
            lead = await _visible_lead(session, frame, lead_id)
    except AppError as exc:
        return _error_page(request, frame, exc)
    text = content.strip()
    chosen = _uuid(template_id)
    error: str | None = None
    status = 422
    if template_id and chosen is None:
        error = t("That template no longer exists. Choose another one.")
    elif chosen is None and not text:
        error = t("Write a message or choose a template.")
    else:
        try:
            async with session.begin_nested():
                if chosen is not None:
                    await whatsapp.send_message(
                        session, frame.principal, lead.id, template_id=chosen
                    )
                else:
                    await whatsapp.send_message(session, frame.principal, lead.id, content=text)
        except AppError as exc:
            error = _send_error(frame, exc)
            # A lead the member sees but may not edit is a 404 for the service: a refusal here.
            status = 403 if exc.status == 403 or exc.code == "lead_not_found" else exc.status
    draft = text if error and chosen is None else ""
    if _is_htmx(request):
        ctx = await _chat_context(session, frame, lead, draft=draft, error=error, which=which)
        return _fragment(request, frame, "inbox/_body.html", status if error else 200, **ctx)
    if error:
        return await _page(
            request, session, frame, which, lead=lead, status_code=status, draft=draft, error=error
        )
    return RedirectResponse(f"/inbox/{lead.id}{_filter_query(which)}#composer", status_code=303)
