"""HTML pages for accounts: log-in, sign-up, log-out, e-mail verification, password reset,
invitations, the organization switcher, and the organization's logo file (served to its
members). Cookie sessions with CSRF (checked by the page kit on every signed-in post).

The pages call the same services as the JSON API; nothing here decides a business rule.
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from lovedcrm.auth import service as auth_service
from lovedcrm.auth import team
from lovedcrm.auth.service import IssuedSession
from lovedcrm.config import Settings
from lovedcrm.core.deps import (
    SESSION_COOKIE,
    SessionDep,
    SettingsDep,
    authenticate,
    bearer,
    get_database,
)
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.organizations import branding
from lovedcrm.organizations import service as org_service
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import (
    MaybeSignedIn,
    PageError,
    SignedIn,
    localizer,
    page_router,
    redirect,
    render,
)

router = page_router()
# Answers that are not pages (their failures stay problem+json): the log-out, whose CSRF
# refusal names its code, and the logo file. Included in ``router`` at the end of the module.
_plain = APIRouter(include_in_schema=False)


def _home(settings: Settings, issued: IssuedSession | None) -> Response:
    """The home page, carrying the cookie of the web session just opened (if one was)."""
    response = RedirectResponse("/", status_code=303)
    if issued is not None:
        response.set_cookie(
            SESSION_COOKIE,
            issued.token,
            max_age=settings.web_session_days * 86400,
            httponly=True,
            secure=settings.cookie_secure,
            samesite="lax",
            path="/",
        )
    return response


def _t(request: Request, message: str) -> str:
    loc = getattr(request.state, "i18n", None) or localizer(request)
    return loc.gettext(message)


def _message(request: Request, title: str, message: str, status_code: int = 200) -> HTMLResponse:
    """The small card page with a title and a message."""
    return render(request, "message.html", status_code, title=title, message=message)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


async def same_site_form(request: Request, settings: SettingsDep) -> None:
    """The forms posted before anyone is signed in (log-in, sign-up, password reset,
    invitations) have no session to bind a CSRF token to; without a check, another site
    could post them and sign the visitor in to an account of its choosing (log-in CSRF).
    Browsers say where a form comes from: ``Sec-Fetch-Site`` must be ``same-origin`` (or
    ``none``: typed, bookmarked) and ``Origin`` this application's own (the configured base
    URL, or the host the request was sent to). A client that sends neither is not a
    browser, so there is no visitor to trick: it passes."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    own = {_origin(settings.base_url), _origin(str(request.base_url))}
    if (site is not None and site.lower() not in ("same-origin", "none")) or (
        origin is not None and origin.lower() not in own
    ):
        raise PageError(
            403,
            N_("Form refused"),
            N_(
                "This form was sent from another site, so it was not accepted. "
                "Open the page on Loved CRM itself and try again."
            ),
            back_url="/login",
        )


SameSiteForm = Depends(same_site_form)


# --- log-in and sign-up ----------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return render(request, "auth/login.html", error=None, email="")


@router.post("/login", response_class=HTMLResponse, dependencies=[SameSiteForm])
async def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=256)],
) -> Response:
    try:
        _, issued = await auth_service.login(
            session,
            settings,
            get_database(request).side_engine,
            email=email,
            password=password,
            kind="web",
        )
    except AppError as exc:
        return render(request, "auth/login.html", exc.status, error=exc.detail, email=email)
    return _home(settings, issued)


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(request: Request) -> HTMLResponse:
    return render(request, "auth/signup.html", error=None, form={})


@router.post("/signup", response_class=HTMLResponse, dependencies=[SameSiteForm])
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
        return render(request, "auth/signup.html", exc.status, error=exc.detail, form=form)
    return _home(settings, issued)


@_plain.post("/logout")
async def logout(frame: MaybeSignedIn, session: SessionDep) -> Response:
    """Ends the web session. A wrong CSRF token is refused (403), or any site could log
    people out."""
    response = RedirectResponse("/login", status_code=303)
    if frame is None:
        return response
    if frame.principal.session_id:
        await auth_service.revoke_session(session, frame.principal.session_id)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/switch-organization")
async def switch_organization(
    request: Request,
    frame: SignedIn,
    session: SessionDep,
    organization_id: Annotated[uuid.UUID, Form()],
) -> Response:
    await auth_service.switch_organization(session, request.state.user_session, organization_id)
    return redirect("/", frame.i18n.gettext("Organization switched."))


# --- e-mail verification and password reset --------------------------------------------------


