"""API errors in the caller's language.

Problem details are written in English by the services (``core.errors``); a request that asks
for Portuguese (``Accept-Language: pt-BR``, or the person's language cookie) gets the title,
the detail and each field message from the catalog. A detail that ends with values after a
colon (``"The lead has invalid fields: phone"``) is translated by its sentence and keeps the
values. Field messages of an invalid request come from pydantic's error ``type`` and ``ctx``
(``string_too_long`` with ``max_length``…), so they read as the pages' own messages. Without
an explicit language the API answers in English, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from babel import negotiate_locale
from starlette.requests import Request

from lovedcrm.web.i18n import (
    LANG_COOKIE,
    N_,
    catalog_name,
    parse_accept_language,
    translations,
)

# Titles of the problem types (core.errors) and the start of details that end with values.
PROBLEM_WORDS = (
    N_("Bad request"),
    N_("Unauthorized"),
    N_("Forbidden"),
    N_("Not found"),
    N_("Method not allowed"),
    N_("Conflict"),
    N_("Content too large"),
    N_("Unsupported media type"),
    N_("Validation failed"),
    N_("Too many requests"),
    N_("Internal server error"),
    N_("The request has invalid fields"),
    N_("The lead has invalid fields"),
    N_("The task has invalid fields"),
    N_("Unknown sort"),
    N_("Unknown activity type"),
    N_("Unknown settings"),
    N_("Invalid settings"),
    N_("Unknown template variables"),
    N_("The WhatsApp configuration is incomplete"),
    N_("The mapping is not valid"),
    N_("Invalid Meta template mapping"),
    N_("The email address is not valid"),
    N_("The password must have"),
    N_("is required"),
)

# pydantic error type → (message, the ctx key it names as %(limit)s).
_FIELD_MESSAGES: dict[str, tuple[str, str | None]] = {
    "missing": (N_("Field required"), None),
    "string_too_long": (N_("Too long: use at most %(max)s characters."), "max_length"),
    "string_too_short": (N_("Too short: use at least %(min)s characters."), "min_length"),
    "string_type": (N_("Must be a text."), None),
    "int_parsing": (N_("Not a whole number."), None),
    "int_type": (N_("Not a whole number."), None),
    "int_from_float": (N_("Not a whole number."), None),
    "float_parsing": (N_("Not a number."), None),
    "float_type": (N_("Not a number."), None),
    "decimal_parsing": (N_("Not a number."), None),
    "decimal_type": (N_("Not a number."), None),
    "decimal_max_digits": (N_("Use at most %(limit)s digits."), "max_digits"),
    "decimal_max_places": (N_("Use at most %(limit)s decimal places."), "decimal_places"),
    "uuid_parsing": (N_("Not a valid id."), None),
    "uuid_type": (N_("Not a valid id."), None),
    "bool_parsing": (N_("Choose true or false."), None),
    "bool_type": (N_("Choose true or false."), None),
    "boolean_not_number": (N_("Choose true or false."), None),
    "number_not_boolean": (N_("Not a number."), None),
    "literal_error": (N_("Choose one of: %(expected)s."), "expected"),
    "enum": (N_("Choose one of: %(expected)s."), "expected"),
    "greater_than_equal": (N_("Must be at least %(limit)s."), "ge"),
    "greater_than": (N_("Must be greater than %(limit)s."), "gt"),
    "less_than_equal": (N_("Must be at most %(limit)s."), "le"),
    "less_than": (N_("Must be less than %(limit)s."), "lt"),
    "too_long": (N_("Use at most %(limit)s items."), "max_length"),
    "extra_forbidden": (N_("Unknown field."), None),
    "json_invalid": (N_("The body is not valid JSON."), None),
    "model_attributes_type": (N_("Must be an object."), None),
    "dict_type": (N_("Must be an object."), None),
    "list_type": (N_("Must be a list."), None),
    "datetime_parsing": (N_("Not a valid date and time."), None),
    "datetime_from_date_parsing": (N_("Not a valid date and time."), None),
    "datetime_type": (N_("Not a valid date and time."), None),
    "timezone_aware": (N_("Not a valid date and time."), None),
    "date_parsing": (N_("Not a valid date."), None),
    "date_from_datetime_parsing": (N_("Not a valid date."), None),
    "url_parsing": (N_("Not a valid URL."), None),
    "url_scheme": (N_("Not a valid URL."), None),
    "url_type": (N_("Not a valid URL."), None),
}
# Messages raised by validators (pydantic's "value_error" with our text or the e-mail check).
_VALUE_ERROR_EMAIL = "value is not a valid email address"


def request_catalog(request: Request) -> str | None:
    """The catalog the caller asked for: the language cookie, then ``Accept-Language``;
    None when neither names a supported language."""
    found = catalog_name(request.cookies.get(LANG_COOKIE))
    if found:
        return found
    tags = parse_accept_language(request.headers.get("accept-language"))
    if not tags:
        return None
    return catalog_name(negotiate_locale(tags, ["pt_BR", "en"]))


def translate_text(gettext: Callable[[str], str], text: str) -> str:
    """``text`` from the catalog; or, for ``"Sentence: value, value."``, the sentence from the
    catalog and each value that is a message too (names and ids stay as they are)."""
    translated = gettext(text)
    if translated != text:
        return translated
    sentence, colon, values = text.partition(": ")
    if not colon or (head := gettext(sentence)) == sentence:
        return text
    stop = "." if values.endswith(".") else ""
    pieces = [gettext(piece) for piece in values.removesuffix(".").split(", ")]
    return f"{head}: {', '.join(pieces)}{stop}"


def field_message(
    gettext: Callable[[str], str], message: str, context: dict[str, Any] | None
) -> str:
    kind = str((context or {}).get("type") or "")
    ctx = (context or {}).get("ctx") or {}
    if kind == "value_error" and message.startswith(f"Value error, {_VALUE_ERROR_EMAIL}"):
        return gettext("Not a valid e-mail address.")
    if kind == "value_error" and message.startswith("Value error, "):
        return translate_text(gettext, message.removeprefix("Value error, "))
    known = _FIELD_MESSAGES.get(kind)
    if known is None:
        return translate_text(gettext, message)
    template, key = known
    value = ctx.get(key) if key else None
    return gettext(template) % {"limit": value, "max": value, "min": value, "expected": value}


def localize_problem(
    request: Request, body: dict[str, Any], contexts: list[dict[str, Any]]
) -> None:
    """``core.errors.Localize``: translate ``body`` in place for the request's language."""
    locale = request_catalog(request)
    if locale is None or locale == "en":
        return
    gettext = translations(locale).gettext
    for key in ("title", "detail"):
        if isinstance(body.get(key), str):
            body[key] = translate_text(gettext, body[key])
    errors = body.get("errors")
    if not isinstance(errors, list):
        return
    for index, error in enumerate(errors):
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            context = contexts[index] if index < len(contexts) else None
            error["message"] = field_message(gettext, error["message"], context)
