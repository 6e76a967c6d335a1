"""Switching an organization's active voice provider (Twilio ↔ Telnyx ↔ sandbox).

The voice kind of the one provider switch (``messaging.switching``): same
``provider_migrations`` rows (``migration_type`` ``voice``), same steps, same audit, same
one-action rollback. What is particular to voice:

- a call keeps the ``provider_type`` it was placed with, so a call in progress during a switch
  finishes on the old provider, and its callbacks are still verified with that provider's
  configuration (:func:`config_for_call`); new calls resolve the active configuration;
- so a configuration is never removed while it has unfinished calls (:func:`ensure_removable`
  answers 409);
- the connection check is injectable (:data:`connection_check`): by default it builds the
  provider (``calls.providers``) and asks it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.calls.models import CallLog, VoipConfig
from lovedcrm.config import Settings
from lovedcrm.core.errors import Conflict, NotFound
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.messaging.models import ProviderMigration
from lovedcrm.messaging.providers.base import ConnectionCheck
from lovedcrm.messaging.switching import (
    ProviderKind,
    get_migration,
    list_switches,
    rollback_switch,
    switch,
)

MIGRATION_TYPE = "voice"

# A call in one of these states is over; any other state (or none yet) is unfinished.
FINISHED_STATUSES = frozenset(
    {"completed", "no_answer", "no-answer", "busy", "failed", "canceled", "cancelled"}
)

VoiceCheck = Callable[[Settings, VoipConfig], Awaitable[ConnectionCheck]]


async def _no_check_available(settings: Settings, row: VoipConfig) -> ConnectionCheck:
    return ConnectionCheck(
        ok=False, status="failed", detail="no connection check is available for this provider"
    )


# Replaced at start-up (and by tests) with the provider-backed check: see ``use_check``.
connection_check: VoiceCheck = _no_check_available


def use_check(check: VoiceCheck) -> VoiceCheck:
    """Install ``check`` as the voice connection check; returns the previous one."""
    global connection_check
    previous, connection_check = connection_check, check
    return previous


async def _check(settings: Settings, row: VoipConfig) -> ConnectionCheck:
    try:
        return await connection_check(settings, row)
    except Exception as exc:  # a check never raises: a failure is the answer
        return ConnectionCheck(ok=False, status="failed", detail=str(exc) or type(exc).__name__)


async def get_config(
    session: AsyncSession, principal: Principal, config_id: uuid.UUID
) -> VoipConfig:
    principal.require("settings:manage")
    return await get_in_org(
        session, VoipConfig, config_id, principal, NotFound("Telephony configuration not found.")
    )


async def active_config(session: AsyncSession, organization_id: uuid.UUID) -> VoipConfig | None:
    """The configuration new calls use."""
    result = await session.execute(
        select(VoipConfig).where(
            VoipConfig.organization_id == organization_id, VoipConfig.is_active.is_(True)
        )
    )
    return result.scalar_one_or_none()


VOICE: ProviderKind[VoipConfig] = ProviderKind(
    migration_type=MIGRATION_TYPE,
    model=VoipConfig,
    organization_column=VoipConfig.organization_id,
    backup_columns=(
        "id",
        "provider_type",
        "account_sid",
        "auth_token",
        "api_key",
        "business_numbers",
        "config_data",
        "cost_per_minute",
    ),
    resource_type="voip_config",
    get_config=get_config,
    active_config=active_config,
    check=_check,
    switched_note="active provider switched; calls in progress finish on the old one",
)


async def activate(
    session: AsyncSession, principal: Principal, settings: Settings, config_id: uuid.UUID
) -> ProviderMigration:
    """Make this telephony configuration the one new calls use (a migration, ``failed``
    with nothing changed when the provider does not answer)."""
    return await switch(session, principal, settings, VOICE, config_id)


async def rollback(
    session: AsyncSession, principal: Principal, settings: Settings, migration_id: uuid.UUID
) -> ProviderMigration:
    return await rollback_switch(session, principal, settings, VOICE, migration_id)


async def list_migrations(session: AsyncSession, principal: Principal) -> list[ProviderMigration]:
    return await list_switches(session, principal, VOICE)


async def get_voice_migration(
    session: AsyncSession, principal: Principal, migration_id: uuid.UUID
) -> ProviderMigration:
    return await get_migration(session, principal, VOICE, migration_id)


# --- calls in progress ------------------------------------------------------------------------


def _unfinished() -> object:
    return or_(CallLog.status.is_(None), CallLog.status.not_in(sorted(FINISHED_STATUSES)))


async def unfinished_calls(session: AsyncSession, config: VoipConfig) -> int:
    """How many of the organization's calls placed through this configuration's provider
    have not finished yet."""
    count = await session.scalar(
        select(func.count())
        .select_from(CallLog)
        .where(
            CallLog.organization_id == config.organization_id,
            CallLog.provider_type == config.provider_type,
            _unfinished(),  # type: ignore[arg-type]
        )
    )
    return int(count or 0)


async def ensure_removable(session: AsyncSession, config: VoipConfig) -> None:
    """Refuse (409) to remove a configuration that calls in progress still need: their
    callbacks are verified with it."""
    if config.is_active:
        raise Conflict(
            "This is the active telephony provider: switch to another one before removing it.",
            code="config_active",
        )
    busy = await unfinished_calls(session, config)
    if busy:
        raise Conflict(
            "This provider still has calls in progress; remove it when they have finished.",
            code="config_has_calls_in_progress",
            extra={"unfinished_calls": busy},
        )


async def config_for_call(session: AsyncSession, call: CallLog) -> VoipConfig | None:
    """The configuration a call's callbacks are verified with: the one it was placed through
    (``metadata.voip_config_id`` when recorded), else the organization's configuration of the
    call's provider (the active one first). Never simply the active configuration: a call in
    progress during a switch belongs to the old provider."""
    meta = call.metadata_ or {}
    recorded = meta.get("voip_config_id")
    if isinstance(recorded, str):
        try:
            row = await session.get(VoipConfig, uuid.UUID(recorded))
        except ValueError:
            row = None
        if row is not None and row.organization_id == call.organization_id:
            return row
    result = await session.execute(
        select(VoipConfig)
        .where(
            VoipConfig.organization_id == call.organization_id,
            VoipConfig.provider_type == call.provider_type,
        )
        .order_by(VoipConfig.is_active.desc().nulls_last(), VoipConfig.created_at.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()
