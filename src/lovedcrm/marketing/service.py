"""Lead-ads integrations (``marketing_integrations``): Facebook Lead Ads Pages and Google Ads
lead forms; their secrets, their form mappings, and the ad leads they bring in.

Secrets (the Page token in ``access_token``; the app secret, the verify token and the
``google_key`` in ``config_data``) are encrypted with ``SecretBox`` bound to the organization
and the field, and never returned: they are shown masked. Everything here needs
``settings:manage``; the webhook intake (``marketing.webhooks``) and the jobs act without a
principal.

An ad lead goes into the pipeline through the leads' duplicate rule (an existing lead that is
the same person gets the attribution, no new lead) and the leads service (the assignment rule,
the first stage, the audit, ``lead.created``), as the member who connected the integration.
Its attribution (campaign, ad set, ad) is kept on its receipt (``ad_lead_receipts``).
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.authentication import principal_for_member
from lovedcrm.config import Settings
from lovedcrm.core import clock, outbound
from lovedcrm.core.errors import AppError, NotFound, ValidationFailed
from lovedcrm.core.lookup import get_in_org
from lovedcrm.core.principal import Principal
from lovedcrm.core.security import SecretBox, mask_secret
from lovedcrm.db.tenant import save_new
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import consent, dedup
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.access import organization_settings, region_of
from lovedcrm.leads.models import Lead
from lovedcrm.marketing.graph import AdLead
from lovedcrm.marketing.models import AdFormMapping, AdLeadReceipt, MarketingIntegration
from lovedcrm.messaging import templates as templates_service
from lovedcrm.messaging import whatsapp

PERMISSION = "settings:manage"
PROVIDERS = ("facebook", "google")
SOURCES = {"facebook": "facebook_ads", "google": "google_ads"}
SECRET_FIELDS = {"facebook": ("app_secret", "verify_token"), "google": ("google_key",)}
# Lead fields an ad form's field may fill; "custom:<key>" fills a custom field, "consent"
# records an e-mail marketing consent when the answer is yes, "ignore" drops it.
LEAD_TARGETS = ("full_name", "first_name", "last_name", "email", "phone", "company", "job_title")
DEFAULT_MAPPING = {
    "full_name": "full_name",
    "name": "full_name",
    "first_name": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "family_name": "last_name",
    "email": "email",
    "work_email": "email",
    "phone_number": "phone",
    "phone": "phone",
    "work_phone": "phone",
    "company_name": "company",
    "company": "company",
    "job_title": "job_title",
}
YES = frozenset({"yes", "sim", "true", "1", "on", "y", "s", "aceito", "i agree", "concordo"})


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.encryption_key.get_secret_value())


def _context(org_id: uuid.UUID, name: str) -> str:
    return f"marketing_integrations:{org_id}:{name}"


def secret(settings: Settings, org_id: uuid.UUID, name: str, stored: Any) -> str | None:
    if not stored:
        return None
    return _box(settings).decrypt(str(stored), context=_context(org_id, name))


def access_token(settings: Settings, row: MarketingIntegration) -> str | None:
    return secret(settings, row.organization_id, "access_token", row.access_token)


def webhook_url(settings: Settings, integration_id: uuid.UUID) -> str:
    return f"{settings.base_url.rstrip('/')}/webhooks/marketing/{integration_id}"


def integration_out(settings: Settings, row: MarketingIntegration) -> dict[str, Any]:
    data = dict(row.config_data or {})
    masked = {
        name: mask_secret(secret(settings, row.organization_id, name, data.get(name)))
        for name in SECRET_FIELDS.get(row.provider, ())
    }
    return {
        "id": row.id,
        "provider": row.provider,
        "account_id": row.account_id,
        "account_name": row.account_name,
        "access_token": mask_secret(access_token(settings, row)),
        "graph_base_url": data.get("graph_base_url"),
        "ad_account_id": data.get("ad_account_id"),
        "welcome_template_id": data.get("welcome_template_id"),
        "secrets": masked,
        "webhook_url": webhook_url(settings, row.id),
        "sync_status": row.sync_status,
        "sync_error": row.sync_error,
        "last_sync_at": row.last_sync_at,
        "created_at": row.created_at,
    }


async def list_integrations(
    session: AsyncSession, principal: Principal
) -> list[MarketingIntegration]:
    principal.require(PERMISSION)
    query = (
        select(MarketingIntegration)
        .where(MarketingIntegration.organization_id == principal.org())
        .order_by(MarketingIntegration.created_at, MarketingIntegration.id)
    )
    return list((await session.execute(query)).scalars())


async def get_integration(
    session: AsyncSession, principal: Principal, integration_id: uuid.UUID
) -> MarketingIntegration:
    principal.require(PERMISSION)
    return await get_in_org(
        session,
        MarketingIntegration,
        integration_id,
        principal,
        NotFound("No marketing integration with that id.", code="marketing_integration_not_found"),
    )


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


async def _check_template(
    session: AsyncSession, principal: Principal, template_id: Any, errors: list[dict[str, str]]
) -> str | None:
    if not template_id:
        return None
    try:
        found = await templates_service.get_template(
            session, principal, uuid.UUID(str(template_id))
        )
    except (ValueError, NotFound):
        found = None
    if found is None or not found.is_active:
        errors.append(_error("welcome_template_id", "no active template with that id"))
        return None
    return str(found.id)


async def connect(
    session: AsyncSession, settings: Settings, principal: Principal, values: dict[str, Any]
) -> MarketingIntegration:
    """A new integration: a Facebook Page (page id, Page token, app secret, verify token) or
    a Google Ads lead form webhook (its key)."""
    principal.require(PERMISSION)
    provider = values.get("provider")
    if provider not in PROVIDERS:
        raise ValidationFailed(
            "Unknown marketing provider.",
            code="marketing_provider_unknown",
            extra={"errors": [_error("provider", "facebook or google")]},
        )
    row = MarketingIntegration(
        id=uuid.uuid4(),
        organization_id=principal.org(),
        provider=provider,
        config_data={"connected_by": str(principal.user_id)},
        sync_status="active",
    )
    await _apply(session, settings, principal, row, values, creating=True)
    await save_new(session, row)
    await audit.record_by(
        session,
        principal,
        action="create",
        resource_type="marketing_integration",
        resource_id=row.id,
        changes={"provider": provider, "account_id": row.account_id},
    )
    return row


async def update(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    integration_id: uuid.UUID,
    values: dict[str, Any],
) -> MarketingIntegration:
    row = await get_integration(session, principal, integration_id)
    await _apply(session, settings, principal, row, values, creating=False)
    await session.flush()
    await audit.record_by(
        session,
        principal,
        action="update",
        resource_type="marketing_integration",
        resource_id=row.id,
        changes={
            k: "***" if k in ("access_token", *SECRET_FIELDS[row.provider]) else v
            for k, v in values.items()
            if v is not None
        },
    )
    return row


async def _apply(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    row: MarketingIntegration,
    values: dict[str, Any],
    *,
    creating: bool,
) -> None:
    errors: list[dict[str, str]] = []
    org = principal.org()
    data = dict(row.config_data or {})
    box = _box(settings)
    if row.provider == "facebook":
        for name in ("page_id", "access_token", "app_secret", "verify_token"):
            if creating and not values.get(name):
                errors.append(_error(name, "required"))
        if values.get("page_id"):
            row.account_id = str(values["page_id"]).strip()[:255]
        if values.get("graph_base_url"):
            try:
                data["graph_base_url"] = outbound.check_url(
                    outbound.policy(settings), str(values["graph_base_url"]).strip()
                )
            except outbound.UrlProblem as exc:
                errors.append(_error("graph_base_url", exc.message))
        if values.get("ad_account_id"):
            data["ad_account_id"] = str(values["ad_account_id"]).strip()[:100]
        if values.get("access_token"):
            row.access_token = box.encrypt(
                str(values["access_token"]), context=_context(org, "access_token")
            )
    elif creating and not values.get("google_key"):
        errors.append(_error("google_key", "required"))
    if values.get("account_name"):
        row.account_name = str(values["account_name"]).strip()[:255]
    for name in SECRET_FIELDS[row.provider]:
        if values.get(name):
            data[name] = box.encrypt(str(values[name]), context=_context(org, name))
    if "welcome_template_id" in values:
        data["welcome_template_id"] = await _check_template(
            session, principal, values.get("welcome_template_id"), errors
        )
    if errors:
        raise ValidationFailed(
            "The integration has invalid fields.",
            code="marketing_integration_invalid",
            extra={"errors": errors},
        )
    row.config_data = data


async def disconnect(
    session: AsyncSession, principal: Principal, integration_id: uuid.UUID
) -> None:
    row = await get_integration(session, principal, integration_id)
    await session.delete(row)
    await session.flush()
    await audit.record_by(
        session,
        principal,
        action="delete",
        resource_type="marketing_integration",
        resource_id=integration_id,
        changes={"provider": row.provider},
    )


# --- the webhook's checks ---------------------------------------------------------------------


def verify_challenge(
    settings: Settings, organization_id: uuid.UUID, config: dict[str, Any], token: str
) -> bool:
    expected = secret(settings, organization_id, "verify_token", config.get("verify_token"))
    return expected is not None and hmac.compare_digest(expected.encode(), token.encode())


def verify_signature(
    settings: Settings, organization_id: uuid.UUID, config: dict[str, Any], header: str, body: bytes
) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>``."""
    app_secret = secret(settings, organization_id, "app_secret", config.get("app_secret"))
    if not app_secret or not header.startswith("sha256="):
        return False
    digest = hmac.new(app_secret.encode(), body, "sha256").hexdigest()
    return hmac.compare_digest(digest, header.removeprefix("sha256=").strip().lower())


