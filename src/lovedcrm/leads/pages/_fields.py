"""One field of the lead page as it is shown and edited in place: the lead's own fields and
its custom fields (``custom:<key>``)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from datetime import date
from typing import Any

from lovedcrm.leads import service as leads_service
from lovedcrm.leads.models import Lead
from lovedcrm.leads.pages._common import definitions_of
from lovedcrm.web.kit import Shell

# Fields that can be edited in place on the lead page.
EDITABLE = (
    "full_name",
    "email",
    "phone",
    "company",
    "job_title",
    "source",
    "estimated_value",
    "probability_percentage",
    "assigned_to",
)
# A custom field is edited in place as "custom:<key>".
CUSTOM = "custom:"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")


def _field_value(lead: Lead, name: str) -> str:
    """The value an edit form starts with."""
    value = getattr(lead, name)
    if value is None:
        return ""
    if name == "estimated_value":
        return f"{value:.2f}".replace(".", ",")
    return str(value)


def definition_of(frame: Shell, name: str) -> dict[str, Any] | None:
    """The custom field an in-place name ("custom:<key>") stands for, if it is defined."""
    if not name.startswith(CUSTOM):
        return None
    key = name.removeprefix(CUSTOM)
    return next((d for d in definitions_of(frame) if d["key"] == key), None)


def is_editable(frame: Shell, name: str) -> bool:
    return name in EDITABLE or definition_of(frame, name) is not None


def dom_id(name: str) -> str:
    """The field's element id (a key with other characters, possible in older
    definitions, is hashed so the HTMX target stays a valid selector)."""
    if not name.startswith(CUSTOM):
        return name
    key = name.removeprefix(CUSTOM)
    return "cf-" + (
        key if _SAFE_ID.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()[:16]
    )


def _custom_input(definition: dict[str, Any], value: Any) -> str:
    """A custom value as its edit input starts with."""
    if value is None:
        return ""
    kind = definition.get("type", "text")
    if kind == "checkbox":
        return "1" if value is True else ""
    if kind == "number" and isinstance(value, float):
        return str(value).replace(".", ",")  # "1.5" would read as 15 (thousands)
    return str(value)


def _custom_display(frame: Shell, definition: dict[str, Any], value: Any) -> str | None:
    """A custom value for people (None when empty)."""
    if value is None or value == "":
        return None
    kind = definition.get("type", "text")
    t = frame.i18n.gettext
    if kind == "checkbox":
        return str(t("Yes") if value is True else t("No"))
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return frame.i18n.number(value)
    if kind == "date" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return frame.i18n.date(date.fromisoformat(value))
    return str(value)


def field_context(
    frame: Shell,
    lead: Lead,
    name: str,
    *,
    editing: bool = False,
    value: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    definition = definition_of(frame, name)
    ctx: dict[str, Any] = {
        "name": name,
        "dom": dom_id(name),
        "custom": definition,
        "editing": editing,
        "error": error,
        "can_edit": leads_service.may_edit(frame.principal, lead)
        and (name != "assigned_to" or frame.principal.can("leads:write_all")),
    }
    if definition is None:
        ctx["value"] = _field_value(lead, name) if value is None else value
        return ctx
    stored = (lead.custom_fields or {}).get(definition["key"])
    ctx["value"] = _custom_input(definition, stored) if value is None else value
    ctx["display"] = _custom_display(frame, definition, stored)
    return ctx
