"""JSON routes for API keys (thin: the rules live in auth.api_keys)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import ConfigDict, Field

from lovedcrm.auth import api_keys as service
from lovedcrm.core.deps import CurrentPrincipal, SessionDep
from lovedcrm.core.schemas import IsoDateTime, Out, StrictIn

router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated (problem+json)"},
    403: {
        "description": "Missing the 'api_keys:manage' permission, or the request was made "
        "with an API key (code api_keys_require_user)"
    },
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **_PROBLEMS,
    404: {"description": "No API key with that id in your organization"},
}


class ApiKeyIn(StrictIn):
    name: str = Field(min_length=1, max_length=255, examples=["Zapier"])
    scopes: list[str] = Field(
        min_length=1, max_length=len(service.SCOPES), examples=[["leads:read", "leads:write"]]
    )
    expires_at: IsoDateTime | None = Field(default=None, description="Optional; in the future")
    rate_limit_per_hour: int = Field(
        default=service.DEFAULT_RATE_LIMIT, ge=1, le=service.MAX_RATE_LIMIT
    )


class ApiKeyOut(Out):
    model_config = ConfigDict(from_attributes=True, validate_by_name=True, validate_by_alias=True)

    id: uuid.UUID
    name: str = Field(validation_alias="key_name")
    prefix: str = Field(validation_alias="api_key_prefix")
    scopes: list[str]
    rate_limit_per_hour: int | None
    is_active: bool | None
    expires_at: datetime | None
    last_used_at: datetime | None = Field(
        description="Written every few seconds, not on every request"
    )
    total_requests: int | None
    created_by: uuid.UUID
    created_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(
        description="The full key, shown only in this response: send it as "
        "'Authorization: Bearer <key>'"
    )


class ScopeOut(Out):
    name: str
    description: str


@router.get("/scopes", response_model=list[ScopeOut], responses=_PROBLEMS)
async def list_scopes(principal: CurrentPrincipal) -> list[ScopeOut]:
    """The scopes a key can be given."""
    service.ensure_can_manage(principal)
    return [ScopeOut(name=n, description=d) for n, d in sorted(service.SCOPES.items())]


@router.post(
    "",
    response_model=ApiKeyCreatedOut,
    status_code=status.HTTP_201_CREATED,
    responses={**_PROBLEMS, 422: {"description": "Unknown scope, past expiry, bad fields"}},
)
async def create_api_key(
    body: ApiKeyIn, principal: CurrentPrincipal, session: SessionDep
) -> ApiKeyCreatedOut:
    """Create a key. The full key is in this response only; store it now."""
    key, full = await service.create_key(
        session,
        principal,
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        rate_limit_per_hour=body.rate_limit_per_hour,
    )
    return ApiKeyCreatedOut.model_validate(
        {**ApiKeyOut.model_validate(key).model_dump(), "key": full}
    )


@router.get("", response_model=list[ApiKeyOut], responses=_PROBLEMS)
async def list_api_keys(principal: CurrentPrincipal, session: SessionDep) -> list[ApiKeyOut]:
    """The organization's keys, revoked ones included (never their secret)."""
    return [ApiKeyOut.model_validate(k) for k in await service.list_keys(session, principal)]


@router.get("/{key_id}", response_model=ApiKeyOut, responses=_NOT_FOUND)
async def get_api_key(
    key_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> ApiKeyOut:
    return ApiKeyOut.model_validate(await service.get_key(session, principal, key_id))


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def revoke_api_key(
    key_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> Response:
    """Revoke a key: the next request made with it gets 401."""
    await service.revoke_key(session, principal, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
