"""Settings → Webhooks: the organization's subscriptions (add one: URL, events, the API key
that owns it, retries; its signing secret is shown once), and for each: edit, enable or
disable, send a test, rotate the secret, delete, and the delivery log (status, response
code, attempts, error) with redeliver. While deliveries are about to be sent the log watches
for them (htmx). For people holding ``webhooks:manage``; anyone else gets the 403 page.
Thin: the rules live in ``webhooks.service``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.auth import api_keys
from lovedcrm.core import security
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, Forbidden, NotFound
from lovedcrm.core.events import EVENT_TYPES
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import (
    PageError,
    Shell,
    attempt,
    is_htmx,
    page_router,
    parse_uuid,
    redirect,
    render,
    require,
)
from lovedcrm.webhooks import deliveries, service
from lovedcrm.webhooks.models import WebhookSubscription

router = page_router()
PAGE = "/settings/webhooks"
Manager = Annotated[Shell, Depends(require(service.PERMISSION))]
LOG_PAGE_SIZE = 25
WATCH_SECONDS = 2

EVENT_LABELS = {
    "lead.created": N_("A lead is created"),
    "lead.updated": N_("A lead is edited"),
    "lead.stage_changed": N_("A lead moves to another stage"),
    "lead.assigned": N_("A lead gets another owner"),
    "lead.converted": N_("A lead is won"),
    "lead.lost": N_("A lead is lost"),
    "lead.deleted": N_("A lead is deleted"),
    "activity.created": N_("A note, task or call is added to a lead"),
    "message.received": N_("A message arrives"),
    "message.sent": N_("A message is sent"),
    "message.status_changed": N_("A message is delivered or read"),
    "call.completed": N_("A call ends"),
}


@dataclass
class HookForm:
    """A subscription's form as typed (kept for redisplay after an error)."""

    url: str = ""
    events: list[str] = field(default_factory=list)
    api_key_id: str = ""
    max_retries: str = "3"

    @classmethod
    def of(cls, sub: WebhookSubscription) -> HookForm:
        return cls(
            url=sub.webhook_url,
            events=[str(e) for e in sub.events or []],
            api_key_id=str(sub.api_key_id),
            max_retries=str(sub.max_retries if sub.max_retries is not None else 3),
        )


async def subscription_in_page(
    subscription_id: uuid.UUID, frame: Manager, session: SessionDep
) -> WebhookSubscription:
    """The subscription the URL names, or the 404 page."""
    try:
        return await service.get_subscription(session, frame.principal, subscription_id)
    except NotFound as exc:
        raise PageError(
            404,
            N_("Not found"),
            N_("This webhook does not exist or was deleted."),
            back_url=PAGE,
            back_label=N_("Webhooks"),
        ) from exc


HookInPage = Annotated[WebhookSubscription, Depends(subscription_in_page)]


async def _owner_keys(session: SessionDep, frame: Shell) -> list[Any] | None:
    """The organization's usable keys, to own a subscription (None: not allowed to see)."""
    try:
        keys = await api_keys.list_keys(session, frame.principal)
    except Forbidden:
        return None
    now = security.utcnow()
    return [k for k in keys if k.is_active and (k.expires_at is None or k.expires_at > now)]


async def _context(session: SessionDep, frame: Shell, **ctx: Any) -> dict[str, Any]:
    t = frame.i18n.gettext
    return {
        **frame.context("settings"),
        "tab": "webhooks",
        "event_options": [(e, t(EVENT_LABELS.get(e, e)), e) for e in EVENT_TYPES],
        "keys": await _owner_keys(session, frame),
        "errors": {},
        "secret": None,
        **ctx,
    }


async def _list_page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    *,
    form: HookForm | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    ctx = await _context(
        session,
        frame,
        subscriptions=await service.list_subscriptions(session, frame.principal),
        form=form or HookForm(events=["lead.created"]),
        errors=errors or {},
    )
    return render(request, "webhooks/list.html", status_code, **ctx)


async def _log(
    session: SessionDep, frame: Shell, sub: WebhookSubscription, cursor: str | None
) -> dict[str, Any]:
    # What is waiting first, then the log: each statement sees what was committed when it
    # started, so a delivery finishing between the two is either still waiting (the page
    # watches once more) or already in the log, never neither (the page would stop watching).
    waiting = await deliveries.waiting(session, frame.principal, sub.id)
    log = await service.list_deliveries(
        session, frame.principal, sub.id, limit=LOG_PAGE_SIZE, cursor=cursor
    )
    return {
        "sub": sub,
        "log": log,
        "cursor": cursor,
        "waiting": waiting,
        "watch_seconds": WATCH_SECONDS,
    }


