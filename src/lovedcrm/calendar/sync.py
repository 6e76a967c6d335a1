"""Google Calendar per member: the OAuth flow (state + PKCE S256, offline access), tokens
encrypted and refreshed before they expire, the push of CRM meetings and the incremental pull
of Google's events. Called by the pages (OAuth) and the jobs (push, pull)."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.calendar import service
from lovedcrm.calendar.google import CRM_PROPERTY, GoogleClient, GoogleError, SyncExpired, pkce_pair
from lovedcrm.calendar.google import authorization_url as google_authorization_url
from lovedcrm.calendar.models import CalendarEvent, CalendarIntegration
from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.errors import AppError, Conflict, Forbidden, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.core.security import SecretBox, new_token, token_hash
from lovedcrm.db.tenant import save_new
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads.models import Lead

STATE_LIFETIME = timedelta(minutes=15)
REFRESH_MARGIN = timedelta(minutes=5)
MAX_PAGES = 50


def configured(settings: Settings) -> bool:
    return bool(settings.google_client_id and settings.google_client_secret)


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption_key.get_secret_value())


def _ctx(org: uuid.UUID, name: str) -> str:
    return f"calendar_integrations:{org}:{name}"


def seal(settings: Settings, org: uuid.UUID, name: str, value: str) -> str:
    return _box(settings).encrypt(value, context=_ctx(org, name))


def unseal(settings: Settings, org: uuid.UUID, name: str, value: str) -> str:
    return _box(settings).decrypt(value, context=_ctx(org, name))


async def start_oauth(
    session: AsyncSession, principal: Principal, settings: Settings, redirect_uri: str
) -> str:
    """The Google consent URL for the member; remembers the state's hash and the verifier."""
    principal.require("leads:read")
    if not configured(settings):
        raise Conflict(
            "Google Calendar is not configured on this server.", code="google_not_configured"
        )
    org = principal.org()
    integration = await service.integration_of(session, org, principal.user_id)
    if integration is None:
        integration = CalendarIntegration(
            organization_id=org, user_id=principal.user_id, provider="google"
        )
        integration.sync_status = "connecting"
        await save_new(session, integration)
    state = new_token(32)
    verifier, challenge = pkce_pair()
    integration.oauth_state_hash = token_hash(state)
    integration.pkce_verifier = seal(settings, org, "pkce_verifier", verifier)
    integration.oauth_started_at = clock.now()
    await session.flush()
    return google_authorization_url(
        settings, state=state, challenge=challenge, redirect_uri=redirect_uri
    )


async def finish_oauth(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    *,
    state: str,
    code: str,
    redirect_uri: str,
    client: GoogleClient,
) -> CalendarIntegration:
    """Check the state (a forged or stale one is refused), exchange the code with the PKCE
    verifier, store the tokens encrypted and queue the first sync."""
    org = principal.org()
    integration = await service.integration_of(session, org, principal.user_id)
    started = integration.oauth_started_at if integration else None
    if (
        integration is None
        or not integration.oauth_state_hash
        or not integration.pkce_verifier
        or not hmac.compare_digest(integration.oauth_state_hash, token_hash(state))
        or started is None
        or clock.now() - started > STATE_LIFETIME
    ):
        raise Forbidden("The Google sign-in could not be verified.", code="oauth_state_invalid")
    verifier = unseal(settings, org, "pkce_verifier", integration.pkce_verifier)
    integration.oauth_state_hash = None
    integration.pkce_verifier = None
    tokens = await client.exchange_code(code, verifier, redirect_uri)
    _store_tokens(
        settings, integration, tokens.access_token, tokens.refresh_token, tokens.expires_in
    )
    integration.calendar_id = integration.calendar_id or "primary"
    try:
        calendars = await client.list_calendars(tokens.access_token)
        primary = next((c for c in calendars if c.get("primary")), None)
        if primary and integration.calendar_id == "primary":
            integration.calendar_name = str(primary.get("summary") or "")[:255] or None
            integration.provider_user_id = str(primary.get("id") or "")[:255] or None
    except GoogleError:
        pass  # the calendar's name is a nicety
    integration.sync_status = "active"
    integration.sync_error = None
    integration.sync_token = None
    await session.flush()
    await enqueue(
        session,
        "calendar.pull",
        {"integration_id": str(integration.id)},
        organization_id=org,
        # Per connection: a key taken by an earlier connection's pull would skip this one.
        dedupe_key=f"calendar.pull:{integration.id}:connect:{clock.now().isoformat()}",
    )
    await _retry_failed(session, integration)
    return integration


