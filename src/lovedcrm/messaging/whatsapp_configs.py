"""WhatsApp provider configurations: create, edit, check and build adapters from them.

Secrets (the Cloud API access token and app secret, the bridge's API key and HMAC key, the
webhook verify token) are encrypted with AES-GCM (``SecretBox``) bound to the organization
and the field, so a ciphertext copied to another organization or column does not decrypt.
They are never returned in full, except the verify token, which we generate and the user
must paste into Meta's console. Non-secret settings live in ``config_data`` beside them.

Who may: reading the list needs ``messages:read`` (the inbox shows whether WhatsApp is set
up); everything else needs ``settings:manage``.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.config import Settings
from lovedcrm.core import outbound
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.core.security import SecretBox, mask_secret
from lovedcrm.db.tenant import save_new
from lovedcrm.messaging.models import WhatsappConfig
from lovedcrm.messaging.providers.base import (
    MESSAGE_PROVIDER_TYPE,
    ConnectionCheck,
    ProviderError,
    QrCode,
    SessionProvider,
    WhatsAppProvider,
)
from lovedcrm.messaging.providers.cloud import CloudApiProvider
from lovedcrm.messaging.providers.sandbox import SandboxProvider
from lovedcrm.messaging.providers.waha import WahaProvider
from lovedcrm.organizations import plans

_SECRET_INPUTS = ("access_token", "app_secret", "bridge_api_key")
# What a secret may contain: the visible ASCII characters (it goes into an HTTP header).
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
DEFAULT_RATE_LIMITS: dict[str, dict[str, int]] = {
    # Meta's default throughput is 80 messages/s per number; bridges get banned for bursts.
    "business_api": {"messages_per_second": 80},
    "web_unofficial": {"messages_per_minute": 30},
    "sandbox": {"messages_per_second": 50},
}
_PROVIDER_NAMES = {
    "business_api": "WhatsApp Cloud API",
    "web_unofficial": "WhatsApp Web (WAHA)",
    "sandbox": "Sandbox",
}


def provider_name(kind: str) -> str:
    return _PROVIDER_NAMES.get(kind, kind)


@dataclass
class DecryptedConfig:
    """One configuration with its secrets in the clear: built for a call, never stored."""

    id: uuid.UUID
    organization_id: uuid.UUID
    kind: str
    label: str | None = None
    business_phone_id: str | None = None
    business_account_id: str | None = None
    access_token: str | None = None
    app_secret: str | None = None
    api_version: str = "v21.0"
    graph_base_url: str = "https://graph.facebook.com"
    session_id: str | None = None
    bridge_url: str | None = None
    bridge_api_key: str | None = None
    hmac_key: str | None = None
    verify_token: str | None = None
    rate_limits: dict[str, int] = field(default_factory=dict)

    @property
    def message_provider_type(self) -> str:
        return MESSAGE_PROVIDER_TYPE[self.kind]


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption_key.get_secret_value())


def _context(org_id: uuid.UUID, name: str) -> str:
    return f"whatsapp_configs:{org_id}:{name}"


def encrypt(settings: Settings, org_id: uuid.UUID, name: str, value: str) -> str:
    return _box(settings).encrypt(value, context=_context(org_id, name))


def decrypt_value(settings: Settings, org_id: uuid.UUID, name: str, stored: Any) -> str | None:
    if not stored:
        return None
    return _box(settings).decrypt(str(stored), context=_context(org_id, name))


def decrypt(settings: Settings, row: WhatsappConfig) -> DecryptedConfig:
    data = dict(row.config_data or {})
    org = row.organization_id
    return DecryptedConfig(
        id=row.id,
        organization_id=org,
        kind=row.provider_type,
        label=data.get("label"),
        business_phone_id=row.business_phone_id,
        business_account_id=row.business_account_id,
        access_token=decrypt_value(settings, org, "access_token", row.access_token),
        app_secret=decrypt_value(settings, org, "app_secret", data.get("app_secret")),
        api_version=data.get("api_version") or "v21.0",
        graph_base_url=data.get("graph_base_url") or "https://graph.facebook.com",
        session_id=row.session_id,
        bridge_url=data.get("bridge_url"),
        bridge_api_key=decrypt_value(settings, org, "bridge_api_key", data.get("bridge_api_key")),
        hmac_key=decrypt_value(settings, org, "hmac_key", data.get("hmac_key")),
        verify_token=decrypt_value(settings, org, "verify_token", row.webhook_verify_token),
        rate_limits={k: int(v) for k, v in (row.rate_limits or {}).items() if v},
    )


def outbox_path(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve() / "sandbox" / "whatsapp-outbox.jsonl"


def build_provider(
    cfg: DecryptedConfig, client: httpx.AsyncClient, settings: Settings
) -> WhatsAppProvider:
    """The adapter for one configuration."""
    if cfg.kind == "business_api":
        return CloudApiProvider(
            client=client,
            phone_number_id=cfg.business_phone_id or "",
            access_token=cfg.access_token or "",
            app_secret=cfg.app_secret,
            base_url=cfg.graph_base_url,
            api_version=cfg.api_version,
        )
    if cfg.kind == "web_unofficial":
        return WahaProvider(
            client=client,
            base_url=cfg.bridge_url or "",
            api_key=cfg.bridge_api_key,
            session=cfg.session_id or "default",
            hmac_key=cfg.hmac_key,
        )
    return SandboxProvider(outbox=outbox_path(settings))


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The client provider calls go through: the outbound guard (``core.outbound``) checks
    every address it connects to, and a redirect is refused with where it pointed."""
    return outbound.client(
        outbound.policy(settings), timeout=settings.whatsapp_http_timeout_seconds
    )