def verify_google_key(
    settings: Settings, organization_id: uuid.UUID, config: dict[str, Any], given: Any
) -> bool:
    expected = secret(settings, organization_id, "google_key", config.get("google_key"))
    if expected is None or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


# --- receipts ---------------------------------------------------------------------------------


async def store_receipts(
    session: AsyncSession,
    organization_id: uuid.UUID,
    integration_id: uuid.UUID,
    provider: str,
    leads: list[AdLead],
) -> int:
    """Each ad lead once (a replay, a retry or the backfill finds it) and a job to bring the
    new ones in. Returns how many were new."""
    new = 0
    for lead in leads:
        if not lead.provider_lead_id:
            continue
        stored = (
            await session.execute(
                insert(AdLeadReceipt)
                .values(
                    organization_id=organization_id,
                    integration_id=integration_id,
                    provider=provider,
                    provider_lead_id=lead.provider_lead_id[:255],
                    form_id=lead.form_id,
                    campaign_id=lead.campaign_id,
                    campaign_name=lead.campaign_name,
                    adset_id=lead.adset_id,
                    ad_id=lead.ad_id,
                    is_test=lead.is_test,
                    status="pending",
                    fields=lead.fields,
                    created_at=clock.now(),
                )
                .on_conflict_do_nothing(constraint="uq_ad_lead_receipts_lead")
                .returning(AdLeadReceipt.id)
            )
        ).scalar_one_or_none()
        if stored is None:
            continue
        new += 1
        await enqueue(
            session,
            "marketing.import_lead",
            {"receipt_id": stored},
            organization_id=organization_id,
        )
    return new


