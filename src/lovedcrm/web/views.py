"""HTML pages for accounts: log-in, sign-up, log-out, password reset, email verification,
invitations, the organization switcher and the home shell. Cookie sessions with CSRF.

The pages call the same services as the JSON API; nothing here decides a business rule.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lovedcrm.auth import service as auth_service
from lovedcrm.auth import team
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.deps import SESSION_COOKIE, SessionDep, SettingsDep, get_principal
from lovedcrm.core.errors import AppError
from lovedcrm.core.security import CSRF_FIELD
from lovedcrm.organizations import service as org_service
from lovedcrm.reports import home as dashboard
from lovedcrm.web.render import flash, localizer, render, shell, templates, web_principal

router = APIRouter(include_in_schema=False)
__all__ = ["router", "templates"]


def _set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.web_session_days * 86400,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )


def _render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    return render(request, name, status_code, **ctx)


def _t(request: Request, message: str) -> str:
    loc = getattr(request.state, "i18n", None) or localizer(request)
    return loc.gettext(message)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return _render(request, "login.html", error=None, email="")


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=256)],
) -> Response:
    try:
        _, issued = await auth_service.login(
            session, settings, email=email, password=password, kind="web"
        )
    except AppError as exc:
        return _render(request, "login.html", status_code=exc.status, error=exc.detail, email=email)
    response = RedirectResponse("/", status_code=303)
    _set_session_cookie(response, settings, issued.token)
    return response


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(request: Request) -> HTMLResponse:
    return _render(request, "signup.html", error=None, form={})


@router.post("/signup", response_class=HTMLResponse)
async def signup_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    full_name: Annotated[str, Form(max_length=255)],
    email: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=256)],
    organization_name: Annotated[str, Form(max_length=255)],
) -> Response:
    form = {"full_name": full_name, "email": email, "organization_name": organization_name}
    try:
        async with session.begin_nested():
            user, org = await auth_service.signup(
                session,
                settings,
                email=email,
                password=password,
                full_name=full_name,
                organization_name=organization_name,
            )
            issued = await auth_service.open_session(
                session, settings, user, kind="web", organization_id=org.id
            )
    except AppError as exc:
        return _render(request, "signup.html", status_code=exc.status, error=exc.detail, form=form)
    response = RedirectResponse("/", status_code=303)
    _set_session_cookie(response, settings, issued.token)
    return response


async def _web_principal(request: Request, session: SessionDep, settings: SettingsDep) -> Any:
    return await web_principal(request, session, settings)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    frame = await shell(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    summary = None
    if frame.org is not None:
        summary = await dashboard.home_summary(
            session, frame.principal, datetime.now(UTC), frame.org
        )
    return _render(request, "home.html", **frame.context("home"), summary=summary)


@router.post("/logout")
async def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    if not request.cookies.get(SESSION_COOKIE):
        return RedirectResponse("/login", status_code=303)
    # Not _web_principal: a CSRF failure must refuse (403), or any site could log users out.
    principal = await get_principal(request, session, settings, None)
    if principal.session_id:
        await auth_service.revoke_session(session, principal.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/switch-organization")
async def switch_organization(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    organization_id: Annotated[uuid.UUID, Form()],
) -> Response:
    if not request.cookies.get(SESSION_COOKIE):
        return RedirectResponse("/login", status_code=303)
    await get_principal(request, session, settings, None)  # 403 on a CSRF failure
    await auth_service.switch_organization(session, request.state.user_session, organization_id)
    response = RedirectResponse("/", status_code=303)
    flash(response, _t(request, "Organization switched."))
    return response


@router.get("/verify-email", response_class=HTMLResponse)
async def verify_email_page(request: Request, session: SessionDep, token: str = "") -> HTMLResponse:
    try:
        await auth_service.verify_email(session, token)
        return _render(
            request,
            "message.html",
            title=_t(request, "Email confirmed"),
            message=_t(request, "Your email is confirmed. Thank you!"),
        )
    except AppError as exc:
        return _render(
            request,
            "message.html",
            status_code=exc.status,
            title=_t(request, "Invalid link"),
            message=exc.detail,
        )


@router.get("/reset-password", response_class=HTMLResponse)
async def reset_page(request: Request, token: str = "") -> HTMLResponse:
    return _render(request, "reset.html", token=token, error=None)


@router.post("/reset-password", response_class=HTMLResponse)
async def reset_submit(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form(max_length=200)],
    new_password: Annotated[str, Form(max_length=256)],
) -> Response:
    try:
        async with session.begin_nested():
            await auth_service.reset_password(session, token, new_password)
    except AppError as exc:
        return _render(request, "reset.html", status_code=exc.status, token=token, error=exc.detail)
    return RedirectResponse("/login", status_code=303)


@router.get("/forgot-password", response_class=HTMLResponse)
async def forgot_page(request: Request) -> HTMLResponse:
    return _render(request, "forgot.html", sent=False, error=None)


@router.post("/forgot-password", response_class=HTMLResponse)
async def forgot_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=255)],
) -> HTMLResponse:
    await auth_service.request_password_reset(session, settings, email)
    # The same answer whether or not the account exists.
    return _render(request, "forgot.html", sent=True, error=None)


@router.get("/invitations/accept", response_class=HTMLResponse)
async def invitation_page(
    request: Request, session: SessionDep, settings: SettingsDep, token: str = ""
) -> HTMLResponse:
    try:
        async with session.begin_nested():
            invitation = await team.invitation_by_token(session, token)
            org = await org_service.get_organization_by_id(session, invitation.organization_id)
    except AppError as exc:
        return _render(
            request,
            "message.html",
            status_code=exc.status,
            title=_t(request, "Invalid invitation"),
            message=exc.detail,
        )
    principal = await _web_principal(request, session, settings)
    csrf = security.csrf_token(settings, request.state.user_session.token_hash) if principal else ""
    return _render(
        request,
        "invitation.html",
        token=token,
        invitation=invitation,
        org=org,
        principal=principal,
        csrf=csrf,
        error=None,
    )


@router.post("/invitations/accept", response_class=HTMLResponse)
async def invitation_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=200)],
    full_name: Annotated[str | None, Form(max_length=255)] = None,
    password: Annotated[str | None, Form(max_length=256)] = None,
) -> Response:
    user = None
    if request.cookies.get(SESSION_COOKIE):
        principal = await get_principal(request, session, settings, None)  # CSRF checked
        user = await auth_service.user_of(session, principal)
    try:
        async with session.begin_nested():
            user, invitation = await team.accept_invitation(
                session, settings, token=token, user=user, full_name=full_name, password=password
            )
            issued = None
            if not request.cookies.get(SESSION_COOKIE):
                issued = await auth_service.open_session(
                    session, settings, user, kind="web", organization_id=invitation.organization_id
                )
            else:
                await auth_service.switch_organization(
                    session, request.state.user_session, invitation.organization_id
                )
    except AppError as exc:
        return _render(
            request,
            "message.html",
            status_code=exc.status,
            title=_t(request, "Invitation"),
            message=exc.detail,
        )
    response = RedirectResponse("/", status_code=303)
    if issued is not None:
        _set_session_cookie(response, settings, issued.token)
    return response


@router.get("/settings/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Background jobs of the organization: counts, failures with their errors, retry."""
    from lovedcrm.jobs import service as jobs_service

    frame = await shell(request, session, settings)
    if frame is None:
        return RedirectResponse("/login", status_code=303)
    try:
        stats = await jobs_service.stats(session, frame.principal)
        failed, _ = await jobs_service.list_jobs(
            session, frame.principal, status="failed", limit=50
        )
    except AppError as exc:
        return _render(
            request,
            "message.html",
            status_code=exc.status,
            title=_t(request, "No access"),
            message=exc.detail,
        )
    return _render(
        request,
        "jobs.html",
        **frame.context("settings"),
        tab="jobs",
        stats=stats,
        failed=failed,
    )


@router.post("/settings/jobs/{job_id}/retry")
async def jobs_retry(
    job_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    from lovedcrm.jobs import service as jobs_service

    if not request.cookies.get(SESSION_COOKIE):
        return RedirectResponse("/login", status_code=303)
    principal = await get_principal(request, session, settings, None)  # CSRF checked
    await jobs_service.retry(session, principal, job_id)
    response = RedirectResponse("/settings/jobs", status_code=303)
    flash(response, _t(request, "The job will run again."))
    return response


CSRF_FIELD_NAME = CSRF_FIELD
