"""Lead custom fields: the organization's definitions (``settings.custom_fields``).

A definition is ``{key, label, type, options, required}``; the values live on each lead
(``leads.custom_fields``) and are validated by ``leads.service`` against these definitions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol


class HasSettings(Protocol):
    """An organization, or anything that carries its settings."""

    @property
    def settings(self) -> dict[str, Any] | None: ...


CUSTOM_FIELD_TYPES = ("text", "number", "date", "select", "checkbox")
# A key is also a message template variable ({{key}}), hence an identifier.
CUSTOM_FIELD_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,49}")
MAX_CUSTOM_FIELDS = 50
MAX_CUSTOM_OPTIONS = 100
CUSTOM_LABEL_MAX = 100
CUSTOM_OPTION_MAX = 100

# The messages of custom_field_definition_errors (the settings page words them for people).
DEF_NOT_A_LIST = "must be a list of field definitions"
DEF_TOO_MANY = f"can hold at most {MAX_CUSTOM_FIELDS} fields"
DEF_NOT_AN_OBJECT = "must be an object with a key, a label and a type"
DEF_BAD_KEY = "must be 1 to 50 letters, digits or _, not starting with a digit"
DEF_KEY_TAKEN = "is already used by another field"
DEF_BAD_LABEL = f"must be text of 1 to {CUSTOM_LABEL_MAX} characters"
DEF_BAD_TYPE = f"must be one of: {', '.join(CUSTOM_FIELD_TYPES)}"
DEF_NO_OPTIONS = f"a select field needs 1 to {MAX_CUSTOM_OPTIONS} options"
DEF_BAD_OPTIONS = f"must be different texts of 1 to {CUSTOM_OPTION_MAX} characters"
DEF_BAD_REQUIRED = "must be true or false"


def custom_field_definitions(org: HasSettings | None) -> list[dict[str, Any]]:
    """The organization's custom field definitions (malformed entries are ignored)."""
    return definitions_in(org.settings if org is not None else None)


def definitions_in(settings: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The custom field definitions in an organization's settings."""
    raw = (settings or {}).get("custom_fields")
    if not isinstance(raw, list):
        return []
    return [d for d in raw if isinstance(d, dict) and isinstance(d.get("key"), str)]


def _definition_errors(where: str, d: dict[str, Any]) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    if not (isinstance(d.get("key"), str) and CUSTOM_FIELD_KEY.fullmatch(d["key"])):
        errors.append({"field": f"{where}.key", "message": DEF_BAD_KEY})
    label = d.get("label")
    if "label" in d and not (
        isinstance(label, str) and label.strip() and len(label) <= CUSTOM_LABEL_MAX
    ):
        errors.append({"field": f"{where}.label", "message": DEF_BAD_LABEL})
    kind = d.get("type", "text")
    if kind not in CUSTOM_FIELD_TYPES:
        errors.append({"field": f"{where}.type", "message": DEF_BAD_TYPE})
    options = d.get("options")
    if kind == "select" and not (
        isinstance(options, list) and 0 < len(options) <= MAX_CUSTOM_OPTIONS
    ):
        errors.append({"field": f"{where}.options", "message": DEF_NO_OPTIONS})
    elif options is not None and not (
        isinstance(options, list)
        and all(isinstance(o, str) and o.strip() and len(o) <= CUSTOM_OPTION_MAX for o in options)
        and len(set(options)) == len(options)
    ):
        errors.append({"field": f"{where}.options", "message": DEF_BAD_OPTIONS})
    if "required" in d and not isinstance(d["required"], bool):
        errors.append({"field": f"{where}.required", "message": DEF_BAD_REQUIRED})
    return errors


def custom_field_definition_errors(raw: Any) -> list[dict[str, str]]:
    """Field errors of ``settings.custom_fields``: a list of ``{key, label, type, options,
    required}`` (``label`` defaults to the key, ``type`` to text; ``options`` only for
    select). Other attributes are kept as they are."""
    if not isinstance(raw, list):
        return [{"field": "custom_fields", "message": DEF_NOT_A_LIST}]
    if len(raw) > MAX_CUSTOM_FIELDS:
        return [{"field": "custom_fields", "message": DEF_TOO_MANY}]
    errors: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, d in enumerate(raw):
        where = f"custom_fields.{i}"
        if not isinstance(d, dict):
            errors.append({"field": where, "message": DEF_NOT_AN_OBJECT})
            continue
        errors += _definition_errors(where, d)
        key = d.get("key")
        if isinstance(key, str):
            if key in seen:
                errors.append({"field": f"{where}.key", "message": DEF_KEY_TAKEN})
            seen.add(key)
    return errors
