"""Call transcription through the organization's AI provider.

Calls and the assistant are independent domains, so they talk through internal events: when
a call's recording is stored (``call.recording_stored``) and the organization turned
transcription on in Settings → AI, :func:`queue_for_recording` queues ``calls.transcribe``
(in the recording job's transaction). The job (:func:`transcribe_recording`) reads the audio
from file storage, sends it to the provider (an OpenAI-compatible ``/audio/transcriptions``,
or the sandbox's labelled demo text) and announces the text (``call.transcribed``), which
the calls domain stores on the call. A refusal (over the 25 MB the API accepts, a provider
that said no) is announced too, as the ``failure`` the call's metadata keeps.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.assistant.ai_settings import SETTINGS_KEY, load_config
from lovedcrm.assistant.llm import build_transcriber, http_client
from lovedcrm.assistant.llm.base import AudioFile, LLMError
from lovedcrm.config import Settings
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.storage import FileMissing, get_storage
from lovedcrm.jobs.queue import enqueue
from lovedcrm.organizations.models import Organization

JOB_TYPE = "calls.transcribe"
MAX_ATTEMPTS = 3
# OpenAI's /audio/transcriptions refuses larger files.
MAX_AUDIO_BYTES = 25 * 1024 * 1024
TOO_LARGE = "The recording is over 25 MB, the most the transcription API accepts."


class TranscribePayload(BaseModel):
    call_id: uuid.UUID
    recording_key: str = Field(max_length=500)
    content_type: str = Field(default="audio/wav", max_length=50)
    bytes: int | None = Field(default=None, ge=0)


class TranscriptionRefused(Exception):
    """Trying again cannot help: ``reason`` goes to the call's metadata."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TranscriptionUnavailable(Exception):
    """The provider may answer later (429, 5xx, timeouts): retry after ``seconds``."""

    def __init__(self, reason: str, seconds: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = seconds


def _ai(org: Organization | None) -> dict[str, Any]:
    raw = (org.settings or {}).get(SETTINGS_KEY) if org is not None else None
    return raw if isinstance(raw, dict) else {}


async def queue_for_recording(
    session: AsyncSession, organization_id: uuid.UUID, data: dict[str, Any]
) -> uuid.UUID | None:
    """Queue the recording's transcription when the organization turned it on (once per
    call); None when it is off or the event is not usable."""
    org = await session.get(Organization, organization_id)
    if _ai(org).get("transcription_enabled") is not True:
        return None
    try:
        payload = TranscribePayload.model_validate(
            {
                "call_id": data.get("call_id"),
                "recording_key": data.get("recording_key"),
                "content_type": data.get("content_type") or "audio/wav",
                "bytes": data.get("bytes"),
            }
        )
    except ValueError:
        return None
    return await enqueue(
        session,
        JOB_TYPE,
        payload,
        organization_id=organization_id,
        max_attempts=MAX_ATTEMPTS,
        priority=0,
        dedupe_key=f"{JOB_TYPE}:{payload.call_id}",
    )


def language_of(org: Organization | None) -> str | None:
    """The transcription's language hint: "pt" for a pt-BR organization, else none (the
    provider detects it)."""
    locale = str(((org.settings or {}) if org is not None else {}).get("locale") or "")
    return "pt" if locale.lower().startswith("pt") else None


def _filename(key: str, content_type: str) -> str:
    extension = "mp3" if content_type == "audio/mpeg" or key.endswith(".mp3") else "wav"
    return f"call-recording.{extension}"


async def transcribe_recording(
    session: AsyncSession, settings: Settings, organization_id: uuid.UUID, job: TranscribePayload
) -> dict[str, Any]:
    """Transcribe the call's recording and announce the text. Raises
    ``TranscriptionRefused`` (record the reason, fail) or ``TranscriptionUnavailable``
    (retry later)."""
    config = await load_config(session, settings, organization_id)
    if not config.transcription_enabled:
        return {"skipped": "transcription turned off"}
    if job.bytes is not None and job.bytes > MAX_AUDIO_BYTES:
        raise TranscriptionRefused(TOO_LARGE)
    storage = get_storage(settings)
    try:
        data = await asyncio.to_thread(storage.read, job.recording_key)
    except FileMissing as exc:
        raise TranscriptionRefused("The call's recording is no longer stored.") from exc
    if len(data) > MAX_AUDIO_BYTES:
        raise TranscriptionRefused(TOO_LARGE)
    audio = AudioFile(data, _filename(job.recording_key, job.content_type), job.content_type)
    language = language_of(await session.get(Organization, organization_id))
    try:
        if config.provider == "sandbox":
            text = await build_transcriber(config).transcribe(
                audio, model=config.transcription_model, language=language
            )
        else:
            async with http_client(settings, config) as client:
                text = await build_transcriber(config, client).transcribe(
                    audio, model=config.transcription_model, language=language
                )
    except LLMError as exc:
        if exc.transient:
            raise TranscriptionUnavailable(exc.message, exc.retry_after) from exc
        raise TranscriptionRefused(exc.message) from exc
    await announce(session, organization_id, job.call_id, text=text)
    return {"characters": len(text), "provider": config.provider}


async def announce(
    session: AsyncSession,
    organization_id: uuid.UUID,
    call_id: uuid.UUID,
    *,
    text: str | None = None,
    failure: str | None = None,
) -> None:
    """``call.transcribed``: the calls domain stores the text (or the failure) on the call."""
    data: dict[str, Any] = {"call_id": str(call_id)}
    if text is not None:
        data["text"] = text
    if failure is not None:
        data["failure"] = failure
    await emit(session, DomainEvent("call.transcribed", organization_id, data))
