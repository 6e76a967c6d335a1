"""JSON routes for the organization's AI settings (thin: rules in assistant.ai_settings)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import Field

from lovedcrm.assistant import ai_settings as service
from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import Out, StrictIn

router = APIRouter(prefix="/api/v1", tags=["assistant"])
Manager = Annotated[Principal, Depends(Require("settings:manage"))]


class AiSettingsOut(Out):
    provider: str
    base_url: str | None
    model: str | None
    api_version: str | None
    api_key_set: bool
    api_key_masked: str | None
    timeout_seconds: float
    max_retries: int
    monthly_token_budget: int | None
    transcription_enabled: bool
    transcription_model: str


class AiSettingsIn(StrictIn):
    provider: Literal["sandbox", "openai_compatible"] | None = None
    base_url: str | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=200)
    api_version: str | None = Field(
        default=None,
        max_length=40,
        pattern=r"^(\d{4}-\d{2}-\d{2}(-preview)?)?$",
        description="Azure OpenAI's api-version, e.g. 2024-06-01 (empty: not Azure)",
    )
    api_key: str | None = Field(
        default=None, max_length=500, description="Write-only; empty keeps the stored key"
    )
    clear_api_key: bool = False
    timeout_seconds: float | None = Field(default=None, ge=1, le=120)
    max_retries: int | None = Field(default=None, ge=0, le=5)
    monthly_token_budget: int | None = Field(default=None, ge=0, le=1_000_000_000)
    transcription_enabled: bool | None = Field(
        default=None, description="Send call recordings to the provider for a transcription"
    )
    transcription_model: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[\w.:/@+-]*$",
        description='Speech-to-text model (or Azure deployment); empty: "whisper-1"',
    )


class AiConnectionOut(Out):
    ok: bool
    detail: str
    model: str | None


def _out(view: service.AiSettingsView) -> AiSettingsOut:
    return AiSettingsOut.model_validate(view.__dict__)


@router.get("/ai/settings", response_model=AiSettingsOut, responses=problem_responses(401, 403))
async def get_settings(
    principal: Manager, session: SessionDep, settings: SettingsDep
) -> AiSettingsOut:
    """The organization's AI provider; the API key is never shown, only whether it is set."""
    return _out(await service.get_ai_settings(session, principal, settings))


@router.patch(
    "/ai/settings", response_model=AiSettingsOut, responses=problem_responses(401, 403, 422)
)
async def update_settings(
    body: AiSettingsIn, principal: Manager, session: SessionDep, settings: SettingsDep
) -> AiSettingsOut:
    """Change the fields given. ``base_url`` goes through the outbound guard (a private
    address only if the installation allows it)."""
    values = body.model_dump(exclude_unset=True)
    return _out(await service.update_ai_settings(session, principal, settings, values))


@router.post(
    "/ai/settings/test", response_model=AiConnectionOut, responses=problem_responses(401, 403)
)
async def test_settings(
    principal: Manager, session: SessionDep, settings: SettingsDep
) -> AiConnectionOut:
    """Send the provider a tiny prompt with the saved settings: whether it answers."""
    check = await service.check_connection(session, principal, settings)
    return AiConnectionOut(ok=check.ok, detail=check.detail, model=check.model)