_idle: httpx.AsyncClient | None = None


def idle_client() -> httpx.AsyncClient:
    """A client that is never used to send: adapters built only to verify or parse webhooks
    take it, so those paths cost no client set-up (guarded all the same, allowing nothing
    private)."""
    global _idle
    if _idle is None:
        _idle = outbound.client(outbound.STRICT, timeout=5.0)
    return _idle


def webhook_url(settings: Settings, config_id: uuid.UUID) -> str:
    return f"{settings.base_url.rstrip('/')}/webhooks/whatsapp/{config_id}"


# --- reading ------------------------------------------------------------------------------


def config_out(settings: Settings, row: WhatsappConfig) -> dict[str, Any]:
    cfg = decrypt(settings, row)
    data = row.config_data or {}
    return {
        "id": row.id,
        "provider_type": row.provider_type,
        "label": cfg.label,
        "is_active": bool(row.is_active),
        "business_phone_id": row.business_phone_id,
        "business_account_id": row.business_account_id,
        "access_token": mask_secret(cfg.access_token),
        "app_secret": mask_secret(cfg.app_secret),
        "api_version": data.get("api_version"),
        "graph_base_url": data.get("graph_base_url"),
        "session_id": row.session_id,
        "bridge_url": cfg.bridge_url,
        "bridge_api_key": mask_secret(cfg.bridge_api_key),
        "connection_status": row.connection_status,
        "last_connected_at": row.last_connected_at,
        "webhook_url": None if row.provider_type == "sandbox" else webhook_url(settings, row.id),
        "webhook_verify_token": cfg.verify_token if row.provider_type == "business_api" else None,
        "rate_limits": row.rate_limits or {},
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def list_configs(session: AsyncSession, principal: Principal) -> list[WhatsappConfig]:
    principal.require("messages:read")
    rows = await session.execute(
        select(WhatsappConfig)
        .where(WhatsappConfig.organization_id == principal.org())
        .order_by(WhatsappConfig.is_active.desc(), WhatsappConfig.created_at)
    )
    return list(rows.scalars())


async def get_config(
    session: AsyncSession, principal: Principal, config_id: uuid.UUID
) -> WhatsappConfig:
    principal.require("settings:manage")
    return await get_in_org(
        session, WhatsappConfig, config_id, principal, NotFound("WhatsApp configuration not found.")
    )


async def active_config(session: AsyncSession, organization_id: uuid.UUID) -> WhatsappConfig | None:
    result = await session.execute(
        select(WhatsappConfig).where(
            WhatsappConfig.organization_id == organization_id,
            WhatsappConfig.is_active.is_(True),
        )
    )
    return result.scalar_one_or_none()


# --- writing ------------------------------------------------------------------------------


def _valid_url(
    rules: outbound.Policy, value: str, field_name: str, errors: list[dict[str, str]]
) -> None:
    """The outbound guard's save-time check (the addresses are checked again at each call)."""
    try:
        outbound.check_url(rules, value)
    except outbound.UrlProblem as exc:
        if exc.kind == "invalid":
            message = f"must be an http:// or https:// URL ({exc.message})"
        else:
            message = exc.message
        errors.append({"field": field_name, "message": message, "code": f"url_{exc.kind}"})


def _header_safe(value: str) -> bool:
    return bool(_HEADER_SAFE.fullmatch(value))


def _check_secrets(values: dict[str, Any], errors: list[dict[str, str]]) -> None:
    """Secrets go into HTTP headers (a bearer token, an API key) or sign with HMAC: only the
    visible ASCII characters a provider issues (no spaces, accents, line breaks or the dots
    of a masked value)."""
    for name in _SECRET_INPUTS:
        value = values.get(name)
        if value and not _header_safe(value):
            errors.append(
                {
                    "field": name,
                    "message": (
                        f"{name} must be the secret exactly as the provider issued it: visible "
                        "ASCII characters only (no spaces, accents, line breaks or mask dots)"
                    ),
                    "code": "secret_invalid",
                }
            )


def _check(
    kind: str,
    values: dict[str, Any],
    rules: outbound.Policy,
    secrets_given: dict[str, Any] | None = None,
) -> None:
    """The spec's §11.1 rule per provider, plus what webhooks need, the outbound guard for
    the URLs and the form of the secrets being set; names every gap."""
    errors: list[dict[str, str]] = []

    def need(name: str, why: str) -> None:
        if not values.get(name):
            errors.append({"field": name, "message": f"required for {provider_name(kind)}: {why}"})

    _check_secrets(values if secrets_given is None else secrets_given, errors)
    if kind == "business_api":
        need("business_phone_id", "the phone number id from Meta's WhatsApp Manager")
        need("access_token", "a system-user access token")
        need("app_secret", "the app secret, to verify Meta's webhook signatures")
        if values.get("graph_base_url"):
            _valid_url(rules, values["graph_base_url"], "graph_base_url", errors)
    elif kind == "web_unofficial":
        need("session_id", "the bridge's session name")
        need("bridge_url", "the address of your WAHA server")
        if values.get("bridge_url"):
            _valid_url(rules, values["bridge_url"], "bridge_url", errors)
    if errors:
        missing = all(e["message"].startswith("required") for e in errors)
        detail = "is incomplete" if missing else "is incomplete or not valid"
        raise ValidationFailed(
            f"The WhatsApp configuration {detail}: " + ", ".join(e["field"] for e in errors),
            extra={"errors": errors},
        )


def _apply(
    settings: Settings, row: WhatsappConfig, values: dict[str, Any], *, creating: bool
) -> None:
    org = row.organization_id
    data = dict(row.config_data or {})
    for name in ("label", "api_version", "graph_base_url", "bridge_url"):
        if name in values and (values[name] or not creating):
            value = values[name]
            if name.endswith("_url") and value:
                value = value.strip()  # as the outbound guard checked it
            data[name] = value or None
    for name in ("app_secret", "bridge_api_key"):
        if values.get(name):
            data[name] = encrypt(settings, org, name, values[name])
    for name in ("business_phone_id", "business_account_id", "session_id"):
        if name in values and values[name] is not None:
            setattr(row, name, values[name] or None)
    if values.get("access_token"):
        row.access_token = encrypt(settings, org, "access_token", values["access_token"])
    if values.get("rate_limits") is not None:
        row.rate_limits = {k: v for k, v in values["rate_limits"].items() if v}
    row.config_data = {k: v for k, v in data.items() if v is not None}


def _current_values(settings: Settings, row: WhatsappConfig) -> dict[str, Any]:
    cfg = decrypt(settings, row)
    return {
        "business_phone_id": cfg.business_phone_id,
        "access_token": cfg.access_token,
        "app_secret": cfg.app_secret,
        "graph_base_url": (row.config_data or {}).get("graph_base_url"),
        "session_id": cfg.session_id,
        "bridge_url": cfg.bridge_url,
        "bridge_api_key": cfg.bridge_api_key,
    }


def _audit_view(row: WhatsappConfig) -> dict[str, Any]:
    # What the audit log may show: no secret, only whether one is set.
    data = row.config_data or {}
    return {
        "provider_type": row.provider_type,
        "is_active": bool(row.is_active),
        "business_phone_id": row.business_phone_id,
        "session_id": row.session_id,
        "bridge_url": data.get("bridge_url"),
        "access_token_set": bool(row.access_token),
        "app_secret_set": bool(data.get("app_secret")),
        "rate_limits": row.rate_limits or {},
    }


async def _config_count(session: AsyncSession, organization_id: uuid.UUID) -> int:
    found = await session.execute(
        select(func.count())
        .select_from(WhatsappConfig)
        .where(WhatsappConfig.organization_id == organization_id)
    )
    return int(found.scalar_one())


async def create_config(
    session: AsyncSession, principal: Principal, settings: Settings, values: dict[str, Any]
) -> WhatsappConfig:
    principal.require("settings:manage")
    kind = values["provider_type"]
    _check(kind, values, outbound.policy(settings))
    org = principal.org()
    await plans.check_limit(
        session, org, "whatsapp_numbers", lambda: _config_count(session, org), settings=settings
    )
    row = WhatsappConfig(
        id=uuid.uuid4(),
        organization_id=org,
        provider_type=kind,
        is_active=False,
        connection_status="connected" if kind == "sandbox" else "disconnected",
        config_data={},
        rate_limits=dict(DEFAULT_RATE_LIMITS[kind]),
    )
    _apply(settings, row, values, creating=True)
    data = dict(row.config_data or {})
    if kind == "business_api":
        row.webhook_verify_token = encrypt(settings, org, "verify_token", secrets.token_urlsafe(24))
    if kind == "web_unofficial":
        # The bridge signs its webhooks with this key (HMAC-SHA512); we hand it over at start.
        data["hmac_key"] = encrypt(settings, org, "hmac_key", secrets.token_urlsafe(32))
        data.setdefault("bridge", "waha")
    row.config_data = data
    await save_new(session, row)
    await audit.record(
        session,
        action="create",
        resource_type="whatsapp_config",
        resource_id=row.id,
        organization_id=org,
        user_id=principal.user_id,
        changes=audit.diff(None, _audit_view(row)),
    )
    return row


async def update_config(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    config_id: uuid.UUID,
    values: dict[str, Any],
) -> WhatsappConfig:
    row = await get_config(session, principal, config_id)
    before = _audit_view(row)
    # A field sent empty is cleared (and refused if the provider needs it); a secret sent
    # empty, or sent back as the mask GET showed, keeps its stored value.
    current = _current_values(settings, row)
    values = {
        k: v
        for k, v in values.items()
        if k not in _SECRET_INPUTS or (v and v != mask_secret(current.get(k)))
    }
    merged = {**current, **values}
    given = {k: v for k, v in values.items() if k in _SECRET_INPUTS}
    _check(row.provider_type, merged, outbound.policy(settings), given)
    _apply(settings, row, values, creating=False)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(row)
    await audit.record(
        session,
        action="update",
        resource_type="whatsapp_config",
        resource_id=row.id,
        organization_id=row.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(before, _audit_view(row)),
    )
    return row


async def delete_config(session: AsyncSession, principal: Principal, config_id: uuid.UUID) -> None:
    row = await get_config(session, principal, config_id)
    if row.is_active:
        raise Conflict(
            "This is the active WhatsApp provider: switch to another one before removing it.",
            code="config_active",
        )
    await audit.record(
        session,
        action="delete",
        resource_type="whatsapp_config",
        resource_id=row.id,
        organization_id=row.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(_audit_view(row), None),
    )
    await session.delete(row)
    await session.flush()


# --- talking to the provider -----------------------------------------------------------------


def _record_status(row: WhatsappConfig, check: ConnectionCheck) -> None:
    row.connection_status = "connected" if check.ok else check.status
    if check.ok:
        row.last_connected_at = datetime.now(UTC)
        row.qr_code_data = None  # a QR code is a short-lived login credential
    row.updated_at = datetime.now(UTC)


async def _ask_provider(
    session: AsyncSession,
    settings: Settings,
    row: WhatsappConfig,
    ask: Callable[[WhatsAppProvider], Awaitable[ConnectionCheck]],
) -> ConnectionCheck:
    """Put one question to the configuration's provider; the answer (a refusal included, as
    ``failed``) is kept as the connection status."""
    cfg = decrypt(settings, row)
    async with http_client(settings) as client:
        provider = build_provider(cfg, client, settings)
        try:
            check = await ask(provider)
        except ProviderError as exc:
            check = ConnectionCheck(ok=False, status="failed", detail=exc.message)
    _record_status(row, check)
    await session.flush()
    return check


async def check_connection(
    session: AsyncSession, principal: Principal, settings: Settings, config_id: uuid.UUID
) -> ConnectionCheck:
    """Ask the provider whether the credentials work; the result is kept as the status."""
    row = await get_config(session, principal, config_id)

    async def ask(provider: WhatsAppProvider) -> ConnectionCheck:
        return await provider.check_connection()

    return await _ask_provider(session, settings, row, ask)


async def start_session(
    session: AsyncSession, principal: Principal, settings: Settings, config_id: uuid.UUID
) -> ConnectionCheck:
    """WhatsApp Web: create or start the bridge's session with our signed webhook."""
    row = await get_config(session, principal, config_id)

    async def ask(provider: WhatsAppProvider) -> ConnectionCheck:
        if not isinstance(provider, SessionProvider):
            raise ValidationFailed(
                "Only WhatsApp Web configurations have a session to start.", code="no_session"
            )
        return await provider.start_session(webhook_url(settings, row.id))

    return await _ask_provider(session, settings, row, ask)


async def qr_code(
    session: AsyncSession, principal: Principal, settings: Settings, config_id: uuid.UUID
) -> tuple[ConnectionCheck, QrCode | None]:
    """The bridge's status and, while it waits for a scan, its QR code."""
    row = await get_config(session, principal, config_id)
    qr: QrCode | None = None

    async def ask(provider: WhatsAppProvider) -> ConnectionCheck:
        nonlocal qr
        check = await provider.check_connection()
        if check.status == "qr" and isinstance(provider, SessionProvider):
            qr = await provider.qr_code()
            if qr is not None:
                row.qr_code_data = f"data:{qr.mimetype};base64,{qr.data_base64}"
        return check

    check = await _ask_provider(session, settings, row, ask)
    return check, qr