def google_lead(body: dict[str, Any]) -> AdLead:
    fields: dict[str, str] = {}
    for item in body.get("user_column_data") or []:
        if not isinstance(item, dict):
            continue
        name = item.get("column_id") or item.get("column_name")
        if name:
            fields[str(name).lower()[:100]] = str(item.get("string_value") or "")[:1000]
    campaign = body.get("campaign_id")
    return AdLead(
        provider_lead_id=str(body.get("lead_id") or "")[:255],
        form_id=None if body.get("form_id") is None else str(body["form_id"])[:255],
        campaign_id=None if campaign is None else str(campaign)[:255],
        campaign_name=None,
        adset_id=None if body.get("adgroup_id") is None else str(body["adgroup_id"])[:255],
        ad_id=None if body.get("creative_id") is None else str(body["creative_id"])[:255],
        fields=fields,
        is_test=body.get("is_test") is True,
    )


# --- mapping ----------------------------------------------------------------------------------


async def form_mapping(
    session: AsyncSession,
    organization_id: uuid.UUID,
    integration_id: uuid.UUID,
    form_id: str | None,
) -> AdFormMapping | None:
    if not form_id:
        return None
    query = select(AdFormMapping).where(
        AdFormMapping.organization_id == organization_id,
        AdFormMapping.integration_id == integration_id,
        AdFormMapping.form_id == form_id,
    )
    return (await session.execute(query)).scalar_one_or_none()


@dataclass
class Mapped:
    lead: dict[str, Any]
    consent_text: str | None


