"""The organization's settings pages: branding (name, color, language, currency, idle days,
logo) and the custom fields (the assignment of new leads is ``leads.pages``'). Thin: the
rules live in ``organizations.service``, ``organizations.branding`` and
``organizations.custom_fields``.

One module per screen, each with its router, included here in matching order.
"""

from __future__ import annotations

from fastapi.responses import RedirectResponse, Response

from lovedcrm.organizations.pages import branding, fields
from lovedcrm.web.kit import page_router

router = page_router()


@router.get("/settings")
async def settings_index() -> Response:
    return RedirectResponse("/settings/branding", status_code=303)


for _screen in (branding, fields):
    router.include_router(_screen.router)
