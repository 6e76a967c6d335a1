"""Settings → Profile ("My account" in the user menu): your name and phone, your password,
and your sessions (end one, or every one but this). Anyone signed in, in an organization or
not. Thin: the rules live in ``auth.account`` and ``auth.service``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.auth import account
from lovedcrm.auth import service as auth_service
from lovedcrm.auth.models import UserSession
from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import PageError, Shell, SignedIn, page_router, redirect, render

router = page_router()
PAGE = "/settings/profile"


@dataclass(frozen=True)
class SessionRow:
    """One of your sessions as the page shows it."""

    id: uuid.UUID
    kind: str
    device: str | None
    address: str | None
    signed_in: Any
    last_seen: Any
    current: bool


def _rows(frame: Shell, sessions: list[UserSession]) -> list[SessionRow]:
    rows = [
        SessionRow(
            id=s.id,
            kind=s.kind,
            device=account.describe_device(s.user_agent),
            address=account.address_of(s),
            signed_in=s.created_at,
            last_seen=account.last_seen(s),
            current=account.is_current(frame.principal, s),
        )
        for s in sessions
    ]
    return sorted(rows, key=lambda r: not r.current)  # this one first


async def _page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    *,
    profile: dict[str, str] | None = None,
    errors: dict[str, dict[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    user = await auth_service.user_of(session, frame.principal)
    return render(
        request,
        "auth/profile.html",
        status_code,
        **frame.context("settings"),
        tab="profile",
        user=user,
        profile=profile or {"full_name": user.full_name, "phone": frame.i18n.phone(user.phone)},
        errors=errors or {},
        sessions=_rows(frame, await account.list_sessions(session, frame.principal)),
        password_min=auth_service.PASSWORD_MIN,
    )


@router.get(PAGE, response_class=HTMLResponse)
async def profile_page(request: Request, frame: SignedIn, session: SessionDep) -> Response:
    return await _page(request, frame, session)


@router.post(PAGE, response_class=HTMLResponse)
async def profile_save(
    request: Request,
    frame: SignedIn,
    session: SessionDep,
    full_name: Annotated[str, Form(max_length=1000)] = "",
    phone: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    t = frame.i18n.gettext
    errors: dict[str, str] = {}
    try:
        await account.update_profile(
            session,
            frame.principal,
            full_name=full_name,
            phone=phone,
            region=frame.i18n.phone_region,
        )
    except AppError as exc:
        fields = {str(e.get("field")) for e in exc.extra.get("errors", []) or []}
        if "full_name" in fields:
            errors["full_name"] = t("Write your name, with up to 255 characters.")
        if "phone" in fields:
            errors["phone"] = t(
                "This is not a phone number. Write it with the area code, e.g. (11) 98765-4321."
            )
        if not errors:
            errors["form"] = t(exc.detail)
        return await _page(
            request,
            frame,
            session,
            profile={"full_name": full_name, "phone": phone},
            errors={"profile": errors},
            status_code=422,
        )
    return redirect(PAGE, t("Profile saved."))


def _password_errors(exc: AppError, frame: Shell) -> dict[str, str]:
    t = frame.i18n.gettext
    if exc.code == "wrong_password":
        return {"current_password": t("This is not your current password.")}
    if exc.code == "weak_password":
        return {
            "new_password": t(
                "Use at least %(min)d characters, with letters and at least one digit or "
                "symbol, and not your email."
            )
            % {"min": auth_service.PASSWORD_MIN}
        }
    return {"form": t(exc.detail)}


@router.post(PAGE + "/password", response_class=HTMLResponse)
async def password_change(
    request: Request,
    frame: SignedIn,
    session: SessionDep,
    current_password: Annotated[str, Form(max_length=256)] = "",
    new_password: Annotated[str, Form(max_length=256)] = "",
    new_password_again: Annotated[str, Form(max_length=256)] = "",
    end_others: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    t = frame.i18n
    errors: dict[str, str] = {}
    if not current_password:
        errors["current_password"] = t.gettext("Type your current password.")
    if new_password != new_password_again:
        errors["new_password_again"] = t.gettext("The two new passwords are different.")
    if not errors:
        user = await auth_service.user_of(session, frame.principal)
        try:
            await auth_service.change_password(session, user, current_password, new_password)
        except AppError as exc:
            errors = _password_errors(exc, frame)
    if errors:
        return await _page(request, frame, session, errors={"password": errors}, status_code=422)
    text = t.gettext("Password changed.")
    if end_others is not None:
        ended = await account.end_other_sessions(session, frame.principal)
        if ended:
            text = t.ngettext(
                "Password changed. %(num)d other session ended.",
                "Password changed. %(num)d other sessions ended.",
                ended,
            ) % {"num": ended}
    return redirect(PAGE, text)


@router.post(PAGE + "/sessions/{session_id}/end", response_class=HTMLResponse)
async def session_end(session_id: uuid.UUID, frame: SignedIn, session: SessionDep) -> Response:
    """End another session of yours (this one ends with "Log out")."""
    if frame.principal.session_id == session_id:
        return redirect(PAGE, frame.i18n.gettext("To end this session, log out."), "info")
    try:
        await account.end_session(session, frame.principal, session_id)
    except NotFound as exc:
        raise PageError(
            404,
            N_("Not found"),
            N_("This session has already ended, or is not yours."),
            back_url=PAGE,
            back_label=N_("My account"),
        ) from exc
    return redirect(PAGE, frame.i18n.gettext("Session ended."))


@router.post(PAGE + "/sessions/end-others", response_class=HTMLResponse)
async def sessions_end_others(frame: SignedIn, session: SessionDep) -> Response:
    t = frame.i18n
    ended = await account.end_other_sessions(session, frame.principal)
    if not ended:
        return redirect(PAGE, t.gettext("No other session was open."), "info")
    text = t.ngettext("%(num)d session ended.", "%(num)d sessions ended.", ended) % {"num": ended}
    return redirect(PAGE, text)
