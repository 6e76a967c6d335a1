"""Settings → API keys: the organization's keys (name, prefix, scopes, use, expiry), a new key
(name, scopes, optional expiry: its secret is shown once, on the answer to the form, and
never again) and revoking one. For people holding ``api_keys:manage``; anyone else gets the
403 page. Thin: the rules live in ``auth.api_keys``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.auth import api_keys
from lovedcrm.auth.models import ApiKey
from lovedcrm.core import security
from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import PageError, Shell, page_router, redirect, render, require

router = page_router()
PAGE = "/settings/api-keys"
Manager = Annotated[Shell, Depends(require("api_keys:manage"))]

# What each scope lets a key do, in words for people (the keys of ``api_keys.SCOPES``).
SCOPE_LABELS = {
    "leads:read": N_("Read every lead"),
    "leads:write": N_("Create and edit leads"),
    "leads:delete": N_("Delete leads"),
    "leads:export": N_("Export leads"),
    "leads:import": N_("Import leads"),
    "pipeline:manage": N_("Change the pipeline stages"),
    "messages:read": N_("Read conversations"),
    "messages:write": N_("Send messages"),
    "templates:manage": N_("Manage message templates"),
    "members:read": N_("See the team"),
    "webhooks:manage": N_("Manage webhooks"),
    "reports:read": N_("Read reports"),
}


def _status(key: ApiKey, now: dt.datetime) -> str:
    if not key.is_active:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


async def _page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    created: tuple[ApiKey, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    keys = await api_keys.list_keys(session, frame.principal)
    now = security.utcnow()
    response = render(
        request,
        "auth/api_keys.html",
        status_code,
        **frame.context("settings"),
        tab="api_keys",
        keys=[(k, _status(k, now)) for k in keys],
        scope_options=[
            (name, frame.i18n.gettext(SCOPE_LABELS.get(name, name)), name)
            for name in api_keys.SCOPES
        ],
        form=form or {"name": "", "scopes": [], "expires_on": ""},
        errors=errors or {},
        created=created,
    )
    if created is not None:  # the secret is on this page only: keep it out of every cache
        response.headers["Cache-Control"] = "no-store"
    return response


def _expiry(raw: str, frame: Shell) -> dt.datetime | None:
    """The end of the chosen day in the organization's time zone (None: no expiry);
    ValueError for a date that is not one."""
    if not raw.strip():
        return None
    day = dt.date.fromisoformat(raw.strip())
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=frame.i18n.zone)


def _form_errors(exc: AppError, frame: Shell) -> dict[str, str]:
    t = frame.i18n.gettext
    fields = {str(e.get("field")) for e in exc.extra.get("errors", []) or []}
    if "scopes" in fields:
        return {"scopes": t("Choose at least one permission from the list.")}
    if "expires_at" in fields:
        return {"expires_on": t("Choose a day after today, or leave it empty.")}
    return {"form": t(exc.detail)}


@router.get(PAGE, response_class=HTMLResponse)
async def keys_page(request: Request, frame: Manager, session: SessionDep) -> Response:
    return await _page(request, frame, session)


@router.post(PAGE, response_class=HTMLResponse)
async def key_create(
    request: Request,
    frame: Manager,
    session: SessionDep,
    name: Annotated[str, Form(max_length=1000)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=100)] = None,
    expires_on: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    t = frame.i18n.gettext
    chosen = [s for s in scopes or [] if s]
    key_name = name.strip()
    form: dict[str, Any] = {"name": key_name, "scopes": chosen, "expires_on": expires_on.strip()}
    errors: dict[str, str] = {}
    if not key_name or len(key_name) > 255:
        errors["name"] = t("Give the key a name of up to 255 characters, e.g. Zapier.")
    if not chosen:
        errors["scopes"] = t("Choose at least one permission from the list.")
    expires_at = None
    try:
        expires_at = _expiry(expires_on, frame)
    except ValueError:
        errors["expires_on"] = t("Choose a day after today, or leave it empty.")
    if not errors:
        try:
            created = await api_keys.create_key(
                session, frame.principal, name=key_name, scopes=chosen, expires_at=expires_at
            )
        except AppError as exc:
            return await _page(
                request,
                frame,
                session,
                form=form,
                errors=_form_errors(exc, frame),
                status_code=exc.status,
            )
        return await _page(request, frame, session, created=created)
    return await _page(request, frame, session, form=form, errors=errors, status_code=422)


@router.post(PAGE + "/{key_id}/revoke", response_class=HTMLResponse)
async def key_revoke(key_id: uuid.UUID, frame: Manager, session: SessionDep) -> Response:
    try:
        key = await api_keys.revoke_key(session, frame.principal, key_id)
    except NotFound as exc:
        raise PageError(
            404,
            N_("Not found"),
            N_("No API key with that id in this organization."),
            back_url=PAGE,
            back_label=N_("API keys"),
        ) from exc
    return redirect(
        PAGE,
        frame.i18n.gettext("Key %(name)s revoked: it no longer works.") % {"name": key.key_name},
    )
