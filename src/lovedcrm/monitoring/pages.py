"""``/settings/system``: the Sistema page for admins (``settings:manage``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from lovedcrm.core.deps import SessionDep
from lovedcrm.monitoring import service
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import Shell, page_router, render, require

router = page_router()
Admin = Annotated[Shell, Depends(require("settings:manage"))]

STATUS_LABELS = {
    "connected": N_("Connected"),
    "disconnected": N_("Disconnected"),
    "active": N_("Active"),
    "disabled": N_("Disabled"),
    "error": N_("Error"),
}
KIND_LABELS = {
    "whatsapp": "WhatsApp",
    "telephony": N_("Telephony"),
    "calendar": N_("Calendar"),
    "webhook": "Webhook",
    "ads": N_("Lead ads"),
    "billing": N_("Billing"),
}


@router.get("/settings/system", response_class=HTMLResponse)
async def system_page(request: Request, frame: Admin, session: SessionDep) -> HTMLResponse:
    """Queue depth, failing jobs, providers' connection and last webhook, error rate today."""
    status = await service.system_status(session, frame.principal)
    return render(
        request,
        "monitoring/system.html",
        **frame.context("settings"),
        tab="system",
        status=status,
        status_labels=STATUS_LABELS,
        kind_labels=KIND_LABELS,
    )
