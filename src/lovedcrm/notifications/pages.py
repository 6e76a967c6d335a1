"""The notification centre's pages: the bell in the top bar (a fragment, refreshed live when a
``notification`` event reaches this member's stream), the notifications page, mark read /
all read, and the member's preferences per type (``/settings/notifications``)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError
from lovedcrm.notifications import service
from lovedcrm.notifications.models import CHANNELS
from lovedcrm.web.kit import MaybeSignedIn, Member, page_router, redirect, render

router = page_router()
BELL_ITEMS = 8


def _safe_link(link: str | None) -> str:
    """Only our own paths (a notification's link is ours, but never trust a stored URL)."""
    return link if link and link.startswith("/") and not link.startswith("//") else "/notifications"


def _view(frame: Any, items: list[Any]) -> list[dict[str, Any]]:
    t = frame.i18n.gettext
    return [
        {
            "id": n.id,
            "text": service.text_of(n.notification_type, n.data or {}, t),
            "kind": t(service.TYPES.get(n.notification_type, n.notification_type)),
            "unread": n.read_at is None,
            "created_at": n.created_at,
        }
        for n in items
    ]


@router.get("/notifications/bell", response_class=HTMLResponse)
async def bell(request: Request, session: SessionDep, frame: MaybeSignedIn) -> Response:
    """The top bar's bell: the unread count and the latest notifications."""
    if frame is None or frame.org is None:
        return HTMLResponse('<span id="bell" hidden></span>')
    try:
        items, _ = await service.list_notifications(session, frame.principal, limit=BELL_ITEMS)
        unread = await service.unread_count(session, frame.principal)
    except AppError:
        items, unread = [], 0
    return render(
        request,
        "notifications/_bell.html",
        **frame.context("notifications"),
        items=_view(frame, items),
        unread=unread,
    )


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(
    request: Request, session: SessionDep, frame: Member, unread: bool = False
) -> HTMLResponse:
    items, _ = await service.list_notifications(
        session, frame.principal, unread_only=unread, limit=100
    )
    return render(
        request,
        "notifications/notifications.html",
        **frame.context("notifications"),
        items=_view(frame, items),
        unread=await service.unread_count(session, frame.principal),
        only_unread=unread,
    )


@router.post("/notifications/{notification_id}/open")
async def open_notification(
    notification_id: uuid.UUID, session: SessionDep, frame: Member
) -> Response:
    """Mark it read and go to what it is about."""
    notification = await service.mark_read(session, frame.principal, notification_id)
    return RedirectResponse(_safe_link(notification.link), status_code=303)


@router.post("/notifications/read-all")
async def read_all(session: SessionDep, frame: Member) -> Response:
    await service.mark_all_read(session, frame.principal)
    return redirect("/notifications", frame.i18n.gettext("All notifications marked read."))


@router.get("/settings/notifications", response_class=HTMLResponse)
async def preferences_page(request: Request, session: SessionDep, frame: Member) -> HTMLResponse:
    return render(
        request,
        "notifications/preferences.html",
        **frame.context("settings"),
        tab="notifications",
        prefs=await service.preferences(session, frame.principal),
        types=service.TYPES,
        channels=service.CHANNEL_LABELS,
    )


@router.post("/settings/notifications")
async def preferences_save(request: Request, session: SessionDep, frame: Member) -> Response:
    form = await request.form()
    changes = {
        t: str(form.get(f"pref_{t}"))
        for t in service.TYPES
        if str(form.get(f"pref_{t}") or "") in CHANNELS
    }
    if changes:
        await service.set_preferences(session, frame.principal, changes)
    return redirect("/settings/notifications", frame.i18n.gettext("Preferences saved."))