async def _retry_failed(session: AsyncSession, integration: CalendarIntegration) -> None:
    """After a reconnection, push again what failed meanwhile."""
    rows = await session.scalars(
        select(CalendarEvent).where(
            CalendarEvent.organization_id == integration.organization_id,
            CalendarEvent.created_by == integration.user_id,
            CalendarEvent.source == "crm",
            CalendarEvent.sync_state.in_(("failed", "pending")),
        )
    )
    for event in rows.all():
        event.calendar_integration_id = integration.id
        action = "patch" if event.external_event_id else "insert"
        if event.status == "cancelled":
            action = "delete"
        await enqueue(
            session,
            "calendar.push",
            {"event_id": str(event.id), "action": action},
            organization_id=event.organization_id,
        )


def _store_tokens(
    settings: Settings,
    integration: CalendarIntegration,
    access: str,
    refresh: str | None,
    expires_in: timedelta,
) -> None:
    org = integration.organization_id
    integration.access_token = seal(settings, org, "access_token", access)
    if refresh:
        integration.refresh_token = seal(settings, org, "refresh_token", refresh)
    integration.token_expires_at = clock.now() + expires_in


async def disconnect(session: AsyncSession, principal: Principal) -> None:
    integration = await service.integration_of(session, principal.org(), principal.user_id)
    if integration is None:
        return
    await session.execute(
        update(CalendarEvent)
        .where(
            CalendarEvent.organization_id == integration.organization_id,
            CalendarEvent.calendar_integration_id == integration.id,
        )
        .values(calendar_integration_id=None)
    )
    await session.delete(integration)
    await session.flush()


def mark_failed(integration: CalendarIntegration, reason: str) -> None:
    integration.sync_status = "error"
    integration.sync_error = reason[:1000]


async def access_token(
    settings: Settings, integration: CalendarIntegration, client: GoogleClient
) -> str:
    """A valid access token: refreshed when it expires within five minutes. A revoked grant
    marks the integration "error" with the reason and raises."""
    org = integration.organization_id
    if integration.sync_status == "error" or not integration.refresh_token:
        raise GoogleError(
            integration.sync_error or "Google Calendar is not connected.",
            transient=False,
            revoked=True,
        )
    expires = integration.token_expires_at
    if integration.access_token and expires and expires - clock.now() > REFRESH_MARGIN:
        return unseal(settings, org, "access_token", integration.access_token)
    refresh = unseal(settings, org, "refresh_token", integration.refresh_token)
    try:
        tokens = await client.refresh(refresh)
    except GoogleError as exc:
        if exc.revoked or exc.status in (400, 401):
            mark_failed(integration, f"Google access was revoked or expired: {exc}")
            exc.revoked = True
        raise
    _store_tokens(
        settings, integration, tokens.access_token, tokens.refresh_token, tokens.expires_in
    )
    return tokens.access_token


def google_body(event: CalendarEvent) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": event.title,
        "description": event.description or "",
        "start": {"dateTime": event.start_time.isoformat(), "timeZone": event.timezone},
        "end": {"dateTime": event.end_time.isoformat(), "timeZone": event.timezone},
        "attendees": [{"email": e} for e in (event.attendees or [])],
        "extendedProperties": {"private": {CRM_PROPERTY: str(event.id)}},
    }
    if event.meeting_url and "meet.google.com" not in event.meeting_url:
        body["location"] = event.meeting_url
    return body


async def push(
    session: AsyncSession,
    settings: Settings,
    event: CalendarEvent,
    action: str,
    client: GoogleClient,
) -> None:
    """Insert, patch or delete the meeting in the member's Google calendar."""
    integration = (
        await session.get(CalendarIntegration, event.calendar_integration_id)
        if event.calendar_integration_id
        else None
    )
    if integration is None or not integration.calendar_id:
        event.sync_state = None
        return
    try:
        token = await access_token(settings, integration, client)
        calendar = integration.calendar_id
        if action == "delete" or event.status == "cancelled":
            if event.external_event_id:
                await client.delete_event(token, calendar, event.external_event_id)
        elif event.external_event_id:
            await client.patch_event(token, calendar, event.external_event_id, google_body(event))
        else:
            body = google_body(event)
            meet = action == "insert_meet"
            if meet:
                body["conferenceData"] = {
                    "createRequest": {
                        "requestId": event.id.hex,
                        "conferenceSolutionKey": {"type": "hangoutsMeet"},
                    }
                }
            created = await client.insert_event(token, calendar, body, conference=meet)
            event.external_event_id = str(created["id"])[:255]
            if meet and created.get("hangoutLink"):
                event.meeting_url = str(created["hangoutLink"])
    except GoogleError as exc:
        if exc.transient:
            raise
        event.sync_state = "failed"
        event.sync_error = str(exc)[:1000]
        return
    event.sync_state = "synced"
    event.sync_error = None


