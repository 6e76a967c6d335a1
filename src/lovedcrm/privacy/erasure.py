"""Erasing a data subject (LGPD art. 18, VI): the person's data is anonymised everywhere the
organization holds it, while the rows that carry aggregates stay (the lead row, its stage,
value and dates; messages, calls and activities as counted events), so report totals do not
move. See docs/decisions/0011-lgpd-erasure-and-export.md.

Two passes, both in the job's transaction:

1. What belongs to the lead by reference (``lead_id``): the lead's own fields, message
   bodies, call recordings and transcriptions, activity descriptions, meeting notes and
   attendees, AI summaries, attachment files (deleted from storage), consent evidence.
2. A sweep of every text, varchar and JSON column of every tenant table for the person's
   name, e-mail and phone (in the forms they are stored): webhook delivery payloads, queued
   job payloads, analytics events, notifications, AI training data, tables other domains add
   later. The audit trail, append-only for the app, goes through ``lovedcrm_audit_redact``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text

from lovedcrm.config import Settings
from lovedcrm.core.clock import now
from lovedcrm.core.storage import FileMissing, get_storage
from lovedcrm.core.text import erased_address_key

log = structlog.stdlib.get_logger("lovedcrm.privacy")

# Skipped by the sweep: the trail has its own function; these hold no person's data, or
# hold the request itself (whose receipt names no one).
_SWEEP_SKIP = {"audit_logs", "privacy_requests", "alembic_version"}

_COLUMNS = text(
    """
    SELECT c.table_name, c.column_name, c.data_type, c.character_maximum_length
      FROM information_schema.columns c
      JOIN information_schema.columns o
        ON o.table_schema = c.table_schema AND o.table_name = c.table_name
       AND o.column_name = 'organization_id'
      JOIN information_schema.tables t
        ON t.table_schema = c.table_schema AND t.table_name = c.table_name
       AND t.table_type = 'BASE TABLE'
     WHERE c.table_schema = 'public'
       AND c.data_type IN ('text', 'character varying', 'jsonb', 'json')
       AND c.is_generated = 'NEVER'
     ORDER BY c.table_name, c.ordinal_position
    """
)


@dataclass
class ErasureReport:
    lead_id: uuid.UUID
    marker: str
    rows: dict[str, int] = field(default_factory=dict)
    files_deleted: int = 0
    audit_rows_redacted: int = 0
    jobs_cancelled: int = 0

    def receipt(self) -> dict[str, Any]:
        return {
            "lead_id": str(self.lead_id),
            "marker": self.marker,
            "rows_anonymised": dict(sorted(self.rows.items())),
            "files_deleted": self.files_deleted,
            "audit_rows_redacted": self.audit_rows_redacted,
            "jobs_cancelled": self.jobs_cancelled,
        }

    def add(self, table: str, count: int) -> None:
        if count:
            self.rows[table] = self.rows.get(table, 0) + count


def marker_of(lead_id: uuid.UUID) -> str:
    """What replaces the person's name (and any trace of it) after the erasure."""
    return f"[erased:{lead_id.hex[:8]}]"


def search_terms(full_name: str | None, email: str | None, phone: str | None) -> list[str]:
    """The forms in which the person's identifiers may be stored elsewhere."""
    terms: set[str] = set()
    for value in (full_name, email):
        if value and len(value.strip()) >= 3:
            terms.add(value.strip())
    if phone:
        digits = re.sub(r"\D", "", phone)
        terms.add(phone.strip())
        if len(digits) >= 6:
            terms.add(digits)
            terms.add("+" + digits)
            if digits.startswith("55") and len(digits) > 11:
                terms.add(digits[2:])  # the national number, without the country code
    return sorted((t for t in terms if t), key=len, reverse=True)


def pattern_of(terms: list[str]) -> str:
    """One case-insensitive PostgreSQL regular expression matching any term literally."""
    return "|".join(re.escape(t) for t in terms)


