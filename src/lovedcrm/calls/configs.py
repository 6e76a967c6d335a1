"""Telephony configurations (``voip_configs``): create, edit, remove, test, and build the
adapter of one.

Secrets (Twilio's auth token, Telnyx's API key) are encrypted with AES-GCM (``SecretBox``)
bound to the organization and the field, and never returned: the API and the page show them
masked. Non-secret settings live in ``config_data``: ``label``, ``connection_id`` and
``public_key`` (Telnyx), ``api_base_url`` (the provider's address: tests point it at a
loopback fake), ``currency``, ``ring_group`` (member ids rung for an inbound call nobody
owns) and ``record``. Everything here needs ``settings:manage``; switching the active
configuration is ``calls.switching`` (the one provider switch, shared with WhatsApp).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.calls.models import VoipConfig
from lovedcrm.calls.providers import VoiceConfig, build
from lovedcrm.calls.providers.base import ConnectionCheck, ProviderError, VoiceProvider
from lovedcrm.calls.switching import ensure_removable
from lovedcrm.config import Settings
from lovedcrm.core import outbound
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.phones import to_e164
from lovedcrm.core.principal import Principal
from lovedcrm.core.security import SecretBox, mask_secret
from lovedcrm.db.tenant import save_new
from lovedcrm.leads.access import org_region
from lovedcrm.messaging.providers.base import ConnectionCheck as SwitchCheck

PERMISSION = "settings:manage"
KINDS = ("twilio", "telnyx", "sandbox")
SECRETS = ("auth_token", "api_key")
PLAIN = ("label", "connection_id", "public_key", "api_base_url", "currency", "record")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
SANDBOX_NUMBER = "+5511900000000"
NAMES = {"twilio": "Twilio", "telnyx": "Telnyx", "sandbox": "Sandbox"}


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption_key.get_secret_value())


def _context(org_id: uuid.UUID, name: str) -> str:
    return f"voip_configs:{org_id}:{name}"


def encrypt(settings: Settings, org_id: uuid.UUID, name: str, value: str) -> str:
    return _box(settings).encrypt(value, context=_context(org_id, name))


def decrypt_value(settings: Settings, org_id: uuid.UUID, name: str, stored: Any) -> str | None:
    if not stored:
        return None
    return _box(settings).decrypt(str(stored), context=_context(org_id, name))


def decrypted(
    settings: Settings,
    *,
    config_id: uuid.UUID,
    organization_id: uuid.UUID,
    kind: str,
    auth_token: str | None,
    api_key: str | None,
    account_sid: str | None,
    config_data: dict[str, Any] | None,
    business_numbers: list[Any] | None = None,
    cost_per_minute: Decimal | None = None,
) -> VoiceConfig:
    data = dict(config_data or {})
    org = organization_id
    return VoiceConfig(
        id=config_id,
        organization_id=org,
        kind=kind,
        account_sid=account_sid,
        auth_token=decrypt_value(settings, org, "auth_token", auth_token),
        api_key=decrypt_value(settings, org, "api_key", api_key),
        connection_id=data.get("connection_id"),
        public_key=data.get("public_key"),
        api_base_url=data.get("api_base_url"),
        business_numbers=[str(n) for n in business_numbers or []],
        cost_per_minute=cost_per_minute,
        currency=str(data.get("currency") or "USD"),
        ring_group=[str(m) for m in data.get("ring_group") or []],
        record=bool(data.get("record", True)),
    )


def decrypt(settings: Settings, row: VoipConfig) -> VoiceConfig:
    return decrypted(
        settings,
        config_id=row.id,
        organization_id=row.organization_id,
        kind=row.provider_type,
        auth_token=row.auth_token,
        api_key=row.api_key,
        account_sid=row.account_sid,
        config_data=row.config_data,
        business_numbers=row.business_numbers,
        cost_per_minute=row.cost_per_minute,
    )


def http_client(settings: Settings) -> httpx.AsyncClient:
    """Provider calls go through the one outbound guard (``core.outbound``)."""
    return outbound.client(outbound.policy(settings), timeout=15.0)


def provider_for(settings: Settings, row: VoipConfig, client: httpx.AsyncClient) -> VoiceProvider:
    return build(decrypt(settings, row), client)


def webhook_url(settings: Settings, config_id: uuid.UUID) -> str:
    """Where the provider posts the call's events (Twilio status and recording callbacks,
    Telnyx's webhooks)."""
    return f"{settings.base_url.rstrip('/')}/webhooks/calls/{config_id}"


