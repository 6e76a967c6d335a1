"""An organization's AI configuration: which provider writes its AI drafts (the offline
``sandbox`` by default, or an OpenAI-compatible server), its address, model, API key,
timeouts and the monthly token budget the agent spends from.

Kept in the organization's settings under ``ai`` (the organizations API hides that key). The
API key is encrypted with AES-GCM (``SecretBox``) bound to the organization, as WhatsApp
secrets are; it is never returned, only whether one is set and its last characters masked.
Reading and changing need ``settings:manage``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.assistant.llm import build_provider, http_client
from lovedcrm.assistant.llm.base import PROVIDER_KINDS, ConnectionCheck, LLMConfig
from lovedcrm.audit import service as audit
from lovedcrm.config import Settings
from lovedcrm.core import outbound
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.core.security import SecretBox, mask_secret
from lovedcrm.organizations.models import Organization

SETTINGS_KEY = "ai"
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_MODEL = re.compile(r"[\w.:/@+-]{1,200}")
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 2
DEFAULT_TRANSCRIPTION_MODEL = "whisper-1"


@dataclass(frozen=True)
class AiSettingsView:
    """What a reader may see: everything but the key, of which only a mask."""

    provider: str
    base_url: str | None
    model: str | None
    api_version: str | None
    api_key_set: bool
    api_key_masked: str | None
    timeout_seconds: float
    max_retries: int
    monthly_token_budget: int | None
    transcription_enabled: bool = False
    transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL

    @property
    def llm_configured(self) -> bool:
        return self.provider != "sandbox"


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption_key.get_secret_value())


def _context(org_id: uuid.UUID) -> str:
    return f"ai_settings:{org_id}:api_key"


def _stored(org: Organization | None) -> dict[str, Any]:
    raw = (org.settings or {}).get(SETTINGS_KEY) if org is not None else None
    return dict(raw) if isinstance(raw, dict) else {}


def _decrypted_key(settings: Settings, org_id: uuid.UUID, data: dict[str, Any]) -> str | None:
    stored = data.get("api_key")
    if not stored:
        return None
    try:
        return _box(settings).decrypt(str(stored), context=_context(org_id))
    except (ValueError, KeyError):  # a key from another installation: as if none were set
        return None


def _config(settings: Settings, org_id: uuid.UUID, data: dict[str, Any]) -> LLMConfig:
    provider = data.get("provider") if data.get("provider") in PROVIDER_KINDS else "sandbox"
    budget = data.get("monthly_token_budget")
    return LLMConfig(
        provider=provider,  # type: ignore[arg-type]
        base_url=data.get("base_url") or None,
        model=data.get("model") or None,
        api_key=_decrypted_key(settings, org_id, data),
        api_version=data.get("api_version") or None,
        timeout_seconds=float(data.get("timeout_seconds") or DEFAULT_TIMEOUT),
        max_retries=int(data.get("max_retries", DEFAULT_RETRIES)),
        monthly_token_budget=int(budget) if isinstance(budget, int) else None,
        transcription_enabled=data.get("transcription_enabled") is True,
        transcription_model=str(data.get("transcription_model") or DEFAULT_TRANSCRIPTION_MODEL),
    )


def view_of(settings: Settings, org_id: uuid.UUID, data: dict[str, Any]) -> AiSettingsView:
    cfg = _config(settings, org_id, data)
    return AiSettingsView(
        provider=cfg.provider,
        base_url=cfg.base_url,
        model=cfg.model,
        api_version=cfg.api_version,
        api_key_set=cfg.api_key is not None,
        api_key_masked=mask_secret(cfg.api_key),
        timeout_seconds=cfg.timeout_seconds,
        max_retries=cfg.max_retries,
        monthly_token_budget=cfg.monthly_token_budget,
        transcription_enabled=cfg.transcription_enabled,
        transcription_model=cfg.transcription_model,
    )


async def load_config(session: AsyncSession, settings: Settings, org_id: uuid.UUID) -> LLMConfig:
    """The organization's configuration with its key decrypted, for a call (the suggestions
    and the agent); the sandbox when nothing is configured."""
    return _config(settings, org_id, _stored(await session.get(Organization, org_id)))


async def get_ai_settings(
    session: AsyncSession, principal: Principal, settings: Settings
) -> AiSettingsView:
    principal.require("settings:manage")
    org_id = principal.org()
    return view_of(settings, org_id, _stored(await session.get(Organization, org_id)))


def _audit_view(data: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in data.items() if k != "api_key"}
    shown["api_key_set"] = bool(data.get("api_key"))
    return shown


def _number(
    values: dict[str, Any], name: str, low: float, high: float, errors: list[dict[str, str]]
) -> float | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high:
        errors.append({"field": name, "message": f"must be a number from {low:g} to {high:g}"})
        return None
    return number


def _checked(
    settings: Settings, current: dict[str, Any], values: dict[str, Any], key_given: str | None
) -> dict[str, Any]:
    """The new stored settings (without the key), or ``ValidationFailed`` naming each field."""
    errors: list[dict[str, str]] = []
    data = {k: v for k, v in current.items() if k != "api_key"}
    for name in ("provider", "base_url", "model", "api_version", "transcription_model"):
        if name in values:
            text = str(values[name] or "").strip()
            data[name] = text or None
    provider = data.get("provider") or "sandbox"
    if provider not in PROVIDER_KINDS:
        errors.append({"field": "provider", "message": "must be sandbox or openai_compatible"})
    if provider == "openai_compatible":
        if not data.get("base_url"):
            errors.append(
                {"field": "base_url", "message": "required for an OpenAI-compatible provider"}
            )
        else:
            try:
                data["base_url"] = outbound.check_url(outbound.policy(settings), data["base_url"])
            except outbound.UrlProblem as exc:
                errors.append(
                    {"field": "base_url", "message": exc.message, "code": f"url_{exc.kind}"}
                )
        if not data.get("model"):
            errors.append(
                {"field": "model", "message": "required for an OpenAI-compatible provider"}
            )
    if data.get("model") and not _MODEL.fullmatch(data["model"]):
        errors.append({"field": "model", "message": "must be a model or deployment name"})
    if data.get("transcription_model") and not _MODEL.fullmatch(data["transcription_model"]):
        errors.append(
            {"field": "transcription_model", "message": "must be a model or deployment name"}
        )
    if values.get("transcription_enabled") is not None:
        data["transcription_enabled"] = bool(values["transcription_enabled"])
    if data.get("api_version") and not _API_VERSION.fullmatch(data["api_version"]):
        errors.append(
            {"field": "api_version", "message": "must be an Azure API version such as 2024-06-01"}
        )
    if key_given is not None and not _HEADER_SAFE.fullmatch(key_given):
        errors.append(
            {
                "field": "api_key",
                "message": "must be the key exactly as the provider issued it: visible ASCII "
                "characters only (no spaces, accents or mask dots)",
            }
        )
    timeout = _number(values, "timeout_seconds", 1, 120, errors)
    if timeout is not None:
        data["timeout_seconds"] = timeout
    retries = _number(values, "max_retries", 0, 5, errors)
    if retries is not None:
        data["max_retries"] = int(retries)
    if "monthly_token_budget" in values:
        budget = _number(values, "monthly_token_budget", 0, 1_000_000_000, errors)
        data["monthly_token_budget"] = int(budget) if budget is not None else None
    if errors:
        raise ValidationFailed(
            "The AI settings are not valid: " + ", ".join(e["field"] for e in errors),
            code="invalid_ai_settings",
            extra={"errors": errors},
        )
    data["provider"] = provider
    return {k: v for k, v in data.items() if v is not None}


async def update_ai_settings(
    session: AsyncSession, principal: Principal, settings: Settings, values: dict[str, Any]
) -> AiSettingsView:
    """Change the fields given. The key is write-only: sent empty, or sent back as the mask
    the page showed, it keeps its stored value; ``clear_api_key`` removes it."""
    principal.require("settings:manage")
    org = (
        await session.execute(
            select(Organization)
            .where(Organization.id == principal.org())
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if org is None:
        raise NotFound("Organization not found.")
    current = _stored(org)
    existing_key = _decrypted_key(settings, org.id, current)
    given = str(values.get("api_key") or "").strip() or None
    if given is not None and existing_key is not None and given == mask_secret(existing_key):
        given = None
    data = _checked(settings, current, values, given)
    if given is not None:
        data["api_key"] = _box(settings).encrypt(given, context=_context(org.id))
    elif current.get("api_key") and not values.get("clear_api_key"):
        data["api_key"] = current["api_key"]
    org.settings = {**(org.settings or {}), SETTINGS_KEY: data}
    org.updated_at = func.now()
    await session.flush()
    await audit.record_by(
        session,
        principal,
        "update",
        "ai_settings",
        org.id,
        audit.diff(_audit_view(current), _audit_view(data)),
    )
    return view_of(settings, org.id, data)


async def check_connection(
    session: AsyncSession, principal: Principal, settings: Settings
) -> ConnectionCheck:
    """Send the configured provider a tiny prompt: whether it answers with these settings."""
    principal.require("settings:manage")
    config = await load_config(session, settings, principal.org())
    if config.provider == "sandbox":
        return await build_provider(config).check_connection()
    async with http_client(settings, config) as client:
        return await build_provider(config, client).check_connection()
