"""Exporting a data subject (LGPD art. 18, II and V): everything the organization holds about
one lead, as a zip with ``data.json`` (every row of every tenant table that refers to the
lead, found through the catalog so tables added later are included) and the files
(message attachments under ``attachments/``, call recordings under ``recordings/``).
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core.storage import FileMissing, get_storage

# Tables that refer to a lead but hold nothing about the person (internal bookkeeping).
_SKIP = {"privacy_requests", "report_stage_spans", "report_lead_facts"}

_LEAD_TABLES = text(
    """
    SELECT c.table_name FROM information_schema.columns c
      JOIN information_schema.columns o
        ON o.table_schema = c.table_schema AND o.table_name = c.table_name
       AND o.column_name = 'organization_id'
      JOIN information_schema.tables t
        ON t.table_schema = c.table_schema AND t.table_name = c.table_name
       AND t.table_type = 'BASE TABLE'
     WHERE c.table_schema = 'public' AND c.column_name = 'lead_id'
     ORDER BY c.table_name
    """
)


async def collect(
    session: AsyncSession, organization_id: uuid.UUID, lead_id: uuid.UUID
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The lead's data as JSON-ready rows by table, and the files to add as
    ``(archive name, storage key)``."""
    params = {"org": organization_id, "lead": lead_id}
    data: dict[str, Any] = {}
    lead = (
        await session.execute(
            text(
                "SELECT to_jsonb(l) - 'search_text' - 'board_position' - 'version' FROM leads l"
                " WHERE organization_id = :org AND id = :lead"
            ),
            params,
        )
    ).scalar_one_or_none()
    data["lead"] = lead
    for (table,) in (await session.execute(_LEAD_TABLES)).all():
        if table in _SKIP:
            continue
        rows = await session.execute(
            text(
                f'SELECT to_jsonb(t) FROM "{table}" t'
                " WHERE organization_id = :org AND lead_id = :lead"
            ),
            params,
        )
        found = [r[0] for r in rows]
        if found:
            data[table] = found
    attachments = await session.execute(
        text(
            "SELECT to_jsonb(a) FROM message_attachments a JOIN messages m"
            " ON m.organization_id = a.organization_id AND m.id = a.message_id"
            " WHERE a.organization_id = :org AND m.lead_id = :lead ORDER BY a.id"
        ),
        params,
    )
    data["message_attachments"] = [r[0] for r in attachments]
    trail = await session.execute(
        text(
            "SELECT jsonb_build_object('action', action, 'at', created_at, 'changes', changes)"
            " FROM audit_logs WHERE organization_id = :org AND resource_id = :lead"
            " ORDER BY created_at"
        ),
        params,
    )
    data["audit_trail"] = [r[0] for r in trail]

    files: list[tuple[str, str]] = []
    for attachment in data["message_attachments"]:
        key = str(attachment.get("file_url") or "")
        if key and "://" not in key:
            name = f"attachments/{attachment['id']}-{attachment.get('file_name') or 'file'}"
            files.append((name.replace("..", "_"), key))
    for call in data.get("call_logs", []):
        key = str(call.get("recording_url") or "")
        if key and "://" not in key:
            files.append((f"recordings/{call['id']}{_suffix(key)}", key))
    return data, files


def _suffix(key: str) -> str:
    tail = key.rsplit("/", 1)[-1]
    return "." + tail.rsplit(".", 1)[-1] if "." in tail else ""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def build_zip(
    settings: Settings, data: dict[str, Any], files: list[tuple[str, str]]
) -> tuple[bytes, dict[str, int]]:
    """The archive (blocking: run it in a thread) and what it holds."""
    storage = get_storage(settings)
    buffer = io.BytesIO()
    stored = missing = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, key in files:
            try:
                archive.writestr(name, storage.read(key))
                stored += 1
            except (FileMissing, FileNotFoundError, ValueError):
                missing += 1
        data = {**data, "files": [name for name, _ in files]}
        archive.writestr(
            "data.json",
            json.dumps(data, ensure_ascii=False, indent=2, default=_json_default),
        )
    counts = {table: len(rows) for table, rows in data.items() if isinstance(rows, list)} | {
        "files_stored": stored,
        "files_missing": missing,
    }
    return buffer.getvalue(), counts


