"""JSON routes for WhatsApp: configurations, switching, conversations and messages (thin:
rules in messaging.whatsapp_configs, switching, whatsapp, inbox)."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import FileResponse

from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.errors import NotFound
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import IsoDateTime
from lovedcrm.core.storage import FileMissing, get_storage
from lovedcrm.messaging import inbox, sandbox, switching, whatsapp
from lovedcrm.messaging import whatsapp_configs as configs
from lovedcrm.messaging.models import Message, MessageAttachment
from lovedcrm.messaging.whatsapp_schemas import (
    ConfigIn,
    ConfigOut,
    ConfigUpdateIn,
    ConnectionOut,
    ConversationOut,
    InjectIn,
    MessageOut,
    MigrationOut,
    QrOut,
    SendIn,
)

router = APIRouter(tags=["whatsapp"])
Reader = Annotated[Principal, Depends(Require("messages:read"))]
Writer = Annotated[Principal, Depends(Require("messages:write"))]
Admin = Annotated[Principal, Depends(Require("settings:manage"))]
CONFIGS = "/api/v1/whatsapp/configs"


def message_out(msg: Message, files: list[MessageAttachment]) -> MessageOut:
    return MessageOut(
        id=msg.id,
        lead_id=msg.lead_id,
        conversation_id=msg.conversation_id,
        provider_type=msg.provider_type,
        provider_message_id=msg.provider_message_id,
        direction=msg.direction,
        message_type=msg.message_type,
        content=msg.content,
        from_number=msg.from_number,
        to_number=msg.to_number,
        contact_name=msg.contact_name,
        status=msg.status,
        delivered_at=msg.delivered_at,
        read_at=msg.read_at,
        failed_reason=msg.failed_reason,
        metadata={k: v for k, v in (msg.metadata_ or {}).items() if k != "config_id"},
        attachments=[
            {
                "id": a.id,
                "file_name": a.file_name,
                "file_type": a.file_type,
                "file_size": a.file_size,
                "url": f"/api/v1/attachments/{a.id}",
            }
            for a in files
        ],
        created_at=msg.created_at,
    )


@router.get(CONFIGS, response_model=list[ConfigOut], responses=problem_responses(401, 403))
async def list_configs(
    principal: Admin, session: SessionDep, settings: SettingsDep
) -> list[dict[str, Any]]:
    """The organization's WhatsApp providers, the active one first. Secrets are masked."""
    rows = await configs.list_configs(session, principal)
    return [configs.config_out(settings, r) for r in rows]


