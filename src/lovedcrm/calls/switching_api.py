"""JSON routes for switching the active voice provider: activate a telephony configuration,
list the switches, roll one back (thin: rules in ``calls.switching``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from lovedcrm.calls import switching
from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.messaging.whatsapp_schemas import MigrationOut

router = APIRouter(prefix="/api/v1/calls", tags=["calls"])
Admin = Annotated[Principal, Depends(Require("settings:manage"))]


@router.post(
    "/configs/{config_id}/activate",
    response_model=MigrationOut,
    responses=problem_responses(401, 403, 404, 409),
)
async def activate_voice_config(
    config_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> MigrationOut:
    """Make this telephony configuration the one new calls use. The answer is the provider
    migration (`migration_type` `voice`): `completed`, or `failed` with the reason in
    `migration_data.steps` when the provider did not answer — then nothing changed. Calls in
    progress finish on the provider they started with."""
    migration = await switching.activate(session, principal, settings, config_id)
    return MigrationOut.model_validate(migration)


@router.get("/migrations", response_model=list[MigrationOut], responses=problem_responses(401, 403))
async def list_voice_migrations(principal: Admin, session: SessionDep) -> list[MigrationOut]:
    """The organization's voice provider switches, newest first (50)."""
    rows = await switching.list_migrations(session, principal)
    return [MigrationOut.model_validate(m) for m in rows]


@router.post(
    "/migrations/{migration_id}/rollback",
    response_model=MigrationOut,
    responses=problem_responses(401, 403, 404, 409),
)
async def rollback_voice_migration(
    migration_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> MigrationOut:
    """Undo a completed voice switch: the previous provider becomes active again."""
    migration = await switching.rollback(session, principal, settings, migration_id)
    return MigrationOut.model_validate(migration)
