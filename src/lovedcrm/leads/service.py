"""Leads: create, read, update, delete, with the role's scope, an audit row per change and a
domain event per change (webhooks, analytics and live pages follow from the events).

Scope: without ``leads:read_all`` a member sees only the leads assigned to them; without
``leads:write_all`` they edit only those (and cannot give a lead to someone else).

A new lead that names no assignee is assigned by the organization's ``assignment`` setting
(``leads.assignment``: round-robin among the sales members, or nobody).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Select,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth.models import OrganizationMember
from lovedcrm.core import clock
from lovedcrm.core.errors import Forbidden, ValidationFailed
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.phones import to_e164
from lovedcrm.core.principal import Principal
from lovedcrm.leads import activities, assignment, dedup
from lovedcrm.leads.access import AUDITED_FIELDS as AUDITED_FIELDS
from lovedcrm.leads.access import editable_lead as editable_lead
from lovedcrm.leads.access import get_lead as get_lead
from lovedcrm.leads.access import hold_organization, organization_settings, region_of
from lovedcrm.leads.access import lead_json as lead_json
from lovedcrm.leads.access import may_edit as may_edit
from lovedcrm.leads.access import org_region as org_region
from lovedcrm.leads.access import snapshot as snapshot
from lovedcrm.leads.access import visible as visible
from lovedcrm.leads.lists import DEFAULT_SORT as DEFAULT_SORT
from lovedcrm.leads.lists import LIST_COLUMNS as LIST_COLUMNS
from lovedcrm.leads.lists import RELEVANCE as RELEVANCE
from lovedcrm.leads.lists import LeadPage as LeadPage
from lovedcrm.leads.lists import effective_sort as effective_sort
from lovedcrm.leads.lists import list_leads as list_leads
from lovedcrm.leads.lists import search_filter as search_filter
from lovedcrm.leads.lists import search_matches as search_matches
from lovedcrm.leads.models import (
    Lead,
    PipelineStage,
)
from lovedcrm.organizations import plans
from lovedcrm.organizations.custom_fields import definitions_in
from lovedcrm.organizations.models import Organization

# --- validation -------------------------------------------------------------------------


def _custom_value_error(definition: dict[str, Any], value: Any) -> str | None:
    kind = definition.get("type", "text")
    if kind == "text":
        return None if isinstance(value, str) else "must be text"
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if kind == "checkbox":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return "must be a date (YYYY-MM-DD)"
        return None
    if kind == "select":
        options = [str(o) for o in definition.get("options") or []]
        return None if value in options else f"must be one of: {', '.join(options)}"
    return None


def validate_custom_fields(
    definitions: Sequence[dict[str, Any]],
    values: dict[str, Any],
    *,
    changed: Collection[str] | None = None,
) -> list[dict[str, str]]:
    """Field errors for ``values`` against the organization's definitions.

    With ``changed`` (an update) only those keys are checked: values kept from before stay
    valid even when their field was removed or redefined since, and a required field left
    empty on an older lead does not block changing another one (it cannot be emptied)."""
    by_key = {d["key"]: d for d in definitions}
    errors: list[dict[str, str]] = []
    unknown = sorted(k for k in values if k not in by_key and (changed is None or k in changed))
    if unknown:
        errors.append(
            {
                "field": "custom_fields",
                "message": f"Unknown custom fields: {', '.join(unknown)}",
                "unknown": ", ".join(unknown),
            }
        )
    for key, definition in by_key.items():
        if changed is not None and key not in changed:
            continue
        value = values.get(key)
        if value is None or value == "":
            if definition.get("required"):
                errors.append({"field": f"custom_fields.{key}", "message": "is required"})
            continue
        message = _custom_value_error(definition, value)
        if message:
            errors.append({"field": f"custom_fields.{key}", "message": message})
    return errors


async def _clean(
    session: AsyncSession,
    principal: Principal,
    data: dict[str, Any],
    *,
    custom_changed: Collection[str] | None = None,
) -> dict[str, Any]:
    errors: list[dict[str, str]] = []
    org_settings = await organization_settings(session, principal.org())
    if data.get("email"):
        data["email"] = str(data["email"]).strip().lower()
    if data.get("phone"):
        try:
            data["phone"] = to_e164(str(data["phone"]), region_of(org_settings))
        except ValueError as exc:
            errors.append({"field": "phone", "message": str(exc)})
    if "custom_fields" in data:
        data["custom_fields"] = {
            k: v for k, v in (data["custom_fields"] or {}).items() if v is not None
        }
        errors += validate_custom_fields(
            definitions_in(org_settings), data["custom_fields"], changed=custom_changed
        )
    if data.get("stage_id") is not None:
        stage = await session.get(PipelineStage, data["stage_id"])
        if stage is None or stage.organization_id != principal.org() or not stage.is_active:
            errors.append(
                {
                    "field": "stage_id",
                    "message": "No active stage with that id in this organization",
                }
            )
    if data.get("assigned_to") is not None:
        member = await session.execute(
            select(OrganizationMember.id).where(
                OrganizationMember.organization_id == principal.org(),
                OrganizationMember.user_id == data["assigned_to"],
                OrganizationMember.is_active.is_(True),
            )
        )
        if member.first() is None:
            errors.append(
                {"field": "assigned_to", "message": "Not an active member of this organization"}
            )
    if data.get("status") == "lost" and not data.get("lost_reason"):
        errors.append({"field": "lost_reason", "message": "A lost lead needs a reason"})
    if errors:
        fields = sorted({e["field"] for e in errors})
        unknown = [e["unknown"] for e in errors if "unknown" in e]
        detail = "The lead has invalid fields: " + ", ".join(fields)
        if unknown:
            detail += f" (unknown custom fields: {unknown[0]})"
        raise ValidationFailed(
            detail,
            extra={"errors": [{k: v for k, v in e.items() if k != "unknown"} for e in errors]},
        )
    return data


# --- events -----------------------------------------------------------------------------


async def _emit(
    session: AsyncSession, principal: Principal, subject: Lead, kind: str, **data: Any
) -> None:
    await emit(
        session,
        DomainEvent(
            type=kind,
            organization_id=subject.organization_id,
            data={"lead_id": str(subject.id), **data},
            actor_id=principal.user_id,
        ),
    )


def _sid(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


async def _record_stage_change(
    session: AsyncSession,
    principal: Principal,
    lead: Lead,
    from_id: uuid.UUID,
    to_id: uuid.UUID,
    reason: str | None,
) -> None:
    old = await session.get(PipelineStage, from_id)
    new = await session.get(PipelineStage, to_id)
    names = (old.name if old else "?", new.name if new else "?")
    metadata: dict[str, Any] = {
        "from_stage_id": str(from_id),
        "to_stage_id": str(to_id),
        "from": names[0],
        "to": names[1],
    }
    if reason:
        metadata["reason"] = reason
    await activities.record_activity(
        session,
        lead,
        user_id=principal.user_id,
        activity_type="stage_change",
        title=f"Stage: {names[0]} → {names[1]}"[:255],
        metadata=metadata,
    )
    await _emit(session, principal, lead, "lead.stage_changed", **metadata)


async def _after_update(
    session: AsyncSession,
    principal: Principal,
    lead: Lead,
    before: dict[str, Any],
    *,
    reason: str | None = None,
) -> None:
    """Audit row and events for a lead that was just flushed with new values."""
    after = snapshot(lead)
    await audit.record(
        session,
        action="update",
        resource_type="lead",
        resource_id=lead.id,
        organization_id=lead.organization_id,
        user_id=principal.user_id,
        changes=audit.diff(before, after),
    )
    changed = [f for f in AUDITED_FIELDS if before[f] != after[f]]
    if not changed:
        return
    if "stage_id" in changed:
        await _record_stage_change(
            session, principal, lead, before["stage_id"], after["stage_id"], reason
        )
    if "assigned_to" in changed:
        await _emit(
            session,
            principal,
            lead,
            "lead.assigned",
            **{"from": _sid(before["assigned_to"]), "to": _sid(after["assigned_to"])},
        )
    if "status" in changed and after["status"] == "converted":
        await _emit(session, principal, lead, "lead.converted", lead=lead_json(lead))
    if "status" in changed and after["status"] == "lost":
        await _emit(session, principal, lead, "lead.lost", reason=lead.lost_reason)
    await _emit(session, principal, lead, "lead.updated", changed=changed, lead=lead_json(lead))


# --- operations -------------------------------------------------------------------------


def _first_stage_query(organization_id: Any) -> Select[PipelineStage]:
    return (
        select(PipelineStage)
        .where(PipelineStage.organization_id == organization_id, PipelineStage.is_active.is_(True))
        .order_by(PipelineStage.stage_order)
        .limit(1)
    )


def _no_stage() -> ValidationFailed:
    return ValidationFailed("The organization has no active pipeline stage.", code="no_stage")


async def first_stage(session: AsyncSession, organization_id: uuid.UUID) -> PipelineStage:
    stage = (await session.execute(_first_stage_query(organization_id))).scalar_one_or_none()
    if stage is None:
        raise _no_stage()
    return stage


@functools.cache
def _organization_and_first_stage() -> Select[Organization, uuid.UUID]:
    """The organization and the id of its first active stage (built once: each create runs
    it)."""
    stage_id = _first_stage_query(Organization.id).with_only_columns(PipelineStage.id)
    return select(Organization, stage_id.scalar_subquery()).where(
        Organization.id == bindparam("organization_id")
    )


async def _first_stage_id_and_settings(
    session: AsyncSession, organization_id: uuid.UUID
) -> uuid.UUID:
    """The id of the organization's first active stage, reading the organization (its
    settings, for what follows in the unit of work) in the same statement."""
    row = (
        await session.execute(_organization_and_first_stage(), {"organization_id": organization_id})
    ).first()
    if row is None or row[1] is None:
        raise _no_stage()
    hold_organization(session, row[0])
    return uuid.UUID(str(row[1]))


async def _insert(
    session: AsyncSession,
    organization_id: uuid.UUID,
    data: dict[str, Any],
    *,
    actor_id: uuid.UUID | None,
) -> Lead:
    (lead,) = await _insert_many(session, organization_id, [data], actor_id=actor_id)
    return lead


async def _insert_many(
    session: AsyncSession,
    organization_id: uuid.UUID,
    rows: Sequence[dict[str, Any]],
    *,
    actor_id: uuid.UUID | None,
) -> list[Lead]:
    """Every new lead goes in here (clean data, stage and assignee decided): the rows (one
    INSERT, read back in one SELECT), their audit entries (one INSERT) and ``lead.created``
    for each, in order."""
    now = clock.now()
    values = [
        {"id": uuid.uuid4(), "organization_id": organization_id, **data}
        | ({"converted_at": now} if data.get("status") == "converted" else {})
        for data in rows
    ]
    # One INSERT per set of fields given, reading back every column (defaults, the
    # generated search text): the leads come back as the session's objects.
    made: dict[uuid.UUID, Lead] = {}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in values:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    for group in groups.values():
        # One row: its values as parameters (a cached statement). Several: one multi-row
        # VALUES (a list of parameter sets would run row by row to match RETURNING).
        result = await (
            session.execute(insert(Lead).returning(Lead), group[0])
            if len(group) == 1
            else session.execute(insert(Lead).values(group).returning(Lead))
        )
        made.update((lead.id, lead) for lead in result.scalars())
    leads = [made[row["id"]] for row in values]
    await audit.record_many(
        session,
        [
            {
                "action": "create",
                "resource_type": "lead",
                "resource_id": lead.id,
                "organization_id": organization_id,
                "user_id": actor_id,
                "changes": audit.diff(None, snapshot(lead)),
            }
            for lead in leads
        ],
    )
    for lead in leads:
        await emit(
            session,
            DomainEvent(
                type="lead.created",
                organization_id=organization_id,
                data={"lead_id": str(lead.id), "lead": lead_json(lead)},
                actor_id=actor_id,
            ),
        )
    return leads


async def lead_for_sender(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    phone: str,
    name: str | None,
    source: str,
) -> tuple[Lead, bool]:
    """The lead a message from ``phone`` (E.164) belongs to — the oldest lead that is the same
    person by the duplicate rule — or a new one (named after the contact, first stage, the
    organization's assignment rule, created by nobody). Returns (lead, created)."""
    (found,) = await leads_for_senders(session, organization_id, [(phone, name)], source=source)
    return found


async def leads_for_senders(
    session: AsyncSession,
    organization_id: uuid.UUID,
    senders: Sequence[tuple[str, str | None]],
    *,
    source: str,
) -> list[tuple[Lead, bool]]:
    """:func:`lead_for_sender` for many ``(phone, contact name)`` at once, in order, with one
    read of the candidates: a sender that is the same person as an earlier one of the list
    gets the lead that one found or created (created only once)."""
    if not senders:
        return []
    contacts = [dedup.Contact(phone=phone) for phone, _ in senders]
    clause = dedup.candidates_clause(contacts)
    known: list[Lead] = []
    if clause is not None:
        query = select(Lead).where(Lead.organization_id == organization_id, clause)
        known = list((await session.execute(query.order_by(Lead.created_at, Lead.id))).scalars())
    # The candidates by phone (a sender's contact is its phone only), oldest first.
    by_phone: dict[str, list[int]] = {}
    for n, candidate in enumerate(known):
        if candidate.phone:
            by_phone.setdefault(candidate.phone, []).append(n)
    # Each sender: an existing lead (oldest first), or the first of the list it matches.
    picks: list[Lead | int] = []
    new: list[int] = []  # positions in ``senders`` that create a lead
    for i, contact in enumerate(contacts):
        near = sorted({n for p in contact.phones() for n in by_phone.get(p, [])})
        lead = next(
            (known[n] for n in near if dedup.match_reason(contact, dedup.Contact.of(known[n]))),
            None,
        )
        if lead is not None:
            picks.append(lead)
            continue
        first = next((j for j in new if dedup.match_reason(contact, contacts[j])), None)
        picks.append(first if first is not None else i)
        if first is None:
            new.append(i)
    created: dict[int, Lead] = {}
    if new:
        stage_id = (await first_stage(session, organization_id)).id
        assignees = await assignment.automatic_assignees(
            session,
            organization_id,
            await organization_settings(session, organization_id),
            len(new),
        )
        rows: list[dict[str, Any]] = [
            {
                "full_name": (senders[i][1] or "").strip()[:255] or senders[i][0],
                "phone": senders[i][0],
                "source": source,
                "stage_id": stage_id,
                "assigned_to": assignee,
                "custom_fields": {},
            }
            for i, assignee in zip(new, assignees, strict=True)
        ]
        inserted = await _insert_many(session, organization_id, rows, actor_id=None)
        created = dict(zip(new, inserted, strict=True))
    return [
        (pick, False) if isinstance(pick, Lead) else (created[pick], pick == i)
        for i, pick in enumerate(picks)
    ]


async def create_lead(session: AsyncSession, principal: Principal, data: dict[str, Any]) -> Lead:
    principal.require("leads:write")
    if not principal.can("leads:write_all"):
        # Without write_all a member's new lead is theirs.
        data["assigned_to"] = principal.user_id
    allow_duplicate = bool(data.pop("allow_duplicate", False))
    data.setdefault("custom_fields", {})
    stage_id = (
        await _first_stage_id_and_settings(session, principal.org())
        if data.get("stage_id") is None
        else None
    )
    data = await _clean(session, principal, data)
    if not allow_duplicate:
        await dedup.refuse_duplicates(session, principal, data)
    if data.get("stage_id") is None:
        data["stage_id"] = stage_id or (await first_stage(session, principal.org())).id
    if "assigned_to" not in data:
        # Nobody named (null would be "nobody" on purpose): the organization's setting decides.
        data["assigned_to"] = await assignment.automatic_assignee(
            session, principal.org(), await organization_settings(session, principal.org())
        )
    await plans.check_limit(
        session, principal.org(), "leads", lambda: count_leads(session, principal.org())
    )
    return await _insert(session, principal.org(), data, actor_id=principal.user_id)


async def count_leads(session: AsyncSession, organization_id: uuid.UUID) -> int:
    """How many leads the organization has (its plan's ``leads`` limit)."""
    found = await session.execute(
        select(func.count()).select_from(Lead).where(Lead.organization_id == organization_id)
    )
    return int(found.scalar_one())


async def update_lead(
    session: AsyncSession, principal: Principal, lead_id: uuid.UUID, changes: dict[str, Any]
) -> Lead:
    lead = await editable_lead(session, principal, lead_id)
    if (
        "assigned_to" in changes
        and changes["assigned_to"] != lead.assigned_to
        and not principal.can("leads:write_all")
    ):
        raise Forbidden(
            "You cannot reassign leads.",
            code="permission_denied",
            extra={"permission": "leads:write_all"},
        )
    custom_changes = dict(changes.get("custom_fields") or {})
    if "custom_fields" in changes:
        # PATCH semantics: merged into the current values (null removes a key).
        changes["custom_fields"] = {
            **(lead.custom_fields or {}),
            **(changes["custom_fields"] or {}),
        }
    merged = {**snapshot(lead), **changes}
    cleaned = await _clean(
        session,
        principal,
        {k: v for k, v in merged.items() if k in changes or k == "lost_reason"},
        custom_changed=set(custom_changes),
    )
    before = snapshot(lead)
    for key, value in cleaned.items():
        setattr(lead, key, value)
    if changes.get("status") == "converted" and lead.converted_at is None:
        lead.converted_at = func.now()
    lead.updated_at = func.now()
    await session.flush()
    await session.refresh(lead)
    await _after_update(session, principal, lead, before)
    return lead


async def move_leads(
    session: AsyncSession,
    principal: Principal,
    from_stage: PipelineStage,
    to_stage: PipelineStage,
    *,
    reason: str,
) -> int:
    """Move every lead of a stage to another (all of them, whoever they belong to): each one is
    audited and gets its stage-change activity and events, as a move by hand would."""
    leads = list(
        (
            await session.execute(
                select(Lead).where(
                    Lead.organization_id == from_stage.organization_id,
                    Lead.stage_id == from_stage.id,
                )
            )
        ).scalars()
    )
    for lead in leads:
        before = snapshot(lead)
        lead.stage_id = to_stage.id
        lead.updated_at = func.now()
        await session.flush()
        await session.refresh(lead)
        await _after_update(session, principal, lead, before, reason=reason)
    return len(leads)


async def delete_lead(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> None:
    principal.require("leads:delete")
    lead = await get_lead(session, principal, lead_id)
    before = snapshot(lead)
    body = lead_json(lead)
    organization_id = lead.organization_id
    await session.delete(lead)
    await session.flush()
    await audit.record_by(session, principal, "delete", "lead", lead_id, audit.diff(before, None))
    await emit(
        session,
        DomainEvent(
            type="lead.deleted",
            organization_id=organization_id,
            data={"lead_id": str(lead_id), "lead": body},
            actor_id=principal.user_id,
        ),
    )


def money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"