def _when(value: dict[str, Any] | None) -> datetime | None:
    if not value:
        return None
    raw = value.get("dateTime") or (
        f"{value['date']}T00:00:00+00:00" if value.get("date") else None
    )
    if not raw:
        return None
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))


async def _lead_for(
    session: AsyncSession, organization_id: uuid.UUID, emails: list[str]
) -> uuid.UUID | None:
    if not emails:
        return None
    return await session.scalar(
        select(Lead.id)
        .where(Lead.organization_id == organization_id, func.lower(Lead.email).in_(emails))
        .order_by(Lead.created_at)
        .limit(1)
    )


async def _apply(
    session: AsyncSession, integration: CalendarIntegration, item: dict[str, Any]
) -> str:
    """One event from Google: ours (marked) → skipped; cancelled → removed; else upserted."""
    ext_id = str(item.get("id") or "")[:255]
    private = (item.get("extendedProperties") or {}).get("private") or {}
    if not ext_id or private.get(CRM_PROPERTY):
        return "ours"
    existing = await session.scalar(
        select(CalendarEvent).where(
            CalendarEvent.organization_id == integration.organization_id,
            CalendarEvent.calendar_integration_id == integration.id,
            CalendarEvent.external_event_id == ext_id,
        )
    )
    if item.get("status") == "cancelled":
        if existing is not None:
            await session.delete(existing)
            return "removed"
        return "skipped"
    start, end = _when(item.get("start")), _when(item.get("end"))
    if start is None or end is None or end <= start:
        return "skipped"
    tz = (item.get("start") or {}).get("timeZone") or service.DEFAULT_TIMEZONE
    try:
        service.zone(tz)
    except Exception:
        tz = service.DEFAULT_TIMEZONE
    emails = [
        str(a.get("email")).lower()
        for a in item.get("attendees") or []
        if isinstance(a, dict) and a.get("email") and not a.get("self")
    ][:50]
    event = existing or CalendarEvent(
        organization_id=integration.organization_id,
        created_by=integration.user_id,
        calendar_integration_id=integration.id,
        external_event_id=ext_id,
        source="google",
        status="scheduled",
        ics_sequence=0,
    )
    event.title = str(item.get("summary") or "(Google)")[:255]
    event.description = item.get("description") or None
    event.start_time, event.end_time, event.timezone = start, end, tz
    event.attendees = emails
    event.meeting_url = item.get("hangoutLink") or event.meeting_url
    event.sync_state = "synced"
    if event.lead_id is None:
        event.lead_id = await _lead_for(session, integration.organization_id, emails)
    if existing is None:
        session.add(event)
        await session.flush()
        return "added"
    return "updated"


async def pull(
    session: AsyncSession,
    settings: Settings,
    integration: CalendarIntegration,
    client: GoogleClient,
) -> dict[str, int]:
    """Incremental sync: from the stored syncToken through every page; a 410 GONE drops the
    token and starts a full sync. Counts what happened."""
    counts = {"added": 0, "updated": 0, "removed": 0, "ours": 0, "skipped": 0, "full": 0}
    token = await access_token(settings, integration, client)
    calendar = integration.calendar_id or "primary"
    sync_token, page_token = integration.sync_token, None
    for _ in range(MAX_PAGES):
        try:
            page = await client.list_events(
                token,
                calendar,
                sync_token=None if page_token else sync_token,
                page_token=page_token,
            )
        except SyncExpired:
            if sync_token is None:
                raise
            counts["full"] += 1
            sync_token, page_token = None, None
            integration.sync_token = None
            continue
        for item in page.items:
            counts[await _apply(session, integration, item)] += 1
        if page.next_page_token:
            page_token = page.next_page_token
            continue
        integration.sync_token = page.next_sync_token or integration.sync_token
        break
    integration.last_sync_at = clock.now()
    integration.sync_status = "active"
    integration.sync_error = None
    await session.flush()
    return counts


