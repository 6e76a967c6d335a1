"""Switching an organization's active WhatsApp provider (#26, #28), with no message lost.

A switch is a ``provider_migrations`` row that goes pending → in_progress → completed (or
failed, with nothing changed). In progress, the new configuration's connection is checked;
then, in one transaction, the old configuration is deactivated and the new one activated
(the partial unique index allows one active per organization). Nothing else has to move:

- queued messages are sent by jobs that resolve the active configuration when they run, so
  whatever was queued during the switch leaves through the new provider;
- every configuration keeps its webhook address while it exists, so late deliveries and
  statuses from the old provider are still accepted and applied;
- ``backup_data`` keeps the old configuration's row (secrets still encrypted), so a rollback
  is one action even if that configuration was edited or removed since.

Every step is written to the audit log. Needs ``settings:manage``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.config import Settings
from lovedcrm.core.errors import Conflict, NotFound
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.messaging.models import ProviderMigration, WhatsappConfig
from lovedcrm.messaging.providers.base import ConnectionCheck, ProviderError
from lovedcrm.messaging.whatsapp_configs import (
    active_config,
    build_provider,
    decrypt,
    get_config,
    http_client,
)

_BACKUP_COLUMNS = (
    "id",
    "provider_type",
    "business_phone_id",
    "access_token",
    "webhook_verify_token",
    "business_account_id",
    "session_id",
    "connection_status",
    "config_data",
    "rate_limits",
)


def _now() -> datetime:
    return datetime.now(UTC)


def _backup(row: WhatsappConfig | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {
        c: (str(v) if isinstance(v, uuid.UUID) else v)
        for c in _BACKUP_COLUMNS
        if (v := getattr(row, c)) is not None
    }


async def _step(
    session: AsyncSession,
    principal: Principal,
    migration: ProviderMigration,
    status: str,
    code: str,
    note: str,
) -> None:
    """One step: ``code`` is stable (pages translate it), ``note`` says it in English."""
    data = dict(migration.migration_data or {})
    steps = list(data.get("steps") or [])
    steps.append({"status": status, "code": code, "at": _now().isoformat(), "note": note})
    data["steps"] = steps
    migration.migration_data = data
    migration.status = status
    migration.updated_at = _now()
    if status == "in_progress":
        migration.started_at = _now()
    if status in ("completed", "failed"):
        migration.completed_at = _now()
    await session.flush()
    await audit.record(
        session,
        action=f"provider_migration.{status}",
        resource_type="provider_migration",
        resource_id=migration.id,
        organization_id=migration.organization_id,
        user_id=principal.user_id,
        changes={
            "status": status,
            "note": note,
            "from": migration.from_provider,
            "to": migration.to_provider,
        },
    )


async def _check(settings: Settings, row: WhatsappConfig) -> ConnectionCheck:
    async with http_client(settings) as client:
        try:
            return await build_provider(decrypt(settings, row), client, settings).check_connection()
        except ProviderError as exc:
            return ConnectionCheck(ok=False, status="failed", detail=exc.message)


async def activate(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    config_id: uuid.UUID,
    *,
    rollback_of: uuid.UUID | None = None,
) -> ProviderMigration:
    """Make ``config_id`` the active provider. Returns the migration; a failed connection
    check leaves everything as it was and the migration ``failed`` (not an error: the record
    is the answer)."""
    target = await get_config(session, principal, config_id)
    org_id = principal.org()
    # One switch at a time per organization.
    await session.execute(
        select(WhatsappConfig.id).where(WhatsappConfig.organization_id == org_id).with_for_update()
    )
    current = await active_config(session, org_id)
    if current is not None and current.id == target.id:
        raise Conflict("This provider is already the active one.", code="already_active")
    migration = ProviderMigration(
        id=uuid.uuid4(),
        organization_id=org_id,
        migration_type="whatsapp",
        from_provider=current.provider_type if current else "none",
        to_provider=target.provider_type,
        status="pending",
        migration_data={
            "from_config_id": str(current.id) if current else None,
            "to_config_id": str(target.id),
            "rollback_of": str(rollback_of) if rollback_of else None,
            "steps": [],
        },
        backup_data=_backup(current),
    )
    session.add(migration)
    await session.flush()
    await _step(session, principal, migration, "pending", "requested", "switch requested")
    await _step(
        session, principal, migration, "in_progress", "checking", "checking the new provider"
    )
    check = await _check(settings, target)
    target.connection_status = "connected" if check.ok else check.status
    if not check.ok:
        await _step(
            session,
            principal,
            migration,
            "failed",
            "check_failed",
            f"the new provider did not answer: {check.detail}; nothing was changed",
        )
        return migration
    if current is not None:
        current.is_active = False
        current.updated_at = _now()
        await session.flush()  # the partial unique index: deactivate before activating
    target.is_active = True
    target.last_connected_at = _now()
    target.updated_at = _now()
    await session.flush()
    await _step(
        session,
        principal,
        migration,
        "completed",
        "switched",
        "active provider switched; queued messages leave through it",
    )
    return migration


async def rollback(
    session: AsyncSession, principal: Principal, settings: Settings, migration_id: uuid.UUID
) -> ProviderMigration:
    """Undo a completed switch: the previous configuration becomes active again, restored
    from ``backup_data`` if it was removed since."""
    principal.require("settings:manage")
    migration = await get_in_org(
        session,
        ProviderMigration,
        migration_id,
        principal,
        NotFound("Provider migration not found."),
    )
    if migration.status != "completed":
        raise Conflict("Only a completed switch can be rolled back.", code="not_completed")
    backup = dict(migration.backup_data or {})
    if not backup.get("id"):
        raise Conflict(
            "There was no provider before this switch: nothing to roll back to.",
            code="nothing_to_restore",
        )
    previous_id = uuid.UUID(backup["id"])
    if await session.get(WhatsappConfig, previous_id) is None:
        restored = {k: v for k, v in backup.items() if k != "id"}
        session.add(
            WhatsappConfig(
                id=previous_id,
                organization_id=migration.organization_id,
                is_active=False,
                **restored,
            )
        )
        await session.flush()
        await audit.record(
            session,
            action="restore",
            resource_type="whatsapp_config",
            resource_id=previous_id,
            organization_id=migration.organization_id,
            user_id=principal.user_id,
            changes={"restored_from_migration": str(migration.id)},
        )
    return await activate(session, principal, settings, previous_id, rollback_of=migration.id)


async def list_migrations(session: AsyncSession, principal: Principal) -> list[ProviderMigration]:
    principal.require("settings:manage")
    rows = await session.execute(
        select(ProviderMigration)
        .where(
            ProviderMigration.organization_id == principal.org(),
            ProviderMigration.migration_type == "whatsapp",
        )
        .order_by(ProviderMigration.created_at.desc())
        .limit(50)
    )
    return list(rows.scalars())
