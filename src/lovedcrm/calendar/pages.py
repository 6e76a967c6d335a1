"""The agenda pages: /agenda (day, week, list), the meeting form (with the conflict warning),
status changes, the lead page's meetings panel, the member's ICS feed and Google Calendar's
connect / callback / disconnect."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import text

from lovedcrm.calendar import service, sync
from lovedcrm.calendar.google import GoogleClient, GoogleError
from lovedcrm.calendar.ics import feed
from lovedcrm.core import clock
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError
from lovedcrm.core.security import token_hash
from lovedcrm.db.tenant import set_tenant
from lovedcrm.leads.access import get_lead
from lovedcrm.web.kit import Member, Shell, page_router, parse_uuid, redirect, render

router = page_router()
VIEWS = ("day", "week", "list")


def _day(raw: str | None, today: date) -> date:
    try:
        return date.fromisoformat(raw) if raw else today
    except ValueError:
        return today


def _range(view: str, day: date) -> tuple[date, date]:
    if view == "day":
        return day, day + timedelta(days=1)
    if view == "list":
        return day, day + timedelta(days=30)
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=7)


async def _members(session: Any, frame: Shell) -> list[tuple[str, str]]:
    if not frame.principal.can("leads:read_all"):
        return []
    rows = await session.execute(
        text(
            "SELECT u.id, u.full_name FROM organization_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.organization_id = :org AND m.is_active ORDER BY u.full_name LIMIT 200"
        ),
        {"org": frame.principal.org()},
    )
    return [(str(r.id), r.full_name) for r in rows]


async def _reminder_choices(session: Any, frame: Shell) -> dict[str, Any]:
    """What the form's WhatsApp reminder offers: the approved templates and the offsets."""
    return {
        "wa_templates": await service.approved_templates(session, frame.principal),
        "wa_offsets": service.WHATSAPP_OFFSETS,
    }


async def _google_calendars(
    session: Any, frame: Shell, settings: Any, integration: Any
) -> tuple[list[sync.GoogleCalendar], bool]:
    """The member's Google calendars for the picker (and whether Google failed to answer)."""
    if integration is None or not integration.refresh_token or integration.sync_status == "error":
        return [], False
    client = GoogleClient(settings)
    try:
        _, found = await sync.calendars(session, frame.principal, settings, client)
        return found, False
    except AppError:
        return [], True
    finally:
        await client.aclose()


