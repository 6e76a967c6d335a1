"""Pieces of a page for htmx and the inbox's live script: no shell, no flash message consumed
(the next whole page shows it), never cached."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from lovedcrm.core.deps import roll_back_request
from lovedcrm.web.kit import Shell, templates


def fragment(
    request: Request, frame: Shell, name: str, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    """Render ``name`` alone. An error status (≥ 400) rolls the request's transaction back, as
    :func:`lovedcrm.web.kit.render` does for whole pages."""
    if status_code >= 400:
        roll_back_request(request)
    response: HTMLResponse = templates.TemplateResponse(
        request,
        name,
        {
            "i18n": frame.i18n,
            "lang": frame.i18n.tag,
            "csrf": frame.csrf,
            "principal": frame.principal,
            **ctx,
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    return response