async def _detail_page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    sub: WebhookSubscription,
    *,
    cursor: str | None = None,
    form: HookForm | None = None,
    errors: dict[str, str] | None = None,
    secret: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    ctx = await _context(
        session,
        frame,
        form=form or HookForm.of(sub),
        errors=errors or {},
        secret=secret,
        **await _log(session, frame, sub, cursor),
    )
    response = render(request, "webhooks/detail.html", status_code, **ctx)
    if secret is not None:  # shown once: keep it out of every cache
        response.headers["Cache-Control"] = "no-store"
    return response


def _read_form(
    url: str, events: list[str] | None, api_key_id: str, max_retries: str, frame: Shell
) -> tuple[HookForm, dict[str, str], dict[str, Any]]:
    """The form as typed, the page's own errors, and the service's arguments."""
    t = frame.i18n.gettext
    chosen = [e for e in events or [] if e]
    if service.ALL_EVENTS in chosen:  # "every event" includes the ones ticked with it
        chosen = [service.ALL_EVENTS]
    form = HookForm(
        url=url.strip(),
        events=chosen,
        api_key_id=api_key_id.strip(),
        max_retries=max_retries.strip() or "3",
    )
    errors: dict[str, str] = {}
    if not form.url:
        errors["url"] = t("Write the address (https://…) that receives the events.")
    if not form.events:
        errors["events"] = t("Choose at least one event.")
    key_id = parse_uuid(form.api_key_id)
    if key_id is None:
        errors["api_key_id"] = t("Choose the API key that owns this webhook.")
    retries = int(form.max_retries) if form.max_retries.isdigit() else -1
    if not 0 <= retries <= 10:
        errors["max_retries"] = t("Use a number from 0 to 10.")
    args = {"url": form.url, "events": form.events, "api_key_id": key_id, "max_retries": retries}
    return form, errors, args


def _service_errors(exc: AppError, frame: Shell) -> dict[str, str]:
    """The service's refusal next to the input it is about, in the reader's words."""
    t = frame.i18n.gettext
    words = {
        "webhook_url_invalid": ("url", t("This is not a valid web address: use https://…")),
        "webhook_url_private": (
            "url",
            t("This address is on a private network. Webhooks go to addresses on the internet."),
        ),
        "webhook_url_insecure": ("url", t("Use an https:// address.")),
        "webhook_events_invalid": ("events", t("Choose events from the list.")),
        "webhook_api_key_required": ("api_key_id", t("Choose the API key that owns this webhook.")),
        "webhook_api_key_invalid": (
            "api_key_id",
            t("This API key was revoked or has expired. Choose another one."),
        ),
    }
    name, message = words.get(exc.code, ("form", t(exc.detail)))
    return {name: message}


# --- the list and a new subscription ----------------------------------------------------------


@router.get(PAGE, response_class=HTMLResponse)
async def webhooks_page(request: Request, frame: Manager, session: SessionDep) -> Response:
    return await _list_page(request, frame, session)


@router.post(PAGE, response_class=HTMLResponse)
async def webhook_create(
    request: Request,
    frame: Manager,
    session: SessionDep,
    settings: SettingsDep,
    url: Annotated[str, Form(max_length=4000)] = "",
    events: Annotated[list[str] | None, Form()] = None,
    api_key_id: Annotated[str, Form(max_length=100)] = "",
    max_retries: Annotated[str, Form(max_length=10)] = "3",
) -> Response:
    form, errors, args = _read_form(url, events, api_key_id, max_retries, frame)
    if errors:
        return await _list_page(request, frame, session, form=form, errors=errors, status_code=422)
    try:
        sub, secret = await service.create_subscription(session, settings, frame.principal, **args)
    except AppError as exc:
        return await _list_page(
            request,
            frame,
            session,
            form=form,
            errors=_service_errors(exc, frame),
            status_code=exc.status,
        )
    return await _detail_page(request, frame, session, sub, secret=secret)


# --- one subscription ------------------------------------------------------------------------


