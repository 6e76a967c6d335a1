"""Switching an organization's active provider (#26, #28), for every kind of provider.

One implementation for WhatsApp and voice (``calls.switching`` holds the voice kind): a
:class:`ProviderKind` says which configuration table, which columns to back up, how to check
a connection and what ``migration_type`` to record; the steps are the same for all.

A switch is a ``provider_migrations`` row that goes pending → in_progress → completed (or
failed, with nothing changed). In progress, the new configuration's connection is checked;
then, in one transaction, the old configuration is deactivated and the new one activated
(the partial unique index allows one active per organization). Nothing else has to move:

- work queued during the switch (messages to send) resolves the active configuration when it
  runs, so it leaves through the new provider; what already left (a call in progress) keeps
  its provider and finishes there;
- every configuration keeps its webhook address while it exists, so late deliveries,
  statuses and call callbacks from the old provider are still verified and applied;
- ``backup_data`` keeps the old configuration's row (secrets still encrypted), so a rollback
  is one action even if that configuration was edited or removed since.

Every step is written to the audit log. Needs ``settings:manage``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from lovedcrm.audit import service as audit
from lovedcrm.config import Settings
from lovedcrm.core.errors import Conflict, NotFound
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.db.base import Base
from lovedcrm.messaging.models import ProviderMigration, WhatsappConfig
from lovedcrm.messaging.providers.base import ConnectionCheck, ProviderError
from lovedcrm.messaging.whatsapp_configs import (
    active_config,
    build_provider,
    decrypt,
    get_config,
    http_client,
)

# A provider configuration row: has ``id``, ``organization_id``, ``provider_type``,
# ``is_active`` and ``updated_at`` (``WhatsappConfig``, ``VoipConfig``).
C = TypeVar("C", bound=Base)


@dataclass(frozen=True)
class ProviderKind(Generic[C]):
    """One kind of switchable provider."""

    migration_type: str  # recorded in provider_migrations.migration_type
    model: type[C]  # the configuration table
    organization_column: InstrumentedAttribute[Any]  # model.organization_id (for the lock)
    backup_columns: tuple[str, ...]  # copied into backup_data (secrets stay encrypted)
    resource_type: str  # audit resource type of a restored configuration
    get_config: Callable[[AsyncSession, Principal, uuid.UUID], Awaitable[C]]  # 404 in tenant
    active_config: Callable[[AsyncSession, uuid.UUID], Awaitable[C | None]]
    check: Callable[[Settings, C], Awaitable[ConnectionCheck]]  # never raises
    switched_note: str = "active provider switched"
    on_checked: Callable[[C, ConnectionCheck], None] | None = None
    on_activated: Callable[[C, datetime], None] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _backup(kind: ProviderKind[C], row: C | None) -> dict[str, Any]:
    """The row's backed-up columns as JSON (ids and numbers as text)."""
    if row is None:
        return {}
    return {
        c: (str(v) if isinstance(v, uuid.UUID | Decimal) else v)
        for c in kind.backup_columns
        if (v := getattr(row, c)) is not None
    }


def _restored(kind: ProviderKind[C], backup: dict[str, Any]) -> dict[str, Any]:
    """``backup`` back in the columns' types (the inverse of :func:`_backup`)."""
    columns = kind.model.__table__.columns
    out: dict[str, Any] = {}
    for name, value in backup.items():
        if name == "id":
            continue
        column = columns.get(name)
        python_type = None
        if column is not None:
            try:
                python_type = column.type.python_type
            except NotImplementedError:
                python_type = None
        if isinstance(value, str) and python_type in (Decimal, uuid.UUID):
            value = python_type(value)
        out[name] = value
    return out


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
            "type": migration.migration_type,
        },
    )


async def switch(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    kind: ProviderKind[C],
    config_id: uuid.UUID,
    *,
    rollback_of: uuid.UUID | None = None,
) -> ProviderMigration:
    """Make ``config_id`` the active provider of its kind. Returns the migration; a failed
    connection check leaves everything as it was and the migration ``failed`` (not an error:
    the record is the answer)."""
    target: Any = await kind.get_config(session, principal, config_id)
    org_id = principal.org()
    # One switch at a time per organization and kind.
    await session.execute(
        select(kind.organization_column).where(kind.organization_column == org_id).with_for_update()
    )
    current: Any = await kind.active_config(session, org_id)
    if current is not None and current.id == target.id:
        raise Conflict("This provider is already the active one.", code="already_active")
    migration = ProviderMigration(
        id=uuid.uuid4(),
        organization_id=org_id,
        migration_type=kind.migration_type,
        from_provider=current.provider_type if current else "none",
        to_provider=target.provider_type,
        status="pending",
        migration_data={
            "from_config_id": str(current.id) if current else None,
            "to_config_id": str(target.id),
            "rollback_of": str(rollback_of) if rollback_of else None,
            "steps": [],
        },
        backup_data=_backup(kind, current),
    )
    session.add(migration)
    await session.flush()
    await _step(session, principal, migration, "pending", "requested", "switch requested")
    await _step(
        session, principal, migration, "in_progress", "checking", "checking the new provider"
    )
    check = await kind.check(settings, target)
    if kind.on_checked is not None:
        kind.on_checked(target, check)
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
    target.updated_at = _now()
    if kind.on_activated is not None:
        kind.on_activated(target, _now())
    await session.flush()
    await _step(session, principal, migration, "completed", "switched", kind.switched_note)
    return migration


