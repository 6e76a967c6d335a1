"""JSON routes for calls: telephony configurations (secrets write-only), click-to-call, the
call log with its notes and outcome, and recordings (thin: rules in ``calls.service`` and
``calls.configs``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from lovedcrm.calls import configs, recordings, service, switching
from lovedcrm.calls.schemas import (
    CallDialIn,
    CallOut,
    CallPageOut,
    CallUpdateIn,
    Status,
    VoipConfigIn,
    VoipConfigOut,
    VoipConfigUpdateIn,
    VoipConnectionOut,
)
from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import IsoDateTime

router = APIRouter(prefix="/api/v1/calls", tags=["calls"])
Admin = Annotated[Principal, Depends(Require("settings:manage"))]
Reader = Annotated[Principal, Depends(Require("leads:read"))]
Writer = Annotated[Principal, Depends(Require("leads:write"))]

# Provider switching checks a configuration through its adapter (calls.switching).
switching.use_check(configs.switch_check)


# --- configurations (before /{call_id}: "configs" is not a call id) --------------------------


@router.get("/configs", response_model=list[VoipConfigOut], responses=problem_responses(401, 403))
async def list_configs(
    principal: Admin, session: SessionDep, settings: SettingsDep
) -> list[VoipConfigOut]:
    rows = await configs.list_configs(session, principal)
    return [VoipConfigOut.model_validate(configs.config_out(settings, r)) for r in rows]


@router.post(
    "/configs",
    response_model=VoipConfigOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422),
)
async def create_config(
    body: VoipConfigIn, principal: Admin, session: SessionDep, settings: SettingsDep
) -> VoipConfigOut:
    """A telephony provider: `twilio` (account_sid, auth_token), `telnyx` (api_key,
    connection_id, public_key) or the offline `sandbox`. The organization's first one is
    active. Secrets are never returned; `webhook_url` (and Twilio's `voice_url`) go into the
    provider's console."""
    row = await configs.create_config(
        session, principal, settings, body.model_dump(exclude_unset=True)
    )
    return VoipConfigOut.model_validate(configs.config_out(settings, row))


@router.get(
    "/configs/{config_id}", response_model=VoipConfigOut, responses=problem_responses(401, 403, 404)
)
async def get_config(
    config_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> VoipConfigOut:
    row = await configs.get_config(session, principal, config_id)
    return VoipConfigOut.model_validate(configs.config_out(settings, row))


@router.patch(
    "/configs/{config_id}",
    response_model=VoipConfigOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def update_config(
    config_id: uuid.UUID,
    body: VoipConfigUpdateIn,
    principal: Admin,
    session: SessionDep,
    settings: SettingsDep,
) -> VoipConfigOut:
    """Change a configuration; a secret left out (or empty) keeps the stored one."""
    row = await configs.update_config(
        session, principal, settings, config_id, body.model_dump(exclude_unset=True)
    )
    return VoipConfigOut.model_validate(configs.config_out(settings, row))


@router.delete(
    "/configs/{config_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 409),
)
async def delete_config(config_id: uuid.UUID, principal: Admin, session: SessionDep) -> Response:
    await configs.delete_config(session, principal, config_id)
    return Response(status_code=204)


@router.post(
    "/configs/{config_id}/test",
    response_model=VoipConnectionOut,
    responses=problem_responses(401, 403, 404),
)
async def test_config(
    config_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> VoipConnectionOut:
    """Ask the provider whether the credentials work (the answer says why not)."""
    found = await configs.check_connection(session, principal, settings, config_id)
    return VoipConnectionOut(ok=found.ok, detail=found.detail)


# --- calls ------------------------------------------------------------------------------------


@router.get("", response_model=CallPageOut, responses=problem_responses(400, 401, 403, 422))
async def list_calls(
    principal: Reader,
    session: SessionDep,
    lead_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    direction: Annotated[str | None, Query(pattern="^(inbound|outbound)$")] = None,
    since: IsoDateTime | None = None,
    until: IsoDateTime | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CallPageOut:
    """The calls of the leads you can see, newest first; `next_cursor` gives the next page."""
    rows, next_cursor = await service.list_calls(
        session,
        principal,
        lead_id=lead_id,
        user_id=user_id,
        status=status_,
        direction=direction,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return CallPageOut(items=[CallOut.of(c) for c in rows], next_cursor=next_cursor)


@router.post(
    "",
    response_model=CallOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def dial(
    body: CallDialIn, principal: Writer, session: SessionDep, settings: SettingsDep
) -> CallOut:
    """Click-to-call: your phone rings first, then the lead's. 422 `invalid_phone` before
    dialling; 409 when telephony is not set up or you have no phone in your profile; a
    provider that fails leaves the call `failed` with its `reason`."""
    call = await service.dial(session, principal, settings, body.lead_id, to_number=body.to_number)
    return CallOut.of(call)


@router.get("/{call_id}", response_model=CallOut, responses=problem_responses(401, 403, 404))
async def get_call(call_id: uuid.UUID, principal: Reader, session: SessionDep) -> CallOut:
    return CallOut.of(await service.get_call(session, principal, call_id))


@router.patch("/{call_id}", response_model=CallOut, responses=problem_responses(401, 403, 404, 422))
async def update_call(
    call_id: uuid.UUID, body: CallUpdateIn, principal: Writer, session: SessionDep
) -> CallOut:
    """Notes and outcome of a call."""
    call = await service.update_call(
        session, principal, call_id, body.model_dump(exclude_unset=True)
    )
    return CallOut.of(call)


@router.get(
    "/{call_id}/recording",
    response_class=Response,
    responses={
        # Served as audio/wav or audio/mpeg; documented like the attachments' download.
        200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
        **problem_responses(401, 403, 404),
    },
)
async def recording(
    call_id: uuid.UUID, principal: Reader, session: SessionDep, settings: SettingsDep
) -> Response:
    """The call's recording, to members who can see its lead."""
    _call, key = await service.recording_call(session, principal, call_id)
    return await recordings.response(settings, key)
