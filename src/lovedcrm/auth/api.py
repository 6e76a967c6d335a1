"""JSON routes for accounts (thin: the rules live in auth.service)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from lovedcrm.auth import service
from lovedcrm.auth.models import User, UserSession
from lovedcrm.auth.schemas import (
    ChangePasswordIn,
    DetailOut,
    EmailIn,
    LoginIn,
    MembershipOut,
    MeOut,
    PasswordResetIn,
    RefreshIn,
    SignupIn,
    SignupOut,
    SwitchOrgIn,
    TokenIn,
    TokenOut,
    UserOut,
)
from lovedcrm.config import Settings
from lovedcrm.core import security
from lovedcrm.core.deps import CurrentPrincipal, DatabaseDep, SessionDep, SettingsDep
from lovedcrm.core.errors import Unauthorized
from lovedcrm.db.tenant import set_tenant

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated or bad credentials (problem+json)"},
    422: {"description": "Invalid fields (problem+json listing each field)"},
}


def _tokens(settings: Settings, user: User, issued: service.IssuedSession) -> TokenOut:
    access, ttl = security.create_access_token(
        settings,
        user_id=user.id,
        organization_id=issued.session.active_organization_id,
        session_id=issued.session.id,
    )
    return TokenOut(
        access_token=access,
        refresh_token=issued.token,
        expires_in=ttl,
        organization_id=issued.session.active_organization_id,
    )


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupOut,
    responses={409: {"description": "Email already taken"}, 422: _PROBLEMS[422]},
)
async def signup(body: SignupIn, session: SessionDep, settings: SettingsDep) -> SignupOut:
    """Create an account with its organization (admin role, default stages and templates)."""
    user, org = await service.signup(
        session,
        settings,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        organization_name=body.organization_name,
        phone=body.phone,
        locale=body.locale,
    )
    issued = await service.open_session(session, settings, user, kind="api", organization_id=org.id)
    return SignupOut(
        user=UserOut.model_validate(user),
        organization_id=org.id,
        organization_slug=org.slug,
        tokens=_tokens(settings, user, issued),
    )


@router.post(
    "/login",
    response_model=TokenOut,
    responses={401: _PROBLEMS[401], 422: _PROBLEMS[422], 429: {"description": "Too many failures"}},
)
async def login(
    body: LoginIn, session: SessionDep, settings: SettingsDep, database: DatabaseDep
) -> TokenOut:
    user, issued = await service.login(
        session,
        settings,
        database.side_engine,
        email=body.email,
        password=body.password,
        kind="api",
        organization_id=body.organization_id,
    )
    return _tokens(settings, user, issued)


@router.post("/refresh", response_model=TokenOut, responses={401: _PROBLEMS[401]})
async def refresh(
    body: RefreshIn, session: SessionDep, settings: SettingsDep, database: DatabaseDep
) -> TokenOut:
    """Exchange a refresh token for new tokens; the old refresh token stops working. A
    refresh token used a second time ends every session it belongs to (401
    `refresh_token_reused`): someone else has a copy of it."""
    user, issued = await service.refresh(
        session, settings, database.side_engine, body.refresh_token
    )
    return _tokens(settings, user, issued)


@router.post("/logout", response_model=DetailOut, responses={401: _PROBLEMS[401]})
async def logout(principal: CurrentPrincipal, session: SessionDep) -> DetailOut:
    """End this session: its access and refresh tokens stop working at once."""
    if principal.session_id:
        await service.revoke_session(session, principal.session_id)
    return DetailOut(detail="Logged out.")


@router.get("/me", response_model=MeOut, responses={401: _PROBLEMS[401]})
async def me(principal: CurrentPrincipal, session: SessionDep) -> MeOut:
    await set_tenant(session, principal.organization_id, principal.user_id)
    memberships = await service.memberships_of(session, principal.user_id)
    return MeOut(
        user=UserOut.model_validate(await service.user_of(session, principal)),
        organization_id=principal.organization_id,
        role=principal.role,
        permissions=sorted(principal.permissions),
        memberships=[
            MembershipOut(
                organization_id=o.id,
                organization_name=o.name,
                organization_slug=o.slug,
                role=m.role,
            )
            for m, o in memberships
        ],
    )


@router.post(
    "/switch-organization", response_model=TokenOut, responses={401: _PROBLEMS[401], 404: {}}
)
async def switch_organization(
    body: SwitchOrgIn, principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep
) -> TokenOut:
    """Work in another of your organizations: returns tokens scoped to it."""
    assert principal.session_id is not None
    user_session = await session.get(UserSession, principal.session_id)
    if user_session is None:
        raise Unauthorized("The session has ended.", code="session_revoked")
    await service.switch_organization(session, user_session, body.organization_id)
    # Rotate: the new pair is bound to the new organization (same family).
    user = await service.user_of(session, principal)
    issued = await service.rotate_session(
        session, settings, user, user_session, body.organization_id
    )
    return _tokens(settings, user, issued)


@router.post("/verify-email", response_model=DetailOut, responses={401: _PROBLEMS[401]})
async def verify_email(body: TokenIn, session: SessionDep) -> DetailOut:
    await service.verify_email(session, body.token)
    return DetailOut(detail="Email verified.")


@router.post("/verify-email/resend", response_model=DetailOut, status_code=202)
async def resend_verification(
    principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep
) -> DetailOut:
    if not principal.user.email_verified:
        await service.send_verification_email(
            session, settings, await service.user_of(session, principal)
        )
    return DetailOut(detail="If your email is not verified yet, a new link is on its way.")


@router.post("/password-reset/request", response_model=DetailOut, status_code=202)
async def request_password_reset(
    body: EmailIn, session: SessionDep, settings: SettingsDep
) -> DetailOut:
    await service.request_password_reset(session, settings, body.email)
    return DetailOut(detail="If an account exists for that email, a reset link is on its way.")


@router.post(
    "/password-reset/confirm",
    response_model=DetailOut,
    responses={401: _PROBLEMS[401], 422: _PROBLEMS[422]},
)
async def confirm_password_reset(body: PasswordResetIn, session: SessionDep) -> DetailOut:
    await service.reset_password(session, body.token, body.new_password)
    return DetailOut(detail="Password changed. Log in with the new password.")


@router.post(
    "/password", response_model=DetailOut, responses={401: _PROBLEMS[401], 422: _PROBLEMS[422]}
)
async def change_password(
    body: ChangePasswordIn, principal: CurrentPrincipal, session: SessionDep
) -> DetailOut:
    await service.change_password(
        session, await service.user_of(session, principal), body.current_password, body.new_password
    )
    return DetailOut(detail="Password changed.")
