"""Per-organization retention (``organizations.settings.privacy``): message bodies and call
recordings older than N months, audit rows older than N days, removed by a daily job. The
rows themselves stay (counts and report totals do not move); only the content goes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core.storage import FileStorage, get_storage

MONTH = timedelta(days=30)


async def _delete_files(storage: FileStorage, keys: list[str | None]) -> int:
    """Delete the stored files among ``keys`` (a URL is not ours); how many keys there were."""
    for key in keys:
        if key and "://" not in key:
            await asyncio.to_thread(storage.delete, key)
    return len(keys)


async def apply(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    policy: dict[str, int | None],
    at: datetime,
) -> dict[str, int]:
    """Apply the organization's retention as of ``at``; returns what was removed."""
    params: dict[str, object] = {"org": organization_id}
    result = {"message_bodies": 0, "attachments": 0, "recordings": 0, "audit_rows": 0}
    storage = get_storage(settings)
    months = policy.get("message_retention_months")
    if months:
        params["before"] = at - months * MONTH
        files = await session.execute(
            text(
                "UPDATE message_attachments a SET file_url = ''"
                " FROM message_attachments o JOIN messages m"
                " ON m.organization_id = o.organization_id AND m.id = o.message_id"
                " WHERE o.id = a.id AND a.organization_id = :org"
                " AND m.created_at < :before AND a.file_url <> ''"
                " RETURNING o.file_url"
            ),
            params,
        )
        result["attachments"] = await _delete_files(storage, [k for (k,) in files.all()])
        bodies = await session.execute(
            text(
                "UPDATE messages SET content = NULL, ai_summary = NULL"
                " WHERE organization_id = :org AND created_at < :before"
                " AND (content IS NOT NULL OR ai_summary IS NOT NULL)"
            ),
            params,
        )
        result["message_bodies"] = int(getattr(bodies, "rowcount", 0) or 0)
    months = policy.get("recording_retention_months")
    if months:
        params["before"] = at - months * MONTH
        rows = await session.execute(
            text(
                "UPDATE call_logs c SET recording_url = NULL, transcription = NULL"
                " FROM call_logs o WHERE o.id = c.id AND c.organization_id = :org"
                " AND c.created_at < :before AND c.recording_url IS NOT NULL"
                " RETURNING o.recording_url"
            ),
            params,
        )
        result["recordings"] = await _delete_files(storage, [k for (k,) in rows.all()])
    days = policy.get("audit_retention_days")
    if days:
        purged = await session.scalar(
            text("SELECT lovedcrm_audit_purge(:org, :before)"),
            {"org": organization_id, "before": at - timedelta(days=days)},
        )
        result["audit_rows"] = int(purged or 0)
    return result