async def get_migration(
    session: AsyncSession, principal: Principal, kind: ProviderKind[C], migration_id: uuid.UUID
) -> ProviderMigration:
    """One migration of this kind in the principal's organization (404 otherwise)."""
    principal.require("settings:manage")
    migration = await get_in_org(
        session,
        ProviderMigration,
        migration_id,
        principal,
        NotFound("Provider migration not found."),
    )
    if migration.migration_type != kind.migration_type:
        raise NotFound("Provider migration not found.")
    return migration


async def rollback_switch(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    kind: ProviderKind[C],
    migration_id: uuid.UUID,
) -> ProviderMigration:
    """Undo a completed switch: the previous configuration becomes active again, restored
    from ``backup_data`` if it was removed since."""
    migration = await get_migration(session, principal, kind, migration_id)
    if migration.status != "completed":
        raise Conflict("Only a completed switch can be rolled back.", code="not_completed")
    backup = dict(migration.backup_data or {})
    if not backup.get("id"):
        raise Conflict(
            "There was no provider before this switch: nothing to roll back to.",
            code="nothing_to_restore",
        )
    previous_id = uuid.UUID(backup["id"])
    if await session.get(kind.model, previous_id) is None:
        restored = _restored(kind, backup)
        model: Any = kind.model
        session.add(
            model(
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
            resource_type=kind.resource_type,
            resource_id=previous_id,
            organization_id=migration.organization_id,
            user_id=principal.user_id,
            changes={"restored_from_migration": str(migration.id)},
        )
    return await switch(session, principal, settings, kind, previous_id, rollback_of=migration.id)


async def list_switches(
    session: AsyncSession, principal: Principal, kind: ProviderKind[C]
) -> list[ProviderMigration]:
    principal.require("settings:manage")
    rows = await session.execute(
        select(ProviderMigration)
        .where(
            ProviderMigration.organization_id == principal.org(),
            ProviderMigration.migration_type == kind.migration_type,
        )
        .order_by(ProviderMigration.created_at.desc())
        .limit(50)
    )
    return list(rows.scalars())


# --- WhatsApp ----------------------------------------------------------------------------------


async def _whatsapp_check(settings: Settings, row: WhatsappConfig) -> ConnectionCheck:
    async with http_client(settings) as client:
        try:
            return await build_provider(decrypt(settings, row), client, settings).check_connection()
        except ProviderError as exc:
            return ConnectionCheck(ok=False, status="failed", detail=exc.message)


def _whatsapp_checked(row: WhatsappConfig, check: ConnectionCheck) -> None:
    row.connection_status = "connected" if check.ok else check.status


def _whatsapp_activated(row: WhatsappConfig, at: datetime) -> None:
    row.last_connected_at = at


WHATSAPP: ProviderKind[WhatsappConfig] = ProviderKind(
    migration_type="whatsapp",
    model=WhatsappConfig,
    organization_column=WhatsappConfig.organization_id,
    backup_columns=(
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
    ),
    resource_type="whatsapp_config",
    get_config=get_config,
    active_config=active_config,
    check=_whatsapp_check,
    switched_note="active provider switched; queued messages leave through it",
    on_checked=_whatsapp_checked,
    on_activated=_whatsapp_activated,
)


async def activate(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    config_id: uuid.UUID,
    *,
    rollback_of: uuid.UUID | None = None,
) -> ProviderMigration:
    """Make the WhatsApp configuration ``config_id`` the active one (see :func:`switch`)."""
    return await switch(session, principal, settings, WHATSAPP, config_id, rollback_of=rollback_of)


async def rollback(
    session: AsyncSession, principal: Principal, settings: Settings, migration_id: uuid.UUID
) -> ProviderMigration:
    """Undo a completed WhatsApp switch (see :func:`rollback_switch`)."""
    return await rollback_switch(session, principal, settings, WHATSAPP, migration_id)


async def list_migrations(session: AsyncSession, principal: Principal) -> list[ProviderMigration]:
    return await list_switches(session, principal, WHATSAPP)
