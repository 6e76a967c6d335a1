"""The public addresses of a campaign e-mail: ``/m/o/{token}`` (the open pixel),
``/m/c/{token}`` (a tracked click: a 302 to the URL inside the signed token, never one from
the query, so the link cannot be an open redirect), ``/m/u/{token}`` (the unsubscribe page;
``POST`` unsubscribes — RFC 8058's one-click ``List-Unsubscribe=One-Click`` from the mail
client, or the page's button). A token whose signature does not verify → 404."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from lovedcrm.core.deps import get_database, settings_of
from lovedcrm.core.errors import NotFound
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.marketing import campaigns
from lovedcrm.web.kit import render

router = APIRouter(tags=["marketing tracking"], include_in_schema=False)


def _parse(request: Request, token: str, kind: str) -> tuple[uuid.UUID, uuid.UUID, dict[str, Any]]:
    data = campaigns.unsign(settings_of(request), token)
    if data is None or data.get("k") != kind:
        raise NotFound("This link is not valid.", code="tracking_link_invalid")
    try:
        return uuid.UUID(str(data["o"])), uuid.UUID(str(data["r"])), data
    except (KeyError, ValueError) as exc:
        raise NotFound("This link is not valid.", code="tracking_link_invalid") from exc


@router.get("/m/o/{token}")
async def opened(token: str, request: Request) -> Response:
    org, recipient, _ = _parse(request, token.removesuffix(".gif"), "open")
    async with tenant_transaction(get_database(request).sessionmaker, org) as session:
        await campaigns.track(session, org, recipient, "open")
    return Response(
        campaigns.PIXEL,
        media_type="image/gif",
        headers={"Cache-Control": "no-store, max-age=0"},
    )


@router.get("/m/c/{token}")
async def clicked(token: str, request: Request) -> Response:
    org, recipient, data = _parse(request, token, "click")
    target = campaigns.safe_target(data.get("u"))
    if target is None:
        raise NotFound("This link is not valid.", code="tracking_link_invalid")
    async with tenant_transaction(get_database(request).sessionmaker, org) as session:
        await campaigns.track(session, org, recipient, "click", target)
    return RedirectResponse(target, status_code=302)


@router.get("/m/u/{token}")
async def unsubscribe_page(token: str, request: Request) -> Response:
    _parse(request, token, "unsubscribe")
    return render(request, "marketing/unsubscribe.html", token=token, done=False)


@router.post("/m/u/{token}")
async def unsubscribe(token: str, request: Request) -> Response:
    """One click: RFC 8058's POST (body ``List-Unsubscribe=One-Click``) or the page's
    button. Either way the address is suppressed and the consent withdrawn."""
    org, recipient, _ = _parse(request, token, "unsubscribe")
    ip = request.client.host if request.client else None
    async with tenant_transaction(get_database(request).sessionmaker, org) as session:
        found = await campaigns.unsubscribe(session, org, recipient, source_ip=ip)
    if found is None:
        raise NotFound("This link is not valid.", code="tracking_link_invalid")
    return render(request, "marketing/unsubscribe.html", token=token, done=True)
