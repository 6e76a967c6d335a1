"""What a form's request model (pydantic) complained about, by form input: the words for each
complaint are the page's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pydantic import ValidationError

Gettext = Callable[[str], str]


def complaints(exc: ValidationError) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each complaint: the form input it is about (the last part of its location, ``form``
    when it has none), its type (``missing``, ``string_too_long``…) and its context."""
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        yield (loc[-1] if loc else "form"), err.get("type", ""), err.get("ctx") or {}


def too_long(t: Gettext, ctx: dict[str, Any]) -> str:
    return t("Too long: use at most %(max)s characters.") % {"max": ctx.get("max_length")}