# --- choosing the calendar to sync (issue 17) -------------------------------------------------

WRITABLE_ROLES = ("owner", "writer")


@dataclass
class GoogleCalendar:
    id: str
    summary: str
    primary: bool
    access_role: str

    @property
    def writable(self) -> bool:
        return self.access_role in WRITABLE_ROLES


async def _connected_integration(
    session: AsyncSession, principal: Principal
) -> CalendarIntegration:
    principal.require("leads:read")
    integration = await service.integration_of(session, principal.org(), principal.user_id)
    if integration is None or not integration.refresh_token:
        raise Conflict("Google Calendar is not connected.", code="google_not_connected")
    return integration


async def calendars(
    session: AsyncSession, principal: Principal, settings: Settings, client: GoogleClient
) -> tuple[CalendarIntegration, list[GoogleCalendar]]:
    """The member's Google calendars (``users/me/calendarList``), the primary one first."""
    integration = await _connected_integration(session, principal)
    try:
        token = await access_token(settings, integration, client)
        items = await client.list_calendars(token)
    except GoogleError as exc:
        if exc.revoked:
            raise Conflict(
                "Google access was revoked: reconnect Google Calendar.", code="google_revoked"
            ) from exc
        raise AppError(
            "Google Calendar could not be reached; try again.",
            code="google_unavailable",
            status=502,
        ) from exc
    found = [
        GoogleCalendar(
            id=str(c.get("id"))[:255],
            summary=str(c.get("summaryOverride") or c.get("summary") or c.get("id"))[:255],
            primary=bool(c.get("primary")),
            access_role=str(c.get("accessRole") or "reader"),
        )
        for c in items
        if c.get("id")
    ]
    found.sort(key=lambda c: (not c.primary, c.summary.lower()))
    return integration, found


def is_current(integration: CalendarIntegration, calendar: GoogleCalendar) -> bool:
    chosen = integration.calendar_id
    return chosen == calendar.id or (chosen == "primary" and calendar.primary)


async def choose_calendar(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    client: GoogleClient,
    calendar_id: str,
) -> CalendarIntegration:
    """Sync with ``calendar_id`` (one the member may write to). A different calendar drops the
    sync token and what was pulled from the old one, re-pushes the coming CRM meetings there
    and queues a full pull."""
    integration, found = await calendars(session, principal, settings, client)
    chosen = next((c for c in found if c.id == calendar_id), None)
    if chosen is None or not chosen.writable:
        raise ValidationFailed(
            "Pick one of your Google calendars that you can write to.",
            code="calendar_not_writable",
            extra={
                "errors": [
                    {
                        "field": "calendar_id",
                        "message": "is not one of the member's writable Google calendars",
                    }
                ]
            },
        )
    if is_current(integration, chosen):
        integration.calendar_name = chosen.summary
        await session.flush()
        return integration
    integration.calendar_id = chosen.id
    integration.calendar_name = chosen.summary
    integration.sync_token = None
    await session.execute(
        delete(CalendarEvent).where(
            CalendarEvent.organization_id == integration.organization_id,
            CalendarEvent.calendar_integration_id == integration.id,
            CalendarEvent.source == "google",
        )
    )
    await session.execute(
        update(CalendarEvent)
        .where(
            CalendarEvent.organization_id == integration.organization_id,
            CalendarEvent.calendar_integration_id == integration.id,
        )
        .values(external_event_id=None, sync_state=None)
    )
    upcoming = await session.scalars(
        select(CalendarEvent).where(
            CalendarEvent.organization_id == integration.organization_id,
            CalendarEvent.calendar_integration_id == integration.id,
            CalendarEvent.status == "scheduled",
            CalendarEvent.end_time > clock.now(),
        )
    )
    for event in upcoming.all():
        event.sync_state = "pending"
        await enqueue(
            session,
            "calendar.push",
            {"event_id": str(event.id), "action": "insert"},
            organization_id=event.organization_id,
        )
    await session.flush()
    await enqueue(
        session,
        "calendar.pull",
        {"integration_id": str(integration.id)},
        organization_id=integration.organization_id,
        dedupe_key=f"calendar.pull:{integration.id}:calendar:{clock.now().isoformat()}",
    )
    return integration