@router.get("/agenda", response_class=HTMLResponse)
async def agenda(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    q = request.query_params
    view = q.get("view") or "week"
    view = view if view in VIEWS else "week"
    tz_name = await service.default_timezone(session, frame.principal)
    tz = service.zone(tz_name)
    today = clock.now().astimezone(tz).date()
    day = _day(q.get("date"), today)
    first, last = _range(view, day)
    who = q.get("user") or ""
    team = who == "team"
    user_id = parse_uuid(who) if who and not team else None
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(last, time(), tz)
    try:
        found = await service.list_events(
            session, frame.principal, start, end, user_id=user_id, team=team
        )
        events = found.events
        denied = False
    except AppError:
        events, denied = [], True
    days = [first + timedelta(days=i) for i in range((last - first).days)]
    by_day: dict[date, list[Any]] = {d: [] for d in days}
    for e in events:
        local = e.start_time.astimezone(tz).date()
        if local in by_day:
            by_day[local].append(e)
    step = {"day": 1, "week": 7, "list": 30}[view]
    integration = await service.integration_of(
        session, frame.principal.org(), frame.principal.user_id
    )
    calendars, calendars_failed = await _google_calendars(session, frame, settings, integration)
    soon = [
        e
        for e in events
        if e.status == "scheduled"
        and e.created_by == frame.principal.user_id
        and timedelta(0) <= e.start_time - clock.now() <= timedelta(hours=2)
    ]
    return render(
        request,
        "calendar/agenda.html",
        **frame.context("agenda"),
        view=view,
        day=day,
        days=days,
        by_day=by_day,
        events=events,
        tz=tz,
        tz_name=tz_name,
        today=today,
        prev_day=(day - timedelta(days=step)).isoformat(),
        next_day=(day + timedelta(days=step)).isoformat(),
        who=who,
        members=await _members(session, frame),
        denied=denied,
        soon=soon,
        integration=integration,
        calendars=calendars,
        calendars_failed=calendars_failed,
        current_calendar=lambda c: integration is not None and sync.is_current(integration, c),
        google_configured=sync.configured(settings),
        feed_exists=await service.feed_exists(session, frame.principal),
        feed_url=request.query_params.get("feed"),
        form=_blank_form(tz_name, today, q.get("lead_id")),
        errors={},
        clashes=[],
        **await _reminder_choices(session, frame),
    )


@router.get("/agenda/new", response_class=HTMLResponse)
async def new_meeting(request: Request, frame: Member, session: SessionDep) -> Response:
    """The meeting form on its own page; ``?lead_id=`` (the board card's and the inbox's
    "Schedule") fills the lead in and comes back to the lead's page."""
    tz_name = await service.default_timezone(session, frame.principal)
    today = clock.now().astimezone(service.zone(tz_name)).date()
    lead = None
    lead_id = parse_uuid(request.query_params.get("lead_id"))
    if lead_id is not None:
        try:
            lead = await get_lead(session, frame.principal, lead_id)
        except AppError:
            lead = None
    form = _blank_form(tz_name, today, str(lead.id) if lead else None)
    if lead is not None:
        form["back"] = f"/leads/{lead.id}"
        form["title"] = frame.i18n.gettext("Meeting with %(name)s") % {"name": lead.full_name}
        form["attendees"] = lead.email or ""
    return render(
        request,
        "calendar/form_page.html",
        **frame.context("agenda"),
        form=form,
        errors={},
        clashes=[],
        lead=lead,
        tz=service.zone(tz_name),
        google_connected=False,
        **await _reminder_choices(session, frame),
    )


def _blank_form(tz_name: str, today: date, lead_id: str | None = None) -> dict[str, str]:
    return {
        "title": "",
        "date": today.isoformat(),
        "start": "10:00",
        "end": "10:30",
        "timezone": tz_name,
        "attendees": "",
        "description": "",
        "reminder_minutes": "",
        "video": "jitsi",
        "lead_id": lead_id or "",
        "back": "",
        "whatsapp_template_id": "",
        "whatsapp_reminder_minutes": "60",
    }


def _parse_form(form: dict[str, str]) -> tuple[service.MeetingInput | None, dict[str, str]]:
    errors: dict[str, str] = {}
    title = form.get("title", "").strip()
    if not title:
        errors["title"] = "Give the meeting a title."
    elif len(title) > 255:
        errors["title"] = "At most 255 characters."
    try:
        day = date.fromisoformat(form.get("date", ""))
        start = datetime.combine(day, time.fromisoformat(form.get("start", "")))
        end = datetime.combine(day, time.fromisoformat(form.get("end", "")))
    except ValueError:
        errors["start_time"] = "Pick a date and times."
        return None, errors
    reminder = form.get("reminder_minutes", "").strip()
    minutes = int(reminder) if reminder.isdigit() and int(reminder) <= 10_080 else None
    template_id = parse_uuid(form.get("whatsapp_template_id"))
    if form.get("whatsapp_template_id", "").strip() and template_id is None:
        errors["whatsapp_template_id"] = "Choose an approved WhatsApp template."
    offset = form.get("whatsapp_reminder_minutes", "").strip()
    if errors:
        return None, errors
    return (
        service.MeetingInput(
            title=title,
            start_time=start,
            end_time=end,
            timezone=form.get("timezone", "").strip() or None,
            attendees=[
                a for a in form.get("attendees", "").replace(";", ",").split(",") if a.strip()
            ],
            lead_id=parse_uuid(form.get("lead_id")),
            description=form.get("description", "").strip()[:10_000] or None,
            reminder_minutes=minutes,
            video=form.get("video", "jitsi"),
            whatsapp_template_id=template_id,
            whatsapp_reminder_minutes=int(offset) if offset.isdigit() else None,
        ),
        errors,
    )


_FIELD_MESSAGES = {
    "end_time": "The end must be after the start.",
    "timezone": "Unknown time zone.",
    "lead_id": "No such lead here.",
    "attendees": "Check the attendees' e-mail addresses.",
    "video": "Connect Google Calendar to use Meet.",
}


@router.post("/agenda/meetings", response_class=HTMLResponse)
async def create_meeting(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    form = {k: str(v) for k, v in (await request.form()).items() if isinstance(v, str)}
    back = form.get("back", "")
    back = back if back.startswith("/") and not back.startswith("//") else "/agenda"
    data, errors = _parse_form(form)
    clashes: list[Any] = []
    if data is not None:
        try:
            tz = service.zone(
                data.timezone or await service.default_timezone(session, frame.principal)
            )
            start, end = service.localize(data.start_time, tz), service.localize(data.end_time, tz)
            if end > start and form.get("override") != "1":
                clashes = await service.conflicts(session, frame.principal, start, end)
            if not clashes:
                event = await service.create_event(
                    session, frame.principal, data, settings=settings
                )
                target = back if back != "/agenda" else f"/agenda?date={start.date().isoformat()}"
                return redirect(target, t("Meeting scheduled: %(title)s") % {"title": event.title})
        except AppError as exc:
            fields = [e.get("field") for e in exc.extra.get("errors", []) if isinstance(e, dict)]
            for f in fields or ["form"]:
                errors[str(f)] = _FIELD_MESSAGES.get(str(f), exc.detail)
    tz_name = await service.default_timezone(session, frame.principal)
    return render(
        request,
        "calendar/form_page.html",
        409 if clashes and not errors else 422,
        **frame.context("agenda"),
        form=form,
        errors={k: t(v) for k, v in errors.items()},
        clashes=clashes,
        tz=service.zone(tz_name),
        google_connected=False,
        **await _reminder_choices(session, frame),
    )


@router.post("/agenda/meetings/{event_id}/status", response_class=HTMLResponse)
async def meeting_status(
    request: Request, event_id: str, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    form = await request.form()
    back = str(form.get("back") or "/agenda")
    back = back if back.startswith("/") and not back.startswith("//") else "/agenda"
    parsed = parse_uuid(event_id)
    if parsed is None:
        return redirect(back, t("No meeting with that id."), "error")
    try:
        await service.update_event(
            session, frame.principal, parsed, {"status": str(form.get("status"))}, settings=settings
        )
    except AppError:
        return redirect(back, t("The meeting could not be changed."), "error")
    return redirect(back, t("Meeting updated."))


@router.get("/leads/{lead_id}/meetings-panel", response_class=HTMLResponse)
async def meetings_panel(
    request: Request, lead_id: str, frame: Member, session: SessionDep
) -> Response:
    parsed = parse_uuid(lead_id)
    if parsed is None:
        return HTMLResponse("", status_code=404)
    try:
        meetings = await service.lead_meetings(session, frame.principal, parsed)
    except AppError:
        return HTMLResponse("", status_code=404)
    tz_name = await service.default_timezone(session, frame.principal)
    today = clock.now().astimezone(service.zone(tz_name)).date()
    form = _blank_form(tz_name, today, str(parsed))
    form["back"] = f"/leads/{parsed}"
    return render(
        request,
        "calendar/_meetings_panel.html",
        **frame.context("leads"),
        meetings=meetings,
        lead_id=parsed,
        tz=service.zone(tz_name),
        form=form,
        errors={},
        clashes=[],
        **await _reminder_choices(session, frame),
    )


# --- the ICS feed ----------------------------------------------------------------------------


@router.post("/agenda/feed", response_class=HTMLResponse)
async def regenerate_feed(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    form = await request.form()
    if form.get("action") == "revoke":
        await service.revoke_feed(session, frame.principal)
        return redirect("/agenda", t("The calendar feed link was revoked."))
    token = await service.regenerate_feed(session, frame.principal)
    url = f"{settings.base_url.rstrip('/')}/calendar/feed/{token}.ics"
    response = RedirectResponse(f"/agenda?feed={url}", status_code=303)
    return response


@router.get("/calendar/feed/{token}.ics")
async def feed_ics(token: str, session: SessionDep) -> Response:
    """The member's meetings for calendar apps; the token is the only credential."""
    if not (10 <= len(token) <= 100):
        return Response(status_code=404)
    row = (
        await session.execute(
            text("SELECT * FROM lovedcrm_calendar_feed(:h)"), {"h": token_hash(token)}
        )
    ).first()
    if row is None:
        return Response(status_code=404)
    await set_tenant(session, row.organization_id, row.user_id)
    events = await service.feed_events(session, row.organization_id, row.user_id)
    body = feed(events, name="Loved CRM", stamp=clock.now())
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, max-age=300", "X-Robots-Tag": "noindex"},
    )


# --- Google Calendar -------------------------------------------------------------------------


def _redirect_uri(settings: Any) -> str:
    return f"{settings.base_url.rstrip('/')}/agenda/google/callback"


@router.post("/agenda/google/connect", response_class=HTMLResponse)
async def google_connect(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    if not sync.configured(settings):
        return redirect("/agenda", t("Google Calendar is not configured on this server."), "error")
    url = await sync.start_oauth(session, frame.principal, settings, _redirect_uri(settings))
    return RedirectResponse(url, status_code=303)


@router.get("/agenda/google/callback", response_class=HTMLResponse)
async def google_callback(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    q = request.query_params
    state, code = q.get("state") or "", q.get("code") or ""
    if q.get("error") or not code:
        return redirect("/agenda", t("Google Calendar was not connected."), "error")
    client = GoogleClient(settings)
    try:
        await sync.finish_oauth(
            session,
            frame.principal,
            settings,
            state=state,
            code=code,
            redirect_uri=_redirect_uri(settings),
            client=client,
        )
    except AppError:
        return render(
            request,
            "page_error.html",
            403,
            **frame.context("agenda"),
            title=t("No access"),
            message=t("The Google sign-in could not be verified."),
            back_url="/agenda",
            back_label=t("Back to the agenda"),
        )
    except GoogleError as exc:
        return redirect(
            "/agenda",
            t("Google refused the connection: %(reason)s") % {"reason": str(exc)},
            "error",
        )
    finally:
        await client.aclose()
    return redirect("/agenda", t("Google Calendar connected."))


@router.post("/agenda/google/disconnect", response_class=HTMLResponse)
async def google_disconnect(request: Request, frame: Member, session: SessionDep) -> Response:
    await sync.disconnect(session, frame.principal)
    return redirect("/agenda", frame.i18n.gettext("Google Calendar disconnected."))


@router.post("/agenda/google/calendar", response_class=HTMLResponse)
async def google_choose_calendar(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    form = await request.form()
    client = GoogleClient(settings)
    try:
        integration = await sync.choose_calendar(
            session, frame.principal, settings, client, str(form.get("calendar_id") or "")[:255]
        )
    except AppError as exc:
        return redirect("/agenda", t(exc.detail), "error")
    finally:
        await client.aclose()
    return redirect(
        "/agenda",
        t("Syncing with the calendar %(name)s.") % {"name": integration.calendar_name or ""},
    )
