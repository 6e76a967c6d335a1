"""HTML pages for the inbox: the conversation list (filters, unread counts, newest first), a
chat per lead (bubbles, status ticks, attachments, "load older"), the composer (text and
templates, the Cloud API's 24-hour window), the sandbox's "simulate a received message"
form and the fragments the page's script re-reads on live events.

Thin: the rules live in ``messaging.inbox`` (what a member may read), ``messaging.whatsapp``
(sending, the window, marking read), ``messaging.templates`` and ``messaging.sandbox``; the
page models are built in ``pages.inbox_models``; these routes turn the services' refusals into
words. Live updates come from ``/api/v1/events/stream`` in ``static/inbox.js``, which re-reads
``/inbox/list`` and ``/inbox/{id}/thread`` (a 401 when the session ended, never a redirect);
every action also works as a plain form without JavaScript.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError, NotFound, Unauthorized
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.models import Lead
from lovedcrm.messaging import inbox, sandbox, whatsapp
from lovedcrm.messaging.pages.fragments import fragment
from lovedcrm.messaging.pages.inbox_models import (
    LIST_PAGE,
    THREAD_PAGE,
    bubble,
    chat_context,
    chosen_filter,
    filter_query,
    list_context,
    page_size,
    parse_cursor,
    simulate_context,
)
from lovedcrm.messaging.whatsapp_configs import active_config
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import (
    MaybeSignedIn,
    Member,
    PageError,
    Shell,
    attempt,
    is_htmx,
    page_router,
    parse_uuid,
    redirect,
    render,
)

router = page_router()

CONTENT_MAX = 4096
_SAFE_NEXT = re.compile(r"/inbox(/[0-9a-fA-F-]{36})?(\?[\w=&%.-]*)?")

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


# --- who reads, and which conversation --------------------------------------------------------


async def live_frame(frame: MaybeSignedIn) -> Shell:
    """The frame of a fragment the page's script re-reads: without a session (or outside any
    organization) a 401 the script stops on, never a redirect to the log-in page."""
    if frame is None or frame.org is None:
        raise Unauthorized(N_("Sign in again to read the inbox."))
    return frame


LiveFrame = Annotated[Shell, Depends(live_frame)]


def conversation_error(exc: AppError) -> PageError:
    """A conversation (or the list) that cannot be shown, in the inbox's words."""
    title, message = "Something went wrong", exc.detail
    if exc.status == 404:
        title = "Conversation not found"
        message = "This lead does not exist, was deleted, or is not visible to you."
    elif exc.status == 403:
        title = "No access"
        message = (
            "You do not have permission to read conversations. Ask an admin of your organization."
        )
    return PageError(
        exc.status, title, message, back_url="/inbox", back_label="Back to the conversations"
    )


async def _conversation_lead(session: AsyncSession, frame: Shell, lead_id: str) -> Lead:
    parsed = parse_uuid(lead_id)
    if parsed is None:
        raise conversation_error(NotFound("No lead with that id.", code="lead_not_found"))
    try:
        frame.principal.require("messages:read")
        return await leads_service.get_lead(session, frame.principal, parsed)
    except AppError as exc:
        raise conversation_error(exc) from exc


async def lead_in_inbox(lead_id: str, frame: Member, session: SessionDep) -> Lead:
    """The lead of a conversation page: a 404 page unless the member may read it."""
    return await _conversation_lead(session, frame, lead_id)


async def lead_in_live(lead_id: str, frame: LiveFrame, session: SessionDep) -> Lead:
    """The lead of a fragment the script re-reads (a 401 without a session)."""
    return await _conversation_lead(session, frame, lead_id)


LeadInInbox = Annotated[Lead, Depends(lead_in_inbox)]
LeadInLive = Annotated[Lead, Depends(lead_in_live)]