@router.post("/verify-email/resend")
async def resend_verification(
    frame: SignedIn, session: SessionDep, settings: SettingsDep
) -> Response:
    """The banner's "send again": a new confirmation link to the person's own address."""
    if not frame.principal.user.email_verified:
        user = await auth_service.user_of(session, frame.principal)
        await auth_service.send_verification_email(session, settings, user)
    return redirect("/", frame.i18n.gettext("A new confirmation link is on its way."))


@router.get("/verify-email", response_class=HTMLResponse)
async def verify_email_page(request: Request, session: SessionDep, token: str = "") -> HTMLResponse:
    try:
        await auth_service.verify_email(session, token)
    except AppError as exc:
        return _message(request, _t(request, "Invalid link"), exc.detail, exc.status)
    return _message(
        request,
        _t(request, "Email confirmed"),
        _t(request, "Your email is confirmed. Thank you!"),
    )


@router.get("/reset-password", response_class=HTMLResponse)
async def reset_page(request: Request, token: str = "") -> HTMLResponse:
    return render(request, "auth/reset.html", token=token, error=None)


@router.post("/reset-password", response_class=HTMLResponse, dependencies=[SameSiteForm])
async def reset_submit(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form(max_length=200)],
    new_password: Annotated[str, Form(max_length=256)],
) -> Response:
    try:
        await auth_service.reset_password(session, token, new_password)
    except AppError as exc:
        return render(request, "auth/reset.html", exc.status, token=token, error=exc.detail)
    return RedirectResponse("/login", status_code=303)


@router.get("/forgot-password", response_class=HTMLResponse)
async def forgot_page(request: Request) -> HTMLResponse:
    return render(request, "auth/forgot.html", sent=False, error=None)


@router.post("/forgot-password", response_class=HTMLResponse, dependencies=[SameSiteForm])
async def forgot_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=255)],
) -> HTMLResponse:
    await auth_service.request_password_reset(session, settings, email)
    # The same answer whether or not the account exists.
    return render(request, "auth/forgot.html", sent=True, error=None)


# --- invitations -----------------------------------------------------------------------------


@router.get("/invitations/accept", response_class=HTMLResponse)
async def invitation_page(
    request: Request, frame: MaybeSignedIn, session: SessionDep, token: str = ""
) -> HTMLResponse:
    try:
        invitation = await team.invitation_by_token(session, token)
        org = await org_service.get_organization_by_id(session, invitation.organization_id)
    except AppError as exc:
        return _message(request, _t(request, "Invalid invitation"), exc.detail, exc.status)
    return render(
        request,
        "auth/invitation.html",
        token=token,
        invitation=invitation,
        org=org,
        principal=frame.principal if frame is not None else None,
        csrf=frame.csrf if frame is not None else "",
        error=None,
    )


@router.post("/invitations/accept", response_class=HTMLResponse, dependencies=[SameSiteForm])
async def invitation_submit(
    request: Request,
    frame: MaybeSignedIn,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=200)],
    full_name: Annotated[str | None, Form(max_length=255)] = None,
    password: Annotated[str | None, Form(max_length=256)] = None,
) -> Response:
    """Accept as the signed-in person (then switch to the organization), or create the
    account and sign in."""
    user = await auth_service.user_of(session, frame.principal) if frame is not None else None
    issued = None
    try:
        user, invitation = await team.accept_invitation(
            session, settings, token=token, user=user, full_name=full_name, password=password
        )
        if frame is None:
            issued = await auth_service.open_session(
                session, settings, user, kind="web", organization_id=invitation.organization_id
            )
        else:
            await auth_service.switch_organization(
                session, request.state.user_session, invitation.organization_id
            )
    except AppError as exc:
        return _message(request, _t(request, "Invitation"), exc.detail, exc.status)
    return _home(settings, issued)


# --- the organization's logo -----------------------------------------------------------------


@_plain.get("/branding/logo/{organization_id}")
async def logo_file(
    organization_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """The logo of an organization you belong to (cookie or Bearer); 404 for anyone else."""
    try:
        principal = await authenticate(request, session, settings, await bearer(request))
    except AppError as exc:
        raise NotFound("No logo for this organization.", code="logo_not_found") from exc
    if principal.organization_id != organization_id and (
        principal.via == "api_key"
        or organization_id
        not in {o.id for _, o in await auth_service.memberships_of(session, principal.user_id)}
    ):
        raise NotFound("No logo for this organization.", code="logo_not_found")
    logo = await branding.logo_for(session, settings, organization_id)
    return FileResponse(
        logo.path,
        media_type=logo.media_type,
        headers={
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
        },
    )


router.include_router(_plain)
