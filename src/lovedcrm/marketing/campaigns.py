"""E-mail campaigns: audiences from lead filters (the leads list's own filter,
``leads.service.list_leads``), subject + HTML + text with variables, preview and test send,
scheduling, sending as throttled bulk jobs, per-recipient status, signed tracking links,
one-click unsubscribe and a suppression list.

Only leads whose latest ``email_marketing`` consent record is granted (any legal basis:
``leads.consent.may_contact``) get a campaign; the others are skipped and counted, as are
suppressed addresses (unsubscribed, hard bounces, complaints).

Sending (``marketing.sending``): ``marketing.campaign_start`` builds the recipients (as the
campaign's author: the leads they see) and queues ``marketing.send_batch``; each batch sends
``BATCH_SIZE`` e-mails over one SMTP connection and queues the next after the throttle's
interval. Every batch job takes ``BULK_PRIORITY``: workers claim every organization's
interactive jobs first, and one campaign has one batch in flight at a time, so it cannot
crowd out other organizations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.emails import valid_email
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.core.text import erased_address_key
from lovedcrm.db.tenant import after_commit, save_new
from lovedcrm.jobs.queue import BULK_PRIORITY, enqueue
from lovedcrm.leads import consent
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.models import Lead
from lovedcrm.marketing import mailer
from lovedcrm.marketing.models import (
    CampaignRecipient,
    EmailCampaign,
    EmailSuppression,
    EmailTrackingEvent,
)
from lovedcrm.organizations.models import Organization

PERMISSION = "settings:manage"
RESULTS_PERMISSION = "reports:read"
BATCH_SIZE = 200
# The most one organization's campaigns send per hour (the throttle between batches).
SEND_RATE_PER_HOUR = 120_000
AUDIENCE_PAGE = 1000
AUDIENCE_LIMIT = 200_000
AUDIENCE_FILTERS = (
    "stage_id",
    "assigned_to",
    "status",
    "source",
    "score_min",
    "score_max",
    "created_after",
    "created_before",
    "q",
)
SUPPRESSION_REASONS = ("unsubscribed", "bounce", "complaint")
_VARIABLE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_HREF = re.compile(r'href\s*=\s*"(https?://[^"]+)"', re.IGNORECASE)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


# --- signed links ------------------------------------------------------------------------------


def _key(settings: Settings) -> bytes:
    return hashlib.sha256(
        b"marketing-links:" + settings.secret_key.get_secret_value().encode()
    ).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(settings: Settings, payload: dict[str, Any]) -> str:
    """A link token: the payload (organization, recipient, kind, and for a click the target
    URL itself — a click can only go where the e-mail pointed, never an open redirect) and its
    HMAC-SHA256."""
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = _b64(hmac.new(_key(settings), body.encode(), "sha256").digest()[:20])
    return f"{body}.{mac}"


def unsign(settings: Settings, token: str) -> dict[str, Any] | None:
    body, _, mac = token.partition(".")
    if not body or not mac or len(token) > 4096:
        return None
    expected = _b64(hmac.new(_key(settings), body.encode(), "sha256").digest()[:20])
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        data = json.loads(_unb64(body))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def link(settings: Settings, kind: str, org: uuid.UUID, recipient: uuid.UUID, url: str = "") -> str:
    base = settings.base_url.rstrip("/")
    payload: dict[str, Any] = {"o": str(org), "r": str(recipient), "k": kind}
    if url:
        payload["u"] = url
    token = sign(settings, payload)
    path = {"open": "o", "click": "c", "unsubscribe": "u"}[kind]
    return f"{base}/m/{path}/{token}"


# --- rendering ---------------------------------------------------------------------------------


@dataclass
class Rendered:
    subject: str
    html: str
    text: str


def variables(lead: Any, org: Organization | None) -> dict[str, str]:
    name = (getattr(lead, "full_name", None) or "").strip()
    first = name.split()[0] if name else ""
    values = {
        "nome": name,
        "name": name,
        "full_name": name,
        "primeiro_nome": first,
        "first_name": first,
        "email": getattr(lead, "email", None) or "",
        "empresa": getattr(lead, "company", None) or "",
        "company": getattr(lead, "company", None) or "",
        "organizacao": org.name if org else "",
        "organization": org.name if org else "",
    }
    return values


def fill(template: str, values: dict[str, str], *, escape: bool) -> str:
    def one(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0)
        return html.escape(value) if escape else value

    return _VARIABLE.sub(one, template)


def render(
    campaign: EmailCampaign,
    lead: Any,
    org: Organization | None,
    *,
    settings: Settings | None = None,
    recipient_id: uuid.UUID | None = None,
) -> Rendered:
    """The campaign for one lead. With a recipient, links are tracked (signed), a pixel is
    added and ``{{unsubscribe_url}}`` is the recipient's one-click link; a footer with it is
    added when the body has none."""
    values = variables(lead, org)
    unsubscribe = "#"
    if settings is not None and recipient_id is not None:
        unsubscribe = link(settings, "unsubscribe", campaign.organization_id, recipient_id)
    values["unsubscribe_url"] = unsubscribe
    body = fill(campaign.html_body, values, escape=True)
    text = fill(campaign.text_body, values, escape=False)
    if settings is not None and recipient_id is not None:
        org_id = campaign.organization_id

        def tracked(match: re.Match[str]) -> str:
            target = html.unescape(match.group(1))
            if target.startswith(settings.base_url.rstrip("/") + "/m/"):
                return match.group(0)
            return f'href="{html.escape(link(settings, "click", org_id, recipient_id, target))}"'

        body = _HREF.sub(tracked, body)
        pixel = link(settings, "open", org_id, recipient_id)
        body += f'<img src="{html.escape(pixel)}" width="1" height="1" alt="">'
    if "unsubscribe_url" not in campaign.html_body:
        body += (
            f'<p style="font-size:12px;color:#666"><a href="{html.escape(unsubscribe)}">'
            "Descadastrar / Unsubscribe</a></p>"
        )
    if "unsubscribe_url" not in campaign.text_body:
        text += f"\n\n--\nDescadastrar / Unsubscribe: {unsubscribe}\n"
    return Rendered(fill(campaign.subject, values, escape=False), body, text)


# --- campaigns ---------------------------------------------------------------------------------


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def clean_audience(raw: dict[str, Any] | None) -> dict[str, Any]:
    audience: dict[str, Any] = {}
    for name, value in (raw or {}).items():
        if name not in AUDIENCE_FILTERS or value in (None, ""):
            continue
        audience[name] = str(value) if not isinstance(value, int | float) else value
    return audience


def _check(values: dict[str, Any]) -> None:
    errors = []
    for name in ("name", "subject", "html_body", "text_body"):
        if name in values and not str(values[name] or "").strip():
            errors.append(_error(name, "required"))
    if errors:
        raise ValidationFailed(
            "The campaign has invalid fields.", code="campaign_invalid", extra={"errors": errors}
        )


async def create_campaign(
    session: AsyncSession, principal: Principal, values: dict[str, Any]
) -> EmailCampaign:
    principal.require(PERMISSION)
    for name in ("name", "subject", "html_body", "text_body"):
        values.setdefault(name, "")
    _check(values)
    row = EmailCampaign(
        id=uuid.uuid4(),
        organization_id=principal.org(),
        name=str(values["name"]).strip()[:255],
        subject=str(values["subject"]).strip()[:255],
        html_body=str(values["html_body"]),
        text_body=str(values["text_body"]),
        audience=clean_audience(values.get("audience")),
        status="draft",
        created_by=principal.user_id,
        created_at=clock.now(),
    )
    await save_new(session, row)
    await audit.record_by(
        session,
        principal,
        action="create",
        resource_type="email_campaign",
        resource_id=row.id,
        changes={"name": row.name, "subject": row.subject, "audience": row.audience},
    )
    return row


async def list_campaigns(session: AsyncSession, principal: Principal) -> list[EmailCampaign]:
    principal.require(RESULTS_PERMISSION)
    query = (
        select(EmailCampaign)
        .where(EmailCampaign.organization_id == principal.org())
        .order_by(EmailCampaign.created_at.desc(), EmailCampaign.id)
        .limit(500)
    )
    return list((await session.execute(query)).scalars())


async def get_campaign(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID
) -> EmailCampaign:
    principal.require(RESULTS_PERMISSION)
    return await get_in_org(
        session,
        EmailCampaign,
        campaign_id,
        principal,
        NotFound("No campaign with that id.", code="campaign_not_found"),
    )


async def update_campaign(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID, values: dict[str, Any]
) -> EmailCampaign:
    principal.require(PERMISSION)
    row = await get_campaign(session, principal, campaign_id)
    if row.status not in ("draft", "scheduled"):
        raise Conflict("A campaign being sent or sent cannot change.", code="campaign_locked")
    _check(values)
    before = {"name": row.name, "subject": row.subject, "audience": row.audience}
    for name in ("name", "subject"):
        if values.get(name) is not None:
            setattr(row, name, str(values[name]).strip()[:255])
    for name in ("html_body", "text_body"):
        if values.get(name) is not None:
            setattr(row, name, str(values[name]))
    if values.get("audience") is not None:
        row.audience = clean_audience(values["audience"])
    await session.flush()
    await audit.record_by(
        session,
        principal,
        action="update",
        resource_type="email_campaign",
        resource_id=row.id,
        changes=audit.diff(
            before, {"name": row.name, "subject": row.subject, "audience": row.audience}
        ),
    )
    return row


async def audience_leads(
    session: AsyncSession, principal: Principal, audience: dict[str, Any], *, limit: int
) -> list[Any]:
    """The leads a filter selects, as the leads list selects them (the principal's leads),
    with their e-mail, name and company."""
    filters: dict[str, Any] = {}
    for name, value in audience.items():
        if name in ("stage_id", "assigned_to"):
            try:
                filters[name] = uuid.UUID(str(value))
            except ValueError:
                continue
        elif name in ("score_min", "score_max"):
            filters[name] = int(value)
        elif name in ("created_after", "created_before"):
            filters[name] = datetime.fromisoformat(str(value))
        else:
            filters[name] = str(value)
    rows: list[Any] = []
    cursor = None
    while len(rows) < limit:
        page = await leads_service.list_leads(
            session,
            principal,
            limit=min(AUDIENCE_PAGE, limit - len(rows)),
            cursor=cursor,
            columns=("full_name", "email", "company"),
            **filters,
        )
        rows.extend(page.items)
        cursor = page.next_cursor
        if not cursor:
            break
    return rows


async def audience_count(
    session: AsyncSession, principal: Principal, audience: dict[str, Any]
) -> dict[str, int]:
    """How many leads the filter selects, how many have an e-mail, and how many of those
    may be contacted (consent, not suppressed)."""
    rows = await audience_leads(session, principal, audience, limit=AUDIENCE_LIMIT)
    with_email = [r for r in rows if r.email]
    allowed = await consent.may_contact(
        session, principal.org(), [r.id for r in with_email], "email_marketing"
    )
    blocked = await suppressed(session, principal.org(), {r.email.lower() for r in with_email})
    sendable = [r for r in with_email if r.id in allowed and r.email.lower() not in blocked]
    return {"leads": len(rows), "with_email": len(with_email), "sendable": len(sendable)}


async def suppressed(
    session: AsyncSession, organization_id: uuid.UUID, emails: set[str]
) -> set[str]:
    if not emails:
        return set()
    # An erased person's address is kept as its key (``erased_address_key``): still matched.
    keys = {erased_address_key(organization_id, e): e for e in emails}
    found: set[str] = set()
    ordered = sorted(emails | set(keys))
    for start in range(0, len(ordered), 5000):
        chunk = ordered[start : start + 5000]
        found.update(
            keys.get(value, value)
            for value in (
                await session.execute(
                    select(EmailSuppression.email).where(
                        EmailSuppression.organization_id == organization_id,
                        EmailSuppression.email.in_(chunk),
                    )
                )
            ).scalars()
        )
    return found


async def preview(
    session: AsyncSession,
    principal: Principal,
    campaign_id: uuid.UUID,
    lead_id: uuid.UUID | None = None,
) -> Rendered:
    """The campaign as one lead of its audience (or the given lead) would read it."""
    row = await get_campaign(session, principal, campaign_id)
    org = await session.get(Organization, principal.org())
    lead: Any
    if lead_id is not None:
        lead = await leads_service.get_lead(session, principal, lead_id)
    else:
        found = await audience_leads(session, principal, row.audience, limit=1)
        lead = found[0] if found else _Sample()
    return render(row, lead, org)


@dataclass
class _Sample:
    full_name: str = "Maria Silva"
    email: str = "maria@example.com"
    company: str = "Exemplo Ltda"


async def test_send(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    campaign_id: uuid.UUID,
    to: str,
) -> None:
    """The campaign, with a sample lead's values, to one address (after the commit)."""
    principal.require(PERMISSION)
    to = valid_email(to)
    rendered = await preview(session, principal, campaign_id)
    item = mailer.Outgoing(
        key=f"test-{uuid.uuid4().hex[:12]}",
        to=to,
        subject=f"[TESTE] {rendered.subject}",
        text=rendered.text,
        html=rendered.html,
        unsubscribe_url=f"{settings.base_url.rstrip('/')}/m/u/test",
    )

    async def send() -> None:
        await mailer.send_many(settings, [item])

    after_commit(session, send)


async def schedule(
    session: AsyncSession,
    principal: Principal,
    campaign_id: uuid.UUID,
    when: datetime | None = None,
) -> EmailCampaign:
    """Send now (``when`` None) or at ``when``."""
    principal.require(PERMISSION)
    row = await get_campaign(session, principal, campaign_id)
    if row.status not in ("draft", "scheduled"):
        raise Conflict("This campaign was already sent.", code="campaign_locked")
    now = clock.now()
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    at = when if when is not None and when > now else now
    row.status = "scheduled"
    row.scheduled_for = at
    await session.flush()
    await enqueue(
        session,
        "marketing.campaign_start",
        {"campaign_id": row.id, "scheduled_for": at},
        organization_id=row.organization_id,
        scheduled_for=at,
        priority=BULK_PRIORITY,
    )
    await audit.record_by(
        session,
        principal,
        action="update",
        resource_type="email_campaign",
        resource_id=row.id,
        changes={"status": ["draft", "scheduled"], "scheduled_for": at.isoformat()},
    )
    return row


async def cancel(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID
) -> EmailCampaign:
    principal.require(PERMISSION)
    row = await get_campaign(session, principal, campaign_id)
    if row.status not in ("scheduled", "sending"):
        raise Conflict(
            "Only a scheduled or sending campaign can be cancelled.", code="campaign_locked"
        )
    row.status = "cancelled"
    await session.execute(
        update(CampaignRecipient)
        .where(CampaignRecipient.campaign_id == row.id, CampaignRecipient.status == "queued")
        .values(status="cancelled")
    )
    await session.flush()
    return row


# --- suppressions and tracking -----------------------------------------------------------------


async def suppress(
    session: AsyncSession,
    organization_id: uuid.UUID,
    email: str,
    reason: str,
    campaign_id: uuid.UUID | None = None,
) -> None:
    await session.execute(
        insert(EmailSuppression)
        .values(
            organization_id=organization_id,
            email=email.strip().lower()[:255],
            reason=reason,
            campaign_id=campaign_id,
            created_at=clock.now(),
        )
        .on_conflict_do_nothing(constraint="uq_email_suppressions_email")
    )


async def list_suppressions(session: AsyncSession, principal: Principal) -> list[EmailSuppression]:
    principal.require(PERMISSION)
    query = (
        select(EmailSuppression)
        .where(EmailSuppression.organization_id == principal.org())
        .order_by(EmailSuppression.created_at.desc())
        .limit(1000)
    )
    return list((await session.execute(query)).scalars())


async def report_event(session: AsyncSession, principal: Principal, email: str, kind: str) -> int:
    """A bounce, a complaint or a reply reported for an address (a mail provider's
    notification, or by hand): bounces and complaints suppress it; each marks the address's
    latest recipient. Returns how many recipients were marked."""
    principal.require(PERMISSION)
    email = email.strip().lower()
    if kind in ("bounce", "complaint"):
        await suppress(session, principal.org(), email, kind)
    recipient = (
        await session.execute(
            select(CampaignRecipient)
            .where(
                CampaignRecipient.organization_id == principal.org(),
                CampaignRecipient.email == email,
                CampaignRecipient.sent_at.is_not(None),
            )
            .order_by(CampaignRecipient.sent_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if recipient is None:
        return 0
    now = clock.now()
    if kind == "bounce":
        recipient.status, recipient.bounced_at = "bounced", recipient.bounced_at or now
    elif kind == "reply":
        recipient.replied_at = recipient.replied_at or now
    session.add(
        EmailTrackingEvent(
            organization_id=principal.org(), recipient_id=recipient.id, kind=kind, created_at=now
        )
    )
    await session.flush()
    return 1


async def track(
    session: AsyncSession,
    organization_id: uuid.UUID,
    recipient_id: uuid.UUID,
    kind: str,
    url: str | None = None,
) -> CampaignRecipient | None:
    """An open or a click of a recipient (a click also counts as an open)."""
    recipient = await session.get(CampaignRecipient, recipient_id)
    if recipient is None or recipient.organization_id != organization_id:
        return None
    now = clock.now()
    if kind in ("open", "click") and recipient.opened_at is None:
        recipient.opened_at = now
    if kind == "click" and recipient.clicked_at is None:
        recipient.clicked_at = now
    session.add(
        EmailTrackingEvent(
            organization_id=organization_id,
            recipient_id=recipient.id,
            kind=kind,
            url=(url or None) and url[:2000],
            created_at=now,
        )
    )
    await session.flush()
    return recipient


async def unsubscribe(
    session: AsyncSession,
    organization_id: uuid.UUID,
    recipient_id: uuid.UUID,
    *,
    source_ip: str | None,
) -> CampaignRecipient | None:
    """One-click unsubscribe: the address is suppressed, the recipient marked, and the
    lead's ``email_marketing`` consent recorded as withdrawn (source ``unsubscribe``)."""
    recipient = await session.get(CampaignRecipient, recipient_id)
    if recipient is None or recipient.organization_id != organization_id:
        return None
    if recipient.unsubscribed_at is not None:
        return recipient
    now = clock.now()
    recipient.unsubscribed_at = now
    await suppress(session, organization_id, recipient.email, "unsubscribed", recipient.campaign_id)
    session.add(
        EmailTrackingEvent(
            organization_id=organization_id,
            recipient_id=recipient.id,
            kind="unsubscribe",
            created_at=now,
        )
    )
    await session.flush()
    await consent.record(
        session,
        organization_id=organization_id,
        lead_id=recipient.lead_id,
        purpose="email_marketing",
        legal_basis="consent",
        status="withdrawn",
        source="unsubscribe",
        evidence={"campaign_id": str(recipient.campaign_id), "ip": source_ip},
    )
    return recipient


# --- results -----------------------------------------------------------------------------------

RESULT_KEYS = (
    "recipients",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "replied",
    "unsubscribed",
    "bounced",
    "failed",
    "converted",
    "skipped_no_consent",
    "skipped_suppressed",
)


async def results(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID
) -> dict[str, int]:
    row = await get_campaign(session, principal, campaign_id)
    r = CampaignRecipient

    def count(condition: Any) -> Any:
        return func.count().filter(condition)

    converted = and_(
        Lead.converted_at.is_not(None), r.sent_at.is_not(None), Lead.converted_at >= r.sent_at
    )
    found = (
        await session.execute(
            select(
                func.count(),
                count(r.sent_at.is_not(None)),
                count(and_(r.sent_at.is_not(None), r.bounced_at.is_(None))),
                count(r.opened_at.is_not(None)),
                count(r.clicked_at.is_not(None)),
                count(r.replied_at.is_not(None)),
                count(r.unsubscribed_at.is_not(None)),
                count(r.bounced_at.is_not(None)),
                count(r.status == "failed"),
                func.coalesce(func.sum(case((converted, 1), else_=0)), 0),
            )
            .select_from(r)
            .outerjoin(Lead, and_(Lead.id == r.lead_id, Lead.organization_id == r.organization_id))
            .where(r.organization_id == row.organization_id, r.campaign_id == row.id)
        )
    ).one()
    out = dict(zip(RESULT_KEYS[:10], (int(v or 0) for v in found), strict=True))
    out["skipped_no_consent"] = row.skipped_no_consent
    out["skipped_suppressed"] = row.skipped_suppressed
    return out


def safe_target(url: Any) -> str | None:
    """A click's target, from the signed payload: http(s) only."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None