def apply_mapping(fields: dict[str, str], mapping: dict[str, Any]) -> Mapped:
    """An ad form's answers as lead values: the form's mapping first, then the usual names."""
    lead: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    consent_text: str | None = None
    first = last = None
    for name, value in fields.items():
        target = mapping.get(name) or DEFAULT_MAPPING.get(name.lower())
        value = value.strip()
        if not target or target == "ignore" or not value:
            continue
        if target == "consent":
            if value.lower() in YES:
                consent_text = f"{name}: {value}"
        elif target.startswith("custom:"):
            custom[target.removeprefix("custom:")] = value
        elif target == "first_name":
            first = value
        elif target == "last_name":
            last = value
        elif target in LEAD_TARGETS:
            lead[target] = value[:255]
    if "full_name" not in lead and (first or last):
        lead["full_name"] = " ".join(p for p in (first, last) if p)[:255]
    if custom:
        lead["custom_fields"] = custom
    return Mapped(lead, consent_text)


async def save_mapping(
    session: AsyncSession,
    principal: Principal,
    integration_id: uuid.UUID,
    form_id: str,
    mapping: dict[str, str],
) -> AdFormMapping:
    row = await get_integration(session, principal, integration_id)
    bad = [
        name
        for name, target in mapping.items()
        if target not in (*LEAD_TARGETS, "consent", "ignore") and not target.startswith("custom:")
    ]
    if bad:
        raise ValidationFailed(
            "Unknown mapping target.",
            code="marketing_mapping_invalid",
            extra={"errors": [_error(name, "unknown target") for name in bad]},
        )
    found = await form_mapping(session, principal.org(), row.id, form_id)
    if found is None:
        found = AdFormMapping(
            organization_id=principal.org(), integration_id=row.id, form_id=form_id
        )
        session.add(found)
    found.mapping = {k: v for k, v in mapping.items() if v}
    found.updated_at = clock.now()
    await session.flush()
    await audit.record_by(
        session,
        principal,
        action="update",
        resource_type="ad_form_mapping",
        resource_id=found.id,
        changes={"form_id": form_id, "mapping": found.mapping},
    )
    return found


