"""The person's own preferences, kept by the browser: the language of the pages (a cookie,
so that it works on the log-in page too). No domain: part of the page kit."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Form
from fastapi.responses import RedirectResponse, Response

from lovedcrm.core.deps import SettingsDep
from lovedcrm.web.i18n import LANG_COOKIE, LANGUAGE_TAGS, localizer_for
from lovedcrm.web.kit import MaybeSignedIn, flash, page_router

router = page_router()

_SAFE_NEXT = re.compile(r"/(?![/\\])[^\s]*")


@router.post("/preferences/language")
async def set_language(
    frame: MaybeSignedIn,  # signed in: the CSRF token is checked
    settings: SettingsDep,
    language: Annotated[str, Form(max_length=10)],
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    """The person's language, kept in a cookie (an expired session does not stop it)."""
    if language not in LANGUAGE_TAGS:
        language = "pt-BR"
    target = next if _SAFE_NEXT.fullmatch(next) else "/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        LANG_COOKIE,
        language,
        max_age=365 * 86400,
        httponly=False,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    loc = localizer_for(LANGUAGE_TAGS[language])
    flash(response, loc.gettext("Language changed."))
    return response