_LEAD_OWNED: tuple[tuple[str, str], ...] = (
    (
        "messages",
        "UPDATE messages SET content = CASE WHEN content IS NULL THEN NULL ELSE :marker END,"
        " from_number = NULL, to_number = NULL, contact_name = NULL, ai_summary = NULL,"
        " failed_reason = NULL, metadata = '{}'::jsonb"
        " WHERE organization_id = :org AND lead_id = :lead",
    ),
    (
        "call_logs",
        "UPDATE call_logs SET from_number = NULL, to_number = NULL, recording_url = NULL,"
        " transcription = NULL, metadata = '{}'::jsonb"
        " WHERE organization_id = :org AND lead_id = :lead",
    ),
    (
        "lead_activities",
        "UPDATE lead_activities SET title = :marker, description = NULL,"
        " metadata = '{}'::jsonb WHERE organization_id = :org AND lead_id = :lead",
    ),
    (
        "calendar_events",
        "UPDATE calendar_events SET title = :marker, description = NULL, meeting_url = NULL,"
        " meeting_password = NULL, attendees = '[]'::jsonb, whatsapp_reminder = NULL"
        " WHERE organization_id = :org AND lead_id = :lead",
    ),
    (
        "ai_conversations",
        "UPDATE ai_conversations SET conversation_title = NULL, context_summary = NULL"
        " WHERE organization_id = :org AND lead_id = :lead",
    ),
    (
        "lead_consents",
        "UPDATE lead_consents SET evidence = '{}'::jsonb"
        " WHERE organization_id = :org AND lead_id = :lead",
    ),
)


async def _files_of(session: AsyncSession, org: uuid.UUID, lead: uuid.UUID) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT a.file_url FROM message_attachments a JOIN messages m"
            " ON m.organization_id = a.organization_id AND m.id = a.message_id"
            " WHERE a.organization_id = :org AND m.lead_id = :lead"
            " UNION ALL SELECT recording_url FROM call_logs"
            " WHERE organization_id = :org AND lead_id = :lead AND recording_url IS NOT NULL"
        ),
        {"org": org, "lead": lead},
    )
    return [str(r[0]) for r in rows if r[0] and "://" not in str(r[0])]


async def _sweep(
    session: AsyncSession, org: uuid.UUID, pattern: str, marker: str, report: ErasureReport
) -> None:
    columns = (await session.execute(_COLUMNS)).all()
    for table, column, data_type, max_length in columns:
        if table in _SWEEP_SKIP or column == "organization_id":
            continue
        if max_length is not None and max_length < len(marker):
            continue  # a code or a currency: cannot hold a name, an e-mail or a phone
        is_json = data_type in ("json", "jsonb")
        value = f'"{column}"::text' if is_json else f'"{column}"'
        replaced = f"regexp_replace({value}, :pattern, :marker, 'gi')"
        if is_json:
            replaced = f"({replaced})::{data_type}"
        statement = text(
            f'UPDATE "{table}" SET "{column}" = {replaced}'
            f" WHERE organization_id = :org AND {value} ~* :pattern"
        )
        try:
            async with session.begin_nested():
                result = await session.execute(
                    statement, {"org": org, "pattern": pattern, "marker": marker}
                )
        except Exception as exc:  # a constraint the marker breaks: say so, go on
            log.warning("privacy.sweep_failed", table=table, column=column, error=str(exc))
            report.rows[f"{table}.{column}:failed"] = 1
            continue
        report.add(table, int(getattr(result, "rowcount", 0) or 0))


_REFERENCES = text(
    """
    SELECT CAST(:lead AS text)
    UNION ALL SELECT id::text FROM messages WHERE organization_id = :org AND lead_id = :lead
    UNION ALL SELECT id::text FROM calendar_events
     WHERE organization_id = :org AND lead_id = :lead
    UNION ALL SELECT id::text FROM call_logs WHERE organization_id = :org AND lead_id = :lead
    UNION ALL SELECT id::text FROM ai_conversations
     WHERE organization_id = :org AND lead_id = :lead
    """
)