async def forms(
    session: AsyncSession, principal: Principal, integration_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The forms an integration has seen (from its receipts and mappings), with a sample of
    their fields and their mapping."""
    row = await get_integration(session, principal, integration_id)
    seen = (
        await session.execute(
            select(AdLeadReceipt.form_id, func.count())
            .where(
                AdLeadReceipt.organization_id == principal.org(),
                AdLeadReceipt.integration_id == row.id,
                AdLeadReceipt.form_id.is_not(None),
            )
            .group_by(AdLeadReceipt.form_id)
        )
    ).all()
    out: dict[str, dict[str, Any]] = {
        str(form): {"form_id": str(form), "leads": int(n), "mapping": {}, "sample": {}}
        for form, n in seen
    }
    for form_id in out:
        sample = (
            await session.execute(
                select(AdLeadReceipt.fields)
                .where(
                    AdLeadReceipt.organization_id == principal.org(),
                    AdLeadReceipt.integration_id == row.id,
                    AdLeadReceipt.form_id == form_id,
                )
                .order_by(AdLeadReceipt.created_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        out[form_id]["sample"] = dict(sample or {})
    mappings = (
        await session.execute(
            select(AdFormMapping).where(
                AdFormMapping.organization_id == principal.org(),
                AdFormMapping.integration_id == row.id,
            )
        )
    ).scalars()
    for m in mappings:
        entry = out.setdefault(m.form_id, {"form_id": m.form_id, "leads": 0, "sample": {}})
        entry["mapping"] = dict(m.mapping or {})
    for entry in out.values():
        entry["preview"] = apply_mapping(
            {k: str(v) for k, v in entry["sample"].items()}, entry["mapping"]
        ).lead
    return sorted(out.values(), key=lambda e: e["form_id"])


# --- into the pipeline ------------------------------------------------------------------------


async def import_receipt(
    session: AsyncSession, settings: Settings, receipt: AdLeadReceipt, row: MarketingIntegration
) -> dict[str, Any]:
    """A fetched ad lead into the pipeline: the same person → the existing lead; otherwise a
    new one (duplicate rule, assignment rule, first stage), a consent when the form carries
    one, and the optional WhatsApp welcome."""
    if receipt.is_test:
        receipt.status = "test"
        return {"test": True}
    saved = await form_mapping(session, receipt.organization_id, row.id, receipt.form_id)
    mapped = apply_mapping(dict(receipt.fields or {}), dict(saved.mapping) if saved else {})
    data = mapped.lead
    if saved is None and receipt.form_id:
        await _remember_sample(session, receipt)
    data.setdefault(
        "full_name", data.get("email") or data.get("phone") or f"Lead {receipt.provider_lead_id}"
    )
    org_settings = await organization_settings(session, receipt.organization_id)
    contact = dedup.Contact.from_values(data, region_of(org_settings))
    found = await dedup.find_duplicates(session, receipt.organization_id, contact)
    created = False
    if found:
        lead = found[0][0]
    else:
        connected_by = (row.config_data or {}).get("connected_by")
        principal = (
            await principal_for_member(session, row.organization_id, uuid.UUID(connected_by))
            if connected_by
            else None
        )
        if principal is None:
            raise ValidationFailed(
                "The member who connected this integration is no longer active.",
                code="marketing_connector_gone",
            )
        data["source"] = SOURCES[row.provider]
        data["allow_duplicate"] = True
        lead = await leads_service.create_lead(session, principal, data)
        created = True
    receipt.lead_id = lead.id
    receipt.status = "imported"
    result: dict[str, Any] = {"lead_id": str(lead.id), "created": created}
    if mapped.consent_text:
        await consent.record(
            session,
            organization_id=receipt.organization_id,
            lead_id=lead.id,
            purpose="email_marketing",
            legal_basis="consent",
            status="granted",
            source=f"ads:{row.provider}",
            evidence={
                "form_id": receipt.form_id,
                "provider_lead_id": receipt.provider_lead_id,
                "text": mapped.consent_text[:500],
            },
        )
    template_id = (row.config_data or {}).get("welcome_template_id")
    if created and template_id and lead.phone:
        result["welcome"] = await _welcome(session, lead, uuid.UUID(template_id), row)
    return result


async def _remember_sample(session: AsyncSession, receipt: AdLeadReceipt) -> None:
    """A form seen for the first time gets an empty mapping holding its fields as a sample,
    for the mapping screen's preview."""
    assert receipt.form_id is not None
    await session.execute(
        insert(AdFormMapping)
        .values(
            organization_id=receipt.organization_id,
            integration_id=receipt.integration_id,
            form_id=receipt.form_id,
            mapping={},
            sample=dict(receipt.fields or {}),
            updated_at=clock.now(),
        )
        .on_conflict_do_nothing(constraint="uq_ad_form_mappings_form")
    )


async def _welcome(
    session: AsyncSession, lead: Lead, template_id: uuid.UUID, row: MarketingIntegration
) -> str:
    """The WhatsApp welcome template, queued through messaging as the lead's owner (else the
    member who connected the integration)."""
    sender = lead.assigned_to or uuid.UUID(str((row.config_data or {}).get("connected_by")))
    principal = await principal_for_member(session, lead.organization_id, sender)
    if principal is None:
        return "skipped: no active member to send as"
    try:
        message = await whatsapp.send_message(
            session, principal, lead.id, template_id=template_id, context_type="ad_welcome"
        )
    except AppError as exc:
        return f"failed: {exc.code}"
    return str(message.id)


async def mark_error(row: MarketingIntegration, message: str) -> None:
    row.sync_status = "error"
    row.sync_error = message[:1000]


async def receipts(
    session: AsyncSession,
    principal: Principal,
    *,
    campaign_id: str | None = None,
    integration_id: uuid.UUID | None = None,
    limit: int = 100,
) -> list[AdLeadReceipt]:
    """The ad leads received, newest first (``reports:read``): filter by campaign."""
    principal.require("reports:read")
    query = select(AdLeadReceipt).where(AdLeadReceipt.organization_id == principal.org())
    if campaign_id:
        query = query.where(AdLeadReceipt.campaign_id == campaign_id)
    if integration_id:
        query = query.where(AdLeadReceipt.integration_id == integration_id)
    query = query.order_by(AdLeadReceipt.created_at.desc(), AdLeadReceipt.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def attribution(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID
) -> list[AdLeadReceipt]:
    """The ad leads that became (or matched) a lead the principal can see."""
    await leads_service.get_lead(session, principal, lead_id)
    query = (
        select(AdLeadReceipt)
        .where(AdLeadReceipt.organization_id == principal.org(), AdLeadReceipt.lead_id == lead_id)
        .order_by(AdLeadReceipt.created_at)
    )
    return list((await session.execute(query)).scalars())
