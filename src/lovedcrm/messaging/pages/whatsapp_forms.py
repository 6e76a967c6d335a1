"""Settings → WhatsApp: each provider's form (its inputs, names and help), reading what was
typed into the services' values, and the request model's and the services' complaints as
words next to the inputs. The routes are in ``pages.whatsapp``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from lovedcrm.core.errors import AppError
from lovedcrm.messaging.pages.forms import Gettext, complaints, too_long

KINDS = ("business_api", "web_unofficial", "sandbox")


@dataclass(frozen=True)
class FieldSpec:
    """One input of a provider's form."""

    name: str
    label: str
    hint: str = ""
    secret: bool = False
    kind: str = "text"
    placeholder: str = ""
    maxlength: int = 500


def field_specs(t: Gettext) -> dict[str, list[FieldSpec]]:
    """The inputs of each provider's form (which of them are required is the service's)."""
    label = FieldSpec(
        "label",
        t("Name"),
        t("For you to tell configurations apart."),
        placeholder=t("e.g. Sales team"),
        maxlength=100,
    )
    per_second = FieldSpec(
        "messages_per_second",
        t("Messages per second"),
        t("Sending limits protect the number. Leave both empty to keep the current ones."),
        kind="number",
    )
    per_minute = FieldSpec("messages_per_minute", t("Messages per minute"), kind="number")
    return {
        "business_api": [
            label,
            FieldSpec(
                "business_phone_id",
                t("Phone number ID"),
                t("In Meta's WhatsApp Manager: API Setup → Phone number ID."),
                maxlength=100,
            ),
            FieldSpec(
                "business_account_id",
                t("WhatsApp Business account ID (optional)"),
                maxlength=100,
            ),
            FieldSpec(
                "access_token",
                t("Access token"),
                t("A permanent system user token with the whatsapp_business_messaging permission."),
                secret=True,
                maxlength=4096,
            ),
            FieldSpec(
                "app_secret",
                t("App secret"),
                t("In the Meta app: Settings → Basic. Used to check that webhooks come from Meta."),
                secret=True,
                maxlength=512,
            ),
            FieldSpec(
                "api_version", t("API version (optional)"), placeholder="v21.0", maxlength=10
            ),
            FieldSpec(
                "graph_base_url",
                t("Graph API address (optional)"),
                t("Only for a provider that mirrors Meta's API."),
                kind="url",
                placeholder="https://graph.facebook.com",
            ),
            per_second,
            per_minute,
        ],
        "web_unofficial": [
            label,
            FieldSpec(
                "session_id",
                t("Session name"),
                t("Letters, digits, - and _. The bridge keeps one WhatsApp login per session."),
                placeholder="default",
                maxlength=100,
            ),
            FieldSpec(
                "bridge_url",
                t("WAHA server address"),
                kind="url",
                placeholder="http://waha:3000",
            ),
            FieldSpec(
                "bridge_api_key",
                t("WAHA API key (optional)"),
                t("The X-Api-Key your WAHA server asks for, if any."),
                secret=True,
                maxlength=512,
            ),
            per_second,
            per_minute,
        ],
        "sandbox": [label],
    }


def kind_names(t: Gettext) -> dict[str, str]:
    return {
        "business_api": t("WhatsApp Cloud API (official)"),
        "web_unofficial": t("WhatsApp Web via WAHA (unofficial)"),
        "sandbox": t("Sandbox (tests, nothing is sent)"),
    }


def kind_help(t: Gettext) -> dict[str, str]:
    return {
        "business_api": t(
            "Meta's official API: needs a Meta business app and a verified number. "
            "Outside the 24-hour window only approved templates can be sent."
        ),
        "web_unofficial": t(
            "Connects a WhatsApp number by QR code through your own WAHA server. "
            "Unofficial: send calmly, bursts can get the number banned."
        ),
        "sandbox": t("Messages stay inside Loved CRM: good to try the inbox before connecting."),
    }


# --- reading a form -------------------------------------------------------------------------

TEXT_FIELDS = (
    "label",
    "business_phone_id",
    "business_account_id",
    "access_token",
    "app_secret",
    "api_version",
    "graph_base_url",
    "session_id",
    "bridge_url",
    "bridge_api_key",
)
RATE_FIELDS = ("messages_per_second", "messages_per_minute")
SECRETS = ("access_token", "app_secret", "bridge_api_key")


async def typed_form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {
        name: str(form.get(name) or "").strip()
        for name in ("provider_type", *TEXT_FIELDS, *RATE_FIELDS)
    }


def service_values(typed: dict[str, str], kind: str, specs: list[FieldSpec]) -> dict[str, Any]:
    """The service's values from the form of one provider: only that provider's inputs, an
    empty input as "not given" (an empty secret keeps the stored one)."""
    names = {s.name for s in specs}
    values: dict[str, Any] = {n: typed.get(n) or None for n in TEXT_FIELDS if n in names}
    rates = {n: typed[n] for n in RATE_FIELDS if n in names and typed.get(n)}
    if rates:
        values["rate_limits"] = rates
    return values


def redisplay(typed: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The form as typed, without its secrets, and the secrets to type again."""
    shown = {k: v for k, v in typed.items() if k not in SECRETS}
    return shown, [k for k in SECRETS if typed.get(k)]


def schema_errors(exc: ValidationError, t: Gettext) -> dict[str, str]:
    """The request model's complaints by form input, in words for people."""
    patterns = {
        "session_id": t("Use only letters without accents, digits, - and _."),
        "api_version": t("Use a version like v21.0."),
    }
    errors: dict[str, str] = {}
    for name, kind, ctx in complaints(exc):
        if name == "provider_type":
            message = t("Choose one of the providers in the list.")
        elif kind == "string_too_long":
            message = too_long(t, ctx)
        elif kind == "string_pattern_mismatch":
            message = patterns.get(name, t("Check this value."))
        elif name in RATE_FIELDS:
            limit = 1000 if name == "messages_per_second" else 60000
            message = t("Use a whole number from 1 to %(max)s.") % {"max": limit}
        else:
            message = t("Check this value.")
        errors.setdefault(name, message)
    return errors


def service_errors(exc: AppError, t: Gettext, specs: list[FieldSpec]) -> dict[str, str]:
    """The service's errors by form input (it names every missing field), plus a summary."""
    labels = {s.name: s.label for s in specs}
    by_code = {
        "url_invalid": t("Use an address starting with http:// or https://."),
        "url_private": t(
            "This address is on a private or local network. The installation's administrator "
            "can allow it with LOVEDCRM_OUTBOUND_ALLOW."
        ),
        "url_forbidden": t(
            "This address is never called: link-local and cloud metadata addresses are refused."
        ),
        "secret_invalid": t(
            "Paste the secret exactly as issued: no spaces, accents, line breaks or mask dots."
        ),
    }
    errors: dict[str, str] = {}
    for err in exc.extra.get("errors", []) or []:
        name = str(err.get("field", ""))
        message = str(err.get("message", ""))
        if message.startswith("required"):
            text = t("Required for this provider.")
        elif str(err.get("code", "")) in by_code:
            text = by_code[str(err["code"])]
        elif "http" in message:
            text = t("Use an address starting with http:// or https://.")
        else:
            text = message
        if name in labels:
            errors.setdefault(name, text)
        else:
            errors.setdefault("form", f"{name}: {text}")
    missing = [labels[n] for n in errors if n in labels]
    if missing:
        errors.setdefault("form", t("Fill in or fix: %(fields)s.") % {"fields": ", ".join(missing)})
    if not errors:
        errors["form"] = t(exc.detail)
    return errors