async def export_lead(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    lead_id: uuid.UUID,
    key: str,
) -> dict[str, int]:
    """Write the lead's zip to file storage under ``key``; returns what it holds."""
    data, files = await collect(session, organization_id, lead_id)
    archive, counts = await asyncio.to_thread(build_zip, settings, data, files)
    await asyncio.to_thread(get_storage(settings).save, key, archive, "application/zip")
    return counts | {"bytes": len(archive)}


# --- the whole organization ----------------------------------------------------------------

# Secrets and credential hashes never leave in an export (the owner reconnects integrations).
_SECRET_COLUMNS = (
    "access_token",
    "refresh_token",
    "auth_token",
    "api_key",
    "api_key_hash",
    "token_hash",
    "secret_token",
    "pkce_verifier",
    "webhook_verify_token",
    "oauth_state_hash",
    "key_hash",
    "session_id",
    "qr_code_data",
)

_TENANT_TABLES = text(
    """
    SELECT c.table_name FROM information_schema.columns c
      JOIN information_schema.tables t
        ON t.table_schema = c.table_schema AND t.table_name = c.table_name
       AND t.table_type = 'BASE TABLE'
     WHERE c.table_schema = 'public' AND c.column_name = 'organization_id'
     ORDER BY c.table_name
    """
)

_ORG_SKIP = {"background_jobs", "rate_limit_counters", "idempotency_keys", "privacy_requests"}


async def organization_files(session: AsyncSession, organization_id: uuid.UUID) -> list[str]:
    """Every stored file of the organization (attachments, recordings, exports)."""
    rows = await session.execute(
        text(
            "SELECT file_url FROM message_attachments WHERE organization_id = :org"
            " UNION ALL SELECT recording_url FROM call_logs"
            " WHERE organization_id = :org AND recording_url IS NOT NULL"
            " UNION ALL SELECT file_key FROM privacy_requests"
            " WHERE organization_id = :org AND file_key IS NOT NULL"
        ),
        {"org": organization_id},
    )
    return [str(r[0]) for r in rows if r[0] and "://" not in str(r[0])]


async def export_organization(
    session: AsyncSession, settings: Settings, organization_id: uuid.UUID, key: str
) -> dict[str, int]:
    """Every row of every tenant table of the organization (secrets left out) and its
    files, as a zip in file storage under ``key``."""
    params = {"org": organization_id}
    data: dict[str, Any] = {
        "organization": (
            await session.execute(
                text("SELECT to_jsonb(o) FROM organizations o WHERE id = :org"), params
            )
        ).scalar_one_or_none()
    }
    for (table,) in (await session.execute(_TENANT_TABLES)).all():
        if table in _ORG_SKIP:
            continue
        rows = await session.execute(
            text(
                f'SELECT to_jsonb(t) - CAST(:secret AS text[]) FROM "{table}" t'
                " WHERE organization_id = :org"
            ),
            {**params, "secret": list(_SECRET_COLUMNS)},
        )
        data[table] = [r[0] for r in rows]
    files: list[tuple[str, str]] = []
    for attachment in data.get("message_attachments", []):
        file_key = str(attachment.get("file_url") or "")
        if file_key and "://" not in file_key:
            files.append((f"attachments/{attachment['id']}", file_key))
    for call in data.get("call_logs", []):
        file_key = str(call.get("recording_url") or "")
        if file_key and "://" not in file_key:
            files.append((f"recordings/{call['id']}{_suffix(file_key)}", file_key))
    archive, counts = await asyncio.to_thread(build_zip, settings, data, files)
    await asyncio.to_thread(get_storage(settings).save, key, archive, "application/zip")
    return counts | {"bytes": len(archive)}
