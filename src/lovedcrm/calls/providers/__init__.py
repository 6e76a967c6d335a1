"""Voice provider adapters: ``twilio``, ``telnyx`` and the offline ``sandbox``; the interface
lives in ``base``. :func:`build` makes the adapter of one decrypted configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from lovedcrm.calls.providers.base import VoiceProvider
from lovedcrm.calls.providers.sandbox import SandboxProvider
from lovedcrm.calls.providers.telnyx import DEFAULT_BASE_URL as TELNYX_URL
from lovedcrm.calls.providers.telnyx import TelnyxProvider
from lovedcrm.calls.providers.twilio import DEFAULT_BASE_URL as TWILIO_URL
from lovedcrm.calls.providers.twilio import TwilioProvider


@dataclass
class VoiceConfig:
    """One telephony configuration with its secrets in the clear: built for a call, never
    stored."""

    id: Any
    organization_id: Any
    kind: str
    account_sid: str | None = None
    auth_token: str | None = None
    api_key: str | None = None
    connection_id: str | None = None
    public_key: str | None = None
    api_base_url: str | None = None
    business_numbers: list[str] = field(default_factory=list)
    cost_per_minute: Decimal | None = None
    currency: str = "USD"
    ring_group: list[str] = field(default_factory=list)
    record: bool = True


def build(cfg: VoiceConfig, client: httpx.AsyncClient) -> VoiceProvider:
    if cfg.kind == "twilio":
        return TwilioProvider(
            client=client,
            account_sid=cfg.account_sid or "",
            auth_token=cfg.auth_token or "",
            base_url=cfg.api_base_url or TWILIO_URL,
        )
    if cfg.kind == "telnyx":
        return TelnyxProvider(
            client=client,
            api_key=cfg.api_key or "",
            connection_id=cfg.connection_id,
            public_key=cfg.public_key,
            base_url=cfg.api_base_url or TELNYX_URL,
        )
    return SandboxProvider()