def voice_url(settings: Settings, config_id: uuid.UUID) -> str:
    """Twilio: the business number's "A call comes in" webhook (inbound calls)."""
    return f"{webhook_url(settings, config_id)}/voice"


def from_number(cfg: VoiceConfig) -> str | None:
    if cfg.business_numbers:
        return cfg.business_numbers[0]
    return SANDBOX_NUMBER if cfg.kind == "sandbox" else None


# --- reading ------------------------------------------------------------------------------


def config_out(settings: Settings, row: VoipConfig) -> dict[str, Any]:
    cfg = decrypt(settings, row)
    data = row.config_data or {}
    return {
        "id": row.id,
        "provider_type": row.provider_type,
        "label": data.get("label"),
        "is_active": bool(row.is_active),
        "account_sid": row.account_sid,
        "auth_token_masked": mask_secret(cfg.auth_token),
        "api_key_masked": mask_secret(cfg.api_key),
        "connection_id": cfg.connection_id,
        "public_key": cfg.public_key,
        "api_base_url": cfg.api_base_url,
        "business_numbers": cfg.business_numbers,
        "cost_per_minute": row.cost_per_minute,
        "currency": cfg.currency,
        "ring_group": [uuid.UUID(m) for m in cfg.ring_group],
        "record": cfg.record,
        "webhook_url": webhook_url(settings, row.id),
        "voice_url": voice_url(settings, row.id),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def list_configs(session: AsyncSession, principal: Principal) -> list[VoipConfig]:
    principal.require(PERMISSION)
    result = await session.execute(
        select(VoipConfig)
        .where(VoipConfig.organization_id == principal.org())
        .order_by(VoipConfig.created_at, VoipConfig.id)
    )
    return list(result.scalars())


async def get_config(
    session: AsyncSession, principal: Principal, config_id: uuid.UUID
) -> VoipConfig:
    principal.require(PERMISSION)
    return await get_in_org(
        session, VoipConfig, config_id, principal, NotFound("Telephony configuration not found.")
    )


# --- writing ------------------------------------------------------------------------------


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _numbers(raw: list[str], region: str, errors: list[dict[str, str]]) -> list[str]:
    out: list[str] = []
    for n, value in enumerate(raw):
        try:
            number = to_e164(value, region)
        except ValueError:
            errors.append(_error(f"business_numbers.{n}", "not a phone number"))
            continue
        if number not in out:
            out.append(number)
    return out


def _check(kind: str, merged: dict[str, Any], errors: list[dict[str, str]]) -> None:
    for name in SECRETS:
        value = merged.get(name)
        if value is not None and not _HEADER_SAFE.fullmatch(str(value)):
            errors.append(_error(name, "may contain only visible ASCII characters"))
    if kind == "twilio":
        for name in ("account_sid", "auth_token"):
            if not merged.get(name):
                errors.append(_error(name, "is required for Twilio"))
    if kind == "telnyx":
        for name in ("api_key", "connection_id", "public_key"):
            if not merged.get(name):
                errors.append(_error(name, "is required for Telnyx"))
    key = merged.get("public_key")
    if key:
        try:
            if len(base64.b64decode(str(key), validate=True)) != 32:
                raise ValueError(key)
        except (binascii.Error, ValueError):
            errors.append(_error("public_key", "must be the base64 of a 32-byte Ed25519 key"))
    url = merged.get("api_base_url")
    if url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", str(url)):
        errors.append(_error("api_base_url", "must be an http(s) URL"))


async def _write(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    row: VoipConfig,
    values: dict[str, Any],
    *,
    region: str,
) -> None:
    """Check ``values`` against what the row already holds and apply them (422 naming each
    wrong field, nothing written)."""
    org = principal.org()
    errors: list[dict[str, str]] = []
    current = decrypt(settings, row) if row.provider_type else None
    merged: dict[str, Any] = {
        "account_sid": row.account_sid,
        "auth_token": current.auth_token if current else None,
        "api_key": current.api_key if current else None,
        **dict(row.config_data or {}),
    }
    for name, value in values.items():
        if name in SECRETS and not value:
            continue  # a blank secret keeps the stored one
        merged[name] = value
    numbers = None
    if "business_numbers" in values and values["business_numbers"] is not None:
        numbers = _numbers(list(values["business_numbers"]), region, errors)
    _check(row.provider_type, merged, errors)
    if errors:
        raise ValidationFailed(
            "The telephony configuration has invalid fields: "
            + ", ".join(e["field"] for e in errors),
            extra={"errors": errors},
        )
    if row.provider_type == "twilio":
        row.account_sid = merged.get("account_sid")
        if values.get("auth_token"):
            row.auth_token = encrypt(settings, org, "auth_token", str(values["auth_token"]))
    if row.provider_type == "telnyx" and values.get("api_key"):
        row.api_key = encrypt(settings, org, "api_key", str(values["api_key"]))
    data = dict(row.config_data or {})
    for name in PLAIN:
        if name in values:
            data[name] = values[name]
    if values.get("currency"):
        data["currency"] = str(values["currency"]).upper()
    if "ring_group" in values and values["ring_group"] is not None:
        data["ring_group"] = [str(m) for m in values["ring_group"]]
    row.config_data = data
    if numbers is not None:
        row.business_numbers = numbers
    if "cost_per_minute" in values:
        row.cost_per_minute = values["cost_per_minute"]


async def create_config(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    values: dict[str, Any],
) -> VoipConfig:
    principal.require(PERMISSION)
    region = await org_region(session, principal)
    kind = values.pop("provider_type")
    if kind not in KINDS:
        raise ValidationFailed(
            "Unknown telephony provider.",
            extra={"errors": [_error("provider_type", "must be twilio, telnyx or sandbox")]},
        )
    row = VoipConfig(organization_id=principal.org(), provider_type=kind, config_data={})
    await _write(session, principal, settings, row, values, region=region)
    # The organization's first configuration is the active one; later ones are switched to.
    count = await session.scalar(
        select(func.count())
        .select_from(VoipConfig)
        .where(VoipConfig.organization_id == principal.org())
    )
    row.is_active = not count
    await save_new(session, row)
    await audit.record(
        session,
        action="create",
        resource_type="voip_config",
        resource_id=row.id,
        organization_id=row.organization_id,
        user_id=principal.user_id,
        changes={"provider_type": {"new": kind}},
    )
    return row


async def update_config(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    config_id: uuid.UUID,
    values: dict[str, Any],
) -> VoipConfig:
    row = await get_config(session, principal, config_id)
    region = await org_region(session, principal)
    await _write(session, principal, settings, row, values, region=region)
    await session.flush()
    await session.refresh(row)
    await audit.record(
        session,
        action="update",
        resource_type="voip_config",
        resource_id=row.id,
        organization_id=row.organization_id,
        user_id=principal.user_id,
        # Which fields changed, never a secret's value.
        changes={name: {"changed": True} for name in sorted(values)},
    )
    return row


async def delete_config(session: AsyncSession, principal: Principal, config_id: uuid.UUID) -> None:
    row = await get_config(session, principal, config_id)
    await ensure_removable(session, row)
    await session.delete(row)
    await session.flush()
    await audit.record(
        session,
        action="delete",
        resource_type="voip_config",
        resource_id=config_id,
        organization_id=principal.org(),
        user_id=principal.user_id,
    )


async def check_connection(
    session: AsyncSession, principal: Principal, settings: Settings, config_id: uuid.UUID
) -> ConnectionCheck:
    row = await get_config(session, principal, config_id)
    return await check_row(settings, row)


async def check_row(settings: Settings, row: VoipConfig) -> ConnectionCheck:
    async with http_client(settings) as client:
        try:
            return await provider_for(settings, row, client).check_connection()
        except ProviderError as exc:
            return ConnectionCheck(False, exc.message)


async def switch_check(settings: Settings, row: VoipConfig) -> SwitchCheck:
    """The connection check ``calls.switching`` runs before it switches to ``row``."""
    found = await check_row(settings, row)
    return SwitchCheck(
        ok=found.ok, status="connected" if found.ok else "failed", detail=found.detail
    )