@router.post(
    CONFIGS,
    response_model=ConfigOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422),
)
async def create_config(
    body: ConfigIn, principal: Admin, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Add a provider (inactive until activated). Required fields depend on the provider:
    `business_api` — business_phone_id, access_token, app_secret; `web_unofficial` —
    session_id, bridge_url; `sandbox` — none."""
    row = await configs.create_config(session, principal, settings, body.model_dump())
    return configs.config_out(settings, row)


@router.get(
    CONFIGS + "/{config_id}", response_model=ConfigOut, responses=problem_responses(401, 403, 404)
)
async def get_config(
    config_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    return configs.config_out(settings, await configs.get_config(session, principal, config_id))


@router.patch(
    CONFIGS + "/{config_id}",
    response_model=ConfigOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def update_config(
    config_id: uuid.UUID,
    body: ConfigUpdateIn,
    principal: Admin,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Change fields; secrets left out keep their stored values."""
    row = await configs.update_config(
        session, principal, settings, config_id, body.model_dump(exclude_unset=True)
    )
    return configs.config_out(settings, row)


@router.delete(
    CONFIGS + "/{config_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409),
)
async def delete_config(config_id: uuid.UUID, principal: Admin, session: SessionDep) -> Response:
    await configs.delete_config(session, principal, config_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    CONFIGS + "/{config_id}/check",
    response_model=ConnectionOut,
    responses=problem_responses(401, 403, 404),
)
async def check_connection(
    config_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ConnectionOut:
    """Test the credentials against the provider; the answer is kept as the status."""
    check = await configs.check_connection(session, principal, settings, config_id)
    return ConnectionOut(ok=check.ok, status=check.status, detail=check.detail)


@router.post(
    CONFIGS + "/{config_id}/session",
    response_model=ConnectionOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def start_session(
    config_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ConnectionOut:
    """WhatsApp Web: create or start the bridge session, with our signed webhook."""
    check = await configs.start_session(session, principal, settings, config_id)
    return ConnectionOut(ok=check.ok, status=check.status, detail=check.detail)


@router.get(
    CONFIGS + "/{config_id}/qr", response_model=QrOut, responses=problem_responses(401, 403, 404)
)
async def qr_code(
    config_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> QrOut:
    """WhatsApp Web: the session's status and, while it waits for a scan, the QR code."""
    check, qr = await configs.qr_code(session, principal, settings, config_id)
    return QrOut(
        status=check.status,
        mimetype=qr.mimetype if qr else None,
        data_base64=qr.data_base64 if qr else None,
    )


@router.post(
    CONFIGS + "/{config_id}/activate",
    response_model=MigrationOut,
    responses=problem_responses(401, 403, 404, 409),
)
async def activate(
    config_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> MigrationOut:
    """Switch the active provider to this one. The answer is the provider migration: its
    `status` is `completed`, or `failed` (with the reason in `migration_data.steps`) when the
    new provider did not answer — then nothing changed."""
    migration = await switching.activate(session, principal, settings, config_id)
    return MigrationOut.model_validate(migration)


@router.get(
    "/api/v1/whatsapp/migrations",
    response_model=list[MigrationOut],
    responses=problem_responses(401, 403),
)
async def list_migrations(principal: Admin, session: SessionDep) -> list[MigrationOut]:
    rows = await switching.list_migrations(session, principal)
    return [MigrationOut.model_validate(m) for m in rows]


@router.post(
    "/api/v1/whatsapp/migrations/{migration_id}/rollback",
    response_model=MigrationOut,
    responses=problem_responses(401, 403, 404, 409),
)
async def rollback(
    migration_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> MigrationOut:
    """Undo a completed switch: the previous provider becomes active again."""
    migration = await switching.rollback(session, principal, settings, migration_id)
    return MigrationOut.model_validate(migration)


@router.post(
    "/api/v1/whatsapp/sandbox/inbound",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 409, 422),
)
async def sandbox_inbound(body: InjectIn, principal: Writer, session: SessionDep) -> dict[str, str]:
    """Sandbox only: simulate a customer's WhatsApp message (processed like a webhook)."""
    message_id = await sandbox.inject(
        session,
        principal.org(),
        from_number=body.from_number,
        content=body.content,
        contact_name=body.contact_name,
    )
    return {"provider_message_id": message_id}


@router.get(
    "/api/v1/conversations",
    response_model=list[ConversationOut],
    responses=problem_responses(401, 403, 422),
)
async def list_conversations(
    principal: Reader,
    session: SessionDep,
    filter: Literal["all", "mine", "unassigned"] = "all",
    unread: bool = False,
    before: IsoDateTime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """Conversations (leads with messages), newest first, with unread counts. Page with
    `before` = the last conversation's `last_message_at`."""
    return await inbox.conversations(
        session, principal, which=filter, before=before, limit=limit, unread_only=unread
    )


@router.get(
    "/api/v1/leads/{lead_id}/messages",
    response_model=list[MessageOut],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_messages(
    lead_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    before: IsoDateTime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[MessageOut]:
    """The lead's messages, oldest first: the last `limit` (before `before`)."""
    rows = await inbox.messages(session, principal, lead_id, before=before, limit=limit)
    return [message_out(m, files) for m, files in rows]


@router.post(
    "/api/v1/leads/{lead_id}/messages",
    response_model=MessageOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def send_message(
    lead_id: uuid.UUID, body: SendIn, principal: Writer, session: SessionDep
) -> MessageOut:
    """Queue a WhatsApp message (text or template) to the lead through the active provider.
    On the Cloud API, outside the 24-hour window only a template mapped to an approved Meta
    template can be sent (422 `outside_window`). The message starts `pending`; follow its
    `status` (sent → delivered → read, or failed with `failed_reason`)."""
    msg = await whatsapp.send_message(
        session,
        principal,
        lead_id,
        content=body.content,
        template_id=body.template_id,
        reply_to_message_id=body.reply_to_message_id,
    )
    return message_out(msg, [])


@router.post(
    "/api/v1/leads/{lead_id}/messages/read",
    responses=problem_responses(401, 403, 404),
)
async def mark_read(lead_id: uuid.UUID, principal: Writer, session: SessionDep) -> dict[str, int]:
    """Mark the conversation's inbound messages as read (what the whole team's unread counts
    come from: it needs `messages:write`, like answering; a viewer only looks)."""
    return {"read": await whatsapp.mark_conversation_read(session, principal, lead_id)}


@router.get(
    "/api/v1/messages/{message_id}",
    response_model=MessageOut,
    responses=problem_responses(401, 403, 404),
)
async def get_message(message_id: uuid.UUID, principal: Reader, session: SessionDep) -> MessageOut:
    msg, files = await inbox.get_message(session, principal, message_id)
    return message_out(msg, files)


INLINE_TYPES = ("image/jpeg", "image/png", "image/webp", "audio/", "video/")


@router.get(
    "/api/v1/attachments/{attachment_id}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
        **problem_responses(401, 403, 404),
    },
)
async def download_attachment(
    attachment_id: uuid.UUID, principal: Reader, session: SessionDep, settings: SettingsDep
) -> Response:
    """An attachment's file, for members who can see its lead."""
    row = await inbox.attachment(session, principal, attachment_id)
    storage = get_storage(settings)
    inline = row.file_type.startswith(INLINE_TYPES)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
    disposition = "inline" if inline else "attachment"
    path = await asyncio.to_thread(storage.local_path, row.file_url)
    if path is not None:
        return FileResponse(
            path,
            media_type=row.file_type,
            filename=row.file_name,
            content_disposition_type=disposition,
            headers=headers,
        )
    try:
        data = await asyncio.to_thread(storage.read, row.file_url)
    except FileMissing as exc:
        raise NotFound("The attachment's file is missing from storage.") from exc
    quoted = urllib.parse.quote(row.file_name)
    headers["Content-Disposition"] = f"{disposition}; filename*=utf-8''{quoted}"
    return Response(data, media_type=row.file_type, headers=headers)