# --- the page ------------------------------------------------------------------------------


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
    ctx = await list_context(session, frame, which, active=lead.id if lead else None, before=before)
    ctx["lead"] = lead
    config = await active_config(session, frame.principal.org())
    if lead is not None:
        ctx.update(
            await chat_context(
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
        "messaging/inbox/page.html",
        status_code,
        **frame.context("inbox"),
        **ctx,
        provider=config.provider_type if config else None,
        show_filters=frame.principal.can("leads:read_all"),
        simulate=simulate_context(frame, config, lead),
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
async def inbox_page(request: Request, session: SessionDep, frame: Member) -> Response:
    which = chosen_filter(request.query_params.get("filter"))
    before = parse_cursor(request.query_params.get("before"))
    try:
        return await _page(request, session, frame, which, before=before)
    except AppError as exc:
        raise conversation_error(exc) from exc


@router.get("/inbox/list", response_class=HTMLResponse)
async def inbox_list(request: Request, session: SessionDep, frame: LiveFrame) -> Response:
    """The conversation list's items: a live re-read (``limit``) or the next page (``before``).
    ``X-Unread-Total`` carries the unread count for the menu's badge."""
    p = request.query_params
    before = parse_cursor(p.get("before"))
    if p.get("before") and before is None:
        return Response(status_code=400)
    ctx = await list_context(
        session,
        frame,
        chosen_filter(p.get("filter")),
        active=parse_uuid(p.get("active")),
        before=before,
        limit=page_size(p.get("limit"), LIST_PAGE),
    )
    unread = await inbox.unread_total(session, frame.principal)
    response = fragment(request, frame, "messaging/inbox/_list.html", **ctx)
    response.headers["X-Unread-Total"] = str(unread)
    return response


@router.get("/inbox/unread", response_class=HTMLResponse)
async def inbox_unread(request: Request, session: SessionDep, frame: MaybeSignedIn) -> Response:
    """The menu's unread badge."""
    if frame is None or frame.org is None:
        return HTMLResponse('<span class="nav-count" id="nav-unread" hidden></span>')
    try:
        count = await attempt(session, inbox.unread_total(session, frame.principal))
    except AppError:
        count = 0
    return fragment(request, frame, "messaging/inbox/_unread.html", unread=count)


@router.post("/inbox/simulate", response_class=HTMLResponse)
async def inbox_simulate(
    request: Request,
    session: SessionDep,
    frame: Member,
    from_number: Annotated[str, Form(max_length=50)] = "",
    contact_name: Annotated[str, Form(max_length=255)] = "",
    content: Annotated[str, Form(max_length=CONTENT_MAX)] = "",
    next: Annotated[str, Form(max_length=200)] = "/inbox",
) -> Response:
    """Sandbox only: a customer's message typed in; it arrives through the inbound job."""
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
            frame.principal.require("messages:write")
            await attempt(
                session,
                sandbox.inject(
                    session,
                    frame.principal.org(),
                    from_number=phone,
                    content=text,
                    contact_name=name or None,
                ),
            )
        except AppError as exc:
            message = SIMULATE_ERRORS.get(exc.code)
            error = t(message) if message else t(exc.detail)
            status = exc.status
    target = next if _SAFE_NEXT.fullmatch(next) else "/inbox"
    if not is_htmx(request):
        if error:
            return redirect(target, error, "error")
        return redirect(target, t("Message simulated: it shows up in the list in a moment."))
    if error:
        form["error"] = error
        return fragment(
            request, frame, "messaging/inbox/_simulate.html", status, simulate=form, next=target
        )
    form.update(content="", done=True)
    return fragment(
        request, frame, "messaging/inbox/_simulate.html", 202, simulate=form, next=target
    )


# --- a conversation -------------------------------------------------------------------------


@router.get("/inbox/{lead_id}", response_class=HTMLResponse)
async def conversation_page(
    request: Request, session: SessionDep, frame: Member, lead: LeadInInbox
) -> Response:
    p = request.query_params
    try:
        if whatsapp.may_mark_read(frame.principal, lead):  # a viewer only looks
            await whatsapp.mark_conversation_read(session, frame.principal, lead.id)
        return await _page(
            request,
            session,
            frame,
            chosen_filter(p.get("filter")),
            lead=lead,
            limit=page_size(p.get("limit"), THREAD_PAGE),
        )
    except AppError as exc:
        raise conversation_error(exc) from exc


@router.get("/inbox/{lead_id}/thread", response_class=HTMLResponse)
async def conversation_thread(
    request: Request, session: SessionDep, frame: LiveFrame, lead: LeadInLive
) -> Response:
    """The chat's body (notice, messages, composer) for the live script; ``read=1`` marks the
    conversation read (the page is in front of someone)."""
    p = request.query_params
    if p.get("read") == "1" and whatsapp.may_mark_read(frame.principal, lead):
        await whatsapp.mark_conversation_read(session, frame.principal, lead.id)
    ctx = await chat_context(
        session,
        frame,
        lead,
        limit=page_size(p.get("limit"), THREAD_PAGE),
        which=chosen_filter(p.get("filter")),
    )
    return fragment(request, frame, "messaging/inbox/_body.html", **ctx)


@router.get("/inbox/{lead_id}/older", response_class=HTMLResponse)
async def conversation_older(
    request: Request, session: SessionDep, frame: LiveFrame, lead: LeadInLive
) -> Response:
    """Messages before ``before`` (and the next "load older" button when there are more)."""
    before = parse_cursor(request.query_params.get("before"))
    if before is None:
        return Response(status_code=400)
    rows = await inbox.messages(
        session, frame.principal, lead.id, before=before, limit=THREAD_PAGE + 1
    )
    has_older = len(rows) > THREAD_PAGE
    rows = rows[-THREAD_PAGE:] if has_older else rows
    return fragment(
        request,
        frame,
        "messaging/inbox/_older.html",
        lead=lead,
        bubbles=[bubble(frame.i18n, m, files) for m, files in rows],
        older_cursor=rows[0][0].created_at.isoformat()
        if has_older and rows[0][0].created_at
        else None,
    )


@router.post("/inbox/{lead_id}/send", response_class=HTMLResponse)
async def conversation_send(
    request: Request,
    session: SessionDep,
    frame: Member,
    lead: LeadInInbox,
    content: Annotated[str, Form(max_length=CONTENT_MAX)] = "",
    template_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """The composer: a text, or a template by id (rendered by the server, A/B variant picked
    there). htmx gets the chat's body back; a plain form goes back to the page."""
    t = frame.i18n.gettext
    which = chosen_filter(request.query_params.get("filter"))
    text = content.strip()
    chosen = parse_uuid(template_id)
    error: str | None = None
    status = 422
    if template_id and chosen is None:
        error = t("That template no longer exists. Choose another one.")
    elif chosen is None and not text:
        error = t("Write a message or choose a template.")
    else:
        send = (
            whatsapp.send_message(session, frame.principal, lead.id, template_id=chosen)
            if chosen is not None
            else whatsapp.send_message(session, frame.principal, lead.id, content=text)
        )
        try:
            await attempt(session, send)
        except AppError as exc:
            error = _send_error(frame, exc)
            # A lead the member sees but may not edit is a 404 for the service: a refusal here.
            status = 403 if exc.status == 403 or exc.code == "lead_not_found" else exc.status
    draft = text if error and chosen is None else ""
    if is_htmx(request):
        ctx = await chat_context(session, frame, lead, draft=draft, error=error, which=which)
        return fragment(
            request, frame, "messaging/inbox/_body.html", status if error else 200, **ctx
        )
    if error:
        return await _page(
            request, session, frame, which, lead=lead, status_code=status, draft=draft, error=error
        )
    return RedirectResponse(f"/inbox/{lead.id}{filter_query(which)}#composer", status_code=303)
