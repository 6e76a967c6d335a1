"""What the board and the stages settings page share: the refusal page."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from lovedcrm.core.errors import AppError
from lovedcrm.web.kit import Shell, render


def no_access(request: Request, frame: Shell, exc: AppError) -> HTMLResponse:
    """The board's own refusal page: the service's reason and the permission it needs."""
    return render(
        request,
        "pipeline/denied.html",
        exc.status,
        **frame.context("pipeline"),
        message=frame.i18n.gettext(exc.detail),
        permission=exc.extra.get("permission"),
    )