@router.get(PAGE + "/{subscription_id}", response_class=HTMLResponse)
async def webhook_page(
    request: Request,
    frame: Manager,
    session: SessionDep,
    sub: HookInPage,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    return await _detail_page(request, frame, session, sub, cursor=cursor)


@router.get(PAGE + "/{subscription_id}/deliveries", response_class=HTMLResponse)
async def webhook_log(
    request: Request,
    frame: Manager,
    session: SessionDep,
    sub: HookInPage,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """The delivery log alone (what the page swaps in while it watches), else the page."""
    if not is_htmx(request):
        return await _detail_page(request, frame, session, sub, cursor=cursor)
    ctx = {**frame.context("settings"), **await _log(session, frame, sub, cursor)}
    return render(request, "webhooks/_deliveries.html", **ctx)


@router.post(PAGE + "/{subscription_id}", response_class=HTMLResponse)
async def webhook_update(
    request: Request,
    frame: Manager,
    session: SessionDep,
    settings: SettingsDep,
    sub: HookInPage,
    url: Annotated[str, Form(max_length=4000)] = "",
    events: Annotated[list[str] | None, Form()] = None,
    api_key_id: Annotated[str, Form(max_length=100)] = "",
    max_retries: Annotated[str, Form(max_length=10)] = "3",
) -> Response:
    form, errors, args = _read_form(url, events, api_key_id, max_retries, frame)
    if not errors:
        try:
            await attempt(
                session,
                service.update_subscription(session, settings, frame.principal, sub.id, args),
            )
        except AppError as exc:
            await session.refresh(sub)  # as saved, not as typed (the form keeps that)
            errors = _service_errors(exc, frame)
            status = exc.status
        else:
            return redirect(f"{PAGE}/{sub.id}", frame.i18n.gettext("Webhook saved."))
    else:
        status = 422
    return await _detail_page(
        request, frame, session, sub, form=form, errors=errors, status_code=status
    )


@router.post(PAGE + "/{subscription_id}/active", response_class=HTMLResponse)
async def webhook_active(
    frame: Manager,
    session: SessionDep,
    settings: SettingsDep,
    sub: HookInPage,
    active: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Disable (deliveries stop) or enable again (the failure count starts over)."""
    t = frame.i18n.gettext
    on = active == "true"
    await service.update_subscription(session, settings, frame.principal, sub.id, {"is_active": on})
    text = t("Webhook enabled: events are sent again.") if on else t("Webhook disabled.")
    return redirect(f"{PAGE}/{sub.id}", text)


@router.post(PAGE + "/{subscription_id}/test", response_class=HTMLResponse)
async def webhook_test(frame: Manager, session: SessionDep, sub: HookInPage) -> Response:
    t = frame.i18n.gettext
    if not sub.is_active:
        return redirect(f"{PAGE}/{sub.id}", t("Enable the webhook to send a test."), "error")
    await service.send_test(session, frame.principal, sub.id)
    return redirect(
        f"{PAGE}/{sub.id}#deliveries", t("Test event queued: its delivery shows below.")
    )


@router.post(
    PAGE + "/{subscription_id}/deliveries/{delivery_id}/redeliver", response_class=HTMLResponse
)
async def webhook_redeliver(
    delivery_id: uuid.UUID, frame: Manager, session: SessionDep, sub: HookInPage
) -> Response:
    t = frame.i18n.gettext
    if not sub.is_active:
        return redirect(f"{PAGE}/{sub.id}", t("Enable the webhook to redeliver."), "error")
    try:
        await service.redeliver(session, frame.principal, sub.id, delivery_id)
    except NotFound as exc:
        raise PageError(
            404,
            N_("Not found"),
            N_("This delivery is not in the log of this webhook."),
            back_url=f"{PAGE}/{sub.id}",
            back_label=N_("Webhook"),
        ) from exc
    return redirect(
        f"{PAGE}/{sub.id}#deliveries",
        t("Sent again: the new attempt shows below, with the same event id."),
    )


@router.post(PAGE + "/{subscription_id}/rotate-secret", response_class=HTMLResponse)
async def webhook_rotate(
    request: Request, frame: Manager, session: SessionDep, settings: SettingsDep, sub: HookInPage
) -> Response:
    secret = await service.rotate_secret(session, settings, frame.principal, sub.id)
    return await _detail_page(request, frame, session, sub, secret=secret)


@router.post(PAGE + "/{subscription_id}/delete", response_class=HTMLResponse)
async def webhook_delete(frame: Manager, session: SessionDep, sub: HookInPage) -> Response:
    await service.delete_subscription(session, frame.principal, sub.id)
    return redirect(PAGE, frame.i18n.gettext("Webhook deleted, with its delivery log."))