async def stop_pending(session: AsyncSession, org: uuid.UUID, lead: uuid.UUID) -> int:
    """Make the work queued for the lead send nothing: its outbound messages still waiting
    are failed ("lead erased"; the send job skips a message that is not pending) and every
    queued job whose payload names the lead or one of its messages, meetings, calls or AI
    conversations is failed before it runs. Returns the number of jobs stopped."""
    params = {"org": org, "lead": lead}
    await session.execute(
        text(
            "UPDATE messages SET status = 'failed', failed_reason = 'lead erased'"
            " WHERE organization_id = :org AND lead_id = :lead AND status = 'pending'"
        ),
        params,
    )
    ids = [str(r[0]) for r in await session.execute(_REFERENCES, params)]
    stopped = await session.execute(
        text(
            "UPDATE background_jobs SET status = 'failed', error_message = 'lead erased'"
            " WHERE organization_id = :org AND status IN ('pending', 'retrying')"
            " AND job_type NOT LIKE 'privacy.%'"
            " AND EXISTS (SELECT 1 FROM unnest(:ids) AS i WHERE strpos(job_data::text, i) > 0)"
        ).bindparams(bindparam("ids", type_=ARRAY(Text))),
        {"org": org, "ids": ids},
    )
    return int(getattr(stopped, "rowcount", 0) or 0)


async def erase_lead(
    session: AsyncSession, settings: Settings, organization_id: uuid.UUID, lead_id: uuid.UUID
) -> ErasureReport:
    """Anonymise everything the organization holds about the lead (idempotent: a second run
    finds nothing more). The caller's transaction is tenant-scoped to ``organization_id``."""
    org, lead = organization_id, lead_id
    row = (
        await session.execute(
            text(
                "SELECT full_name, email, phone FROM leads"
                " WHERE organization_id = :org AND id = :lead FOR UPDATE"
            ),
            {"org": org, "lead": lead},
        )
    ).one_or_none()
    marker = marker_of(lead)
    report = ErasureReport(lead_id=lead, marker=marker)
    if row is None:
        return report
    terms = search_terms(row.full_name, row.email, row.phone)
    if row.full_name == marker:
        terms = [t for t in terms if t != marker]

    report.jobs_cancelled = await stop_pending(session, org, lead)

    files = await _files_of(session, org, lead)
    params = {"org": org, "lead": lead, "marker": marker}
    await session.execute(
        text(
            "UPDATE message_attachments a SET file_name = :marker, file_url = '',"
            " provider_media_id = NULL FROM messages m"
            " WHERE a.organization_id = :org AND m.organization_id = a.organization_id"
            " AND m.id = a.message_id AND m.lead_id = :lead"
        ),
        params,
    )
    for table, sql in _LEAD_OWNED:
        result = await session.execute(text(sql), params)
        report.add(table, int(getattr(result, "rowcount", 0) or 0))
    await session.execute(
        text(
            "UPDATE leads SET full_name = :marker, email = NULL, phone = NULL, company = NULL,"
            " job_title = NULL, custom_fields = '{}'::jsonb, lost_reason = NULL,"
            " erased_at = :at WHERE organization_id = :org AND id = :lead"
        ),
        {**params, "at": now()},
    )
    report.add("leads", 1)
    if row.email:
        # The opt-out outlives the person's data: the address becomes its key, which still
        # stops mail to it (an unsubscribe, a bounce, a complaint) and says nothing more.
        # (Already kept for another lead with the same address: the plain row just goes.)
        suppression = {"org": org, "email": row.email, "key": erased_address_key(org, row.email)}
        kept = await session.execute(
            text(
                "UPDATE email_suppressions SET email = :key"
                " WHERE organization_id = :org AND email = lower(:email) AND NOT EXISTS"
                " (SELECT 1 FROM email_suppressions k"
                "   WHERE k.organization_id = :org AND k.email = :key)"
            ),
            suppression,
        )
        await session.execute(
            text(
                "DELETE FROM email_suppressions"
                " WHERE organization_id = :org AND email = lower(:email)"
            ),
            suppression,
        )
        report.add("email_suppressions", int(getattr(kept, "rowcount", 0) or 0))

    if terms:
        await _sweep(session, org, pattern_of(terms), marker, report)
    redacted = await session.execute(
        text("SELECT lovedcrm_audit_redact(:org, :lead, :terms)").bindparams(
            bindparam("terms", type_=ARRAY(Text))
        ),
        {"org": org, "lead": lead, "terms": terms},
    )
    report.audit_rows_redacted = int(redacted.scalar_one() or 0)

    storage = get_storage(settings)
    for key in files:
        try:
            await asyncio.to_thread(storage.delete, key)
            report.files_deleted += 1
        except (FileMissing, FileNotFoundError, OSError):
            continue
    return report
