"""Settings → Team: the organization's members (change a role, deactivate, reactivate,
remove), its pending invitations (revoke) and the invitation form (e-mail and role). The
invitation e-mail carries the link to ``/invitations/accept`` (``auth.pages``). For people
holding ``members:manage``; anyone else gets the 403 page. Thin: the rules (an organization
keeps one active admin, one pending invitation per address…) live in ``auth.team``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.auth import team
from lovedcrm.auth.permissions import ROLE_NAMES, Role
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import PageError, Shell, page_router, redirect, render, require

router = page_router()
PAGE = "/settings/team"
Manager = Annotated[Shell, Depends(require("members:manage"))]

# The roles as people read them, with what each may do (auth.permissions).
ROLE_LABELS = {
    Role.ADMIN.value: N_("Admin"),
    Role.MANAGER.value: N_("Manager"),
    Role.SALES.value: N_("Salesperson"),
    Role.VIEWER.value: N_("Viewer"),
}
ROLE_HELP = {
    Role.ADMIN.value: N_("Everything, including the team, billing and integrations."),
    Role.MANAGER.value: N_("Every lead, the pipeline and message templates; not the settings."),
    Role.SALES.value: N_("Their own leads and conversations."),
    Role.VIEWER.value: N_("Sees every lead and conversation; changes nothing."),
}
ROLES = [r.value for r in Role]


async def _page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    *,
    invite: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "auth/team.html",
        status_code,
        **frame.context("settings"),
        tab="team",
        members=await team.list_members(session, frame.principal),
        invitations=await team.list_invitations(session, frame.principal),
        invite=invite or {"email": "", "role": Role.SALES.value},
        errors=errors or {},
        roles=ROLES,
        role_labels=ROLE_LABELS,
        role_help=ROLE_HELP,
    )


def _gone(exc: NotFound) -> PageError:
    return PageError(
        404,
        N_("Not found"),
        N_("This member or invitation is no longer in the organization. Reload the page."),
        back_url=PAGE,
        back_label=N_("Team"),
    )


async def _refused(
    request: Request, frame: Shell, session: SessionDep, exc: AppError
) -> HTMLResponse:
    """The page again with the service's refusal (the last admin, …) at the top."""
    if isinstance(exc, NotFound):
        raise _gone(exc) from exc
    t = frame.i18n.gettext
    message = t(exc.detail)
    if exc.code == "last_admin":
        message = t(
            "An organization needs at least one active admin: make someone else admin first."
        )
    return await _page(request, frame, session, errors={"page": message}, status_code=exc.status)


@router.get(PAGE, response_class=HTMLResponse)
async def team_page(request: Request, frame: Manager, session: SessionDep) -> Response:
    return await _page(request, frame, session)


@router.post(PAGE + "/invitations", response_class=HTMLResponse)
async def invite(
    request: Request,
    frame: Manager,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    t = frame.i18n.gettext
    form = {"email": email.strip(), "role": role}
    errors: dict[str, str] = {}
    if role not in ROLE_NAMES:
        errors["role"] = t("Choose one of the roles in the list.")
    if not form["email"]:
        errors["email"] = t("Write the e-mail address of the person to invite.")
    if not errors:
        try:
            invitation, _token = await team.create_invitation(
                session, settings, frame.principal, email=form["email"], role=role
            )
        except AppError as exc:
            if exc.code == "invalid_email":
                errors["email"] = t("This e-mail address is not valid.")
            elif exc.code == "already_member":
                errors["email"] = t("This person is already a member of the organization.")
            else:
                errors["form"] = t(exc.detail)
            status = exc.status
        else:
            return redirect(
                PAGE,
                t("Invitation sent to %(email)s. The link works for %(days)d days.")
                % {"email": invitation.email, "days": settings.invitation_days},
            )
    else:
        status = 422
    return await _page(
        request,
        frame,
        session,
        invite=form,
        errors={f"invite_{k}": v for k, v in errors.items()},
        status_code=status,
    )


@router.post(PAGE + "/invitations/{invitation_id}/revoke", response_class=HTMLResponse)
async def revoke_invitation(
    invitation_id: uuid.UUID, request: Request, frame: Manager, session: SessionDep
) -> Response:
    try:
        await team.revoke_invitation(session, frame.principal, invitation_id)
    except AppError as exc:
        return await _refused(request, frame, session, exc)
    return redirect(PAGE, frame.i18n.gettext("Invitation revoked: its link no longer works."))


@router.post(PAGE + "/members/{member_id}/role", response_class=HTMLResponse)
async def change_role(
    member_id: uuid.UUID,
    request: Request,
    frame: Manager,
    session: SessionDep,
    role: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    t = frame.i18n.gettext
    if role not in ROLE_NAMES:
        return await _page(
            request,
            frame,
            session,
            errors={"page": t("Choose one of the roles in the list.")},
            status_code=422,
        )
    try:
        await team.update_member(session, frame.principal, member_id, role=role)
    except AppError as exc:
        return await _refused(request, frame, session, exc)
    return redirect(PAGE, t("Role changed to %(role)s.") % {"role": t(ROLE_LABELS[role])})


@router.post(PAGE + "/members/{member_id}/active", response_class=HTMLResponse)
async def set_active(
    member_id: uuid.UUID,
    request: Request,
    frame: Manager,
    session: SessionDep,
    active: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Deactivate (``active=false``: they can no longer sign in to this organization, their
    leads stay) or reactivate a member."""
    t = frame.i18n.gettext
    on = active == "true"
    try:
        await team.update_member(session, frame.principal, member_id, is_active=on)
    except AppError as exc:
        return await _refused(request, frame, session, exc)
    return redirect(PAGE, t("Member reactivated.") if on else t("Member deactivated."))


@router.post(PAGE + "/members/{member_id}/remove", response_class=HTMLResponse)
async def remove(
    member_id: uuid.UUID, request: Request, frame: Manager, session: SessionDep
) -> Response:
    try:
        await team.remove_member(session, frame.principal, member_id)
    except AppError as exc:
        return await _refused(request, frame, session, exc)
    return redirect(PAGE, frame.i18n.gettext("Member removed from the organization."))
